#include "filter/pcap_compiler.h"

#include <pcap/pcap.h>

#include <cstdio>

#include "common/error.h"
#include "pwru_abi.h"

namespace pwru {

namespace {
// Snap length for the dead handles: the largest packet libpcap's generated
// code may assume. 262144 is tcpdump's default (MAXIMUM_SNAPLEN).
constexpr int kSnapLen = 262144;
}  // namespace

std::string cbpf_listing(const CbpfProgram& program) {
  std::string out;
  char line[96];
  for (std::size_t i = 0; i < program.size(); ++i) {
    const CbpfInsn& in = program[i];
    std::snprintf(line, sizeof(line), "(%03zu) code=0x%02x jt=%u jf=%u k=0x%x\n", i, in.code, in.jt, in.jf, in.k);
    out += line;
  }
  return out;
}

std::optional<CbpfProgram> compile_pcap_for(const std::string& expression, int dlt, std::string* error) {
  pcap_t* handle = pcap_open_dead(dlt, kSnapLen);
  if (!handle) {
    if (error) *error = "libpcap could not open a dead handle";
    return std::nullopt;
  }
  struct bpf_program fp {};
  std::optional<CbpfProgram> out;
  if (pcap_compile(handle, &fp, expression.c_str(), /*optimize=*/1, PCAP_NETMASK_UNKNOWN) != 0) {
    if (error) *error = pcap_geterr(handle);
  } else {
    CbpfProgram program(fp.bf_len);
    for (unsigned i = 0; i < fp.bf_len; ++i)
      program[i] = CbpfInsn{fp.bf_insns[i].code, fp.bf_insns[i].jt, fp.bf_insns[i].jf, fp.bf_insns[i].k};
    pcap_freecode(&fp);
    out = std::move(program);
  }
  pcap_close(handle);
  return out;
}

CompiledPcap compile_pcap(const std::string& expression) {
  CompiledPcap out;
  out.expression = expression;
  std::string error;
  auto l2 = compile_pcap_for(expression, DLT_EN10MB, &error);
  if (!l2) throw UsageError("pcap filter '" + expression + "': " + error + " (see `man 7 pcap-filter`)");
  out.l2 = std::move(*l2);
  auto l3 = compile_pcap_for(expression, DLT_RAW, &error);
  if (l3) {
    out.l3 = std::move(*l3);
  } else {
    // `ether host`, `arp`, `vlan`: no link layer to match on, so no L3
    // packet can match (pwru does the same).
    out.l3 = CbpfProgram{CbpfInsn{BPF_RET | BPF_K, 0, 0, 0}};
    out.l3_rejects_all = true;
  }
  // Translate once now, with stand-in input registers, so an expression
  // that cannot run in the kernel is refused before anything is loaded.
  for (const CbpfProgram* program : {&out.l2, &out.l3}) {
    std::size_t size = 0;
    try {
      size = translated_insn_count(*program);
    } catch (const UsageError& e) {
      throw UsageError("pcap filter '" + expression + "': " + e.what());
    }
    if (size > PWRU_PCAP_STUB_INSNS)
      throw UsageError("pcap filter '" + expression + "' needs " + std::to_string(size) +
                       " BPF instructions, more than the " + std::to_string(PWRU_PCAP_STUB_INSNS) +
                       " a hook has room for; simplify the expression");
  }
  return out;
}

}  // namespace pwru
