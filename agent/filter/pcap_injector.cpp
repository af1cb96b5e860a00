#include "filter/pcap_injector.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <map>
#include <mutex>

#include "common/error.h"
#include "filter/cbpf_translator.h"
#include "pwru_abi.h"

namespace pwru {

namespace {

struct Entry {
  std::shared_ptr<const CompiledPcap> filter;
  std::string error;
};

std::mutex g_mutex;
std::map<const struct bpf_program*, Entry>& registry() {
  static std::map<const struct bpf_program*, Entry> entries;
  return entries;
}

bool is_marker(const bpf_insn& in, std::int32_t magic) {
  return in.code == (BPF_ALU64 | BPF_MOV | BPF_K) && in.dst_reg == BPF_REG_0 && in.imm == magic;
}
bool is_reg_self_move(const bpf_insn& in) {
  return in.code == (BPF_ALU64 | BPF_MOV | BPF_X) && in.dst_reg == in.src_reg && in.dst_reg >= BPF_REG_1 &&
         in.dst_reg <= BPF_REG_5;
}
bool is_nop(const bpf_insn& in) {
  return in.code == (BPF_ALU64 | BPF_MOV | BPF_X) && in.dst_reg == BPF_REG_0 && in.src_reg == BPF_REG_0;
}

// Finds each stub with `magic` and writes the translation of `program` at
// the end of its no-op block. Returns how many stubs it patched.
int patch_form(std::vector<bpf_insn>& insns, std::int32_t magic, const CbpfProgram& program) {
  int patched = 0;
  for (std::size_t m = 0; m + 3 <= insns.size(); ++m) {
    if (!is_marker(insns[m], magic)) continue;
    const std::size_t block = m + 3;
    if (!is_reg_self_move(insns[m + 1]) || !is_reg_self_move(insns[m + 2]) ||
        block + PWRU_PCAP_STUB_INSNS > insns.size())
      throw SystemError("pcap stub at instruction " + std::to_string(m) + " does not have the expected shape", EINVAL);
    for (std::size_t i = block; i < block + PWRU_PCAP_STUB_INSNS; ++i)
      if (!is_nop(insns[i]))
        throw SystemError("pcap stub at instruction " + std::to_string(m) + " was already patched or altered", EINVAL);
    const StubInputs inputs{insns[m + 1].dst_reg, insns[m + 2].dst_reg};
    const std::vector<bpf_insn> code = translate_cbpf(program, inputs);
    if (code.size() > PWRU_PCAP_STUB_INSNS)
      throw UsageError("the pcap filter needs " + std::to_string(code.size()) + " BPF instructions, more than the " +
                       std::to_string(PWRU_PCAP_STUB_INSNS) + " a hook has room for; simplify the expression");
    std::copy(code.begin(), code.end(), insns.begin() + static_cast<long>(block + PWRU_PCAP_STUB_INSNS - code.size()));
    ++patched;
    m = block + PWRU_PCAP_STUB_INSNS - 1;
  }
  return patched;
}

extern "C" int prepare_load(struct bpf_program* prog, struct bpf_prog_load_opts*, long) noexcept {
  std::shared_ptr<const CompiledPcap> filter;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = registry().find(prog);
    if (it == registry().end() || !it->second.filter) return 0;  // stubs stay: match all
    filter = it->second.filter;
    it->second.error.clear();
  }
  std::string error;
  int err = 0;
  try {
    std::vector<bpf_insn> insns = patch_pcap_stubs(bpf_program__insns(prog), bpf_program__insn_cnt(prog), *filter);
    err = bpf_program__set_insns(prog, insns.data(), insns.size());
    if (err) error = "libbpf refused the patched instructions";
  } catch (const std::exception& e) {
    error = e.what();
    err = -EINVAL;
  }
  if (err) {
    std::lock_guard<std::mutex> lock(g_mutex);
    registry()[prog].error = error;
  }
  return err;
}

extern "C" int attach_tracing(const struct bpf_program* prog, long, struct bpf_link** link) noexcept {
  *link = bpf_program__attach_trace(prog);
  return *link ? 0 : -errno;
}

}  // namespace

std::vector<struct bpf_insn> patch_pcap_stubs(const struct bpf_insn* insns, std::size_t count,
                                              const CompiledPcap& filter) {
  std::vector<bpf_insn> out(insns, insns + count);
  const int l2 = patch_form(out, PWRU_PCAP_MAGIC_L2, filter.l2);
  const int l3 = patch_form(out, PWRU_PCAP_MAGIC_L3, filter.l3);
  if (l2 + l3 == 0) throw SystemError("the program has no pcap stub to write the filter into", ENOENT);
  return out;
}

void throw_if_injection_failed(const std::vector<struct bpf_program*>& programs) {
  for (struct bpf_program* prog : programs) {
    const std::string why = program_filter_error(prog);
    if (!why.empty()) throw UsageError("cannot install the pcap filter: " + why);
  }
}

void register_pcap_sections() {
  static const int registered = [] {
    LIBBPF_OPTS(libbpf_prog_handler_opts, tracing, .prog_prepare_load_fn = prepare_load,
                .prog_attach_fn = attach_tracing);
    if (libbpf_register_prog_handler("pwru_tp", BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, &tracing) < 0)
      throw_libbpf("registering the pwru_tp BPF section", 0);
    // kprobe programs are attached by the backend with per-function cookies,
    // never through a section's auto-attach.
    LIBBPF_OPTS(libbpf_prog_handler_opts, kprobe, .prog_prepare_load_fn = prepare_load);
    if (libbpf_register_prog_handler("pwru_kprobe", BPF_PROG_TYPE_KPROBE, static_cast<enum bpf_attach_type>(0),
                                     &kprobe) < 0)
      throw_libbpf("registering the pwru_kprobe BPF section", 0);
    if (libbpf_register_prog_handler("pwru_kprobe_multi", BPF_PROG_TYPE_KPROBE, BPF_TRACE_KPROBE_MULTI, &kprobe) < 0)
      throw_libbpf("registering the pwru_kprobe_multi BPF section", 0);
    if (libbpf_register_prog_handler("pwru_fentry", BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, &tracing) < 0)
      throw_libbpf("registering the pwru_fentry BPF section", 0);
    LIBBPF_OPTS(libbpf_prog_handler_opts, test, .prog_prepare_load_fn = prepare_load);
    if (libbpf_register_prog_handler("pwru_pcap_test", BPF_PROG_TYPE_RAW_TRACEPOINT,
                                     static_cast<enum bpf_attach_type>(0), &test) < 0)
      throw_libbpf("registering the pwru_pcap_test BPF section", 0);
    return 0;
  }();
  (void)registered;
}

void set_program_filter(const struct bpf_program* prog, std::shared_ptr<const CompiledPcap> filter) {
  std::lock_guard<std::mutex> lock(g_mutex);
  registry()[prog] = Entry{std::move(filter), ""};
}

pwru_filter_cfg arm_pcap(const std::vector<struct bpf_program*>& programs, const pwru_filter_cfg& filter,
                         const std::shared_ptr<const CompiledPcap>& pcap) {
  if (pcap)
    for (const struct bpf_program* prog : programs) set_program_filter(prog, pcap);
  pwru_filter_cfg cfg = filter;
  cfg.has_pcap = pcap ? 1 : 0;
  return cfg;
}

void clear_program_filter(const struct bpf_program* prog) {
  std::lock_guard<std::mutex> lock(g_mutex);
  registry().erase(prog);
}

std::string program_filter_error(const struct bpf_program* prog) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = registry().find(prog);
  return it == registry().end() ? "" : it->second.error;
}

}  // namespace pwru
