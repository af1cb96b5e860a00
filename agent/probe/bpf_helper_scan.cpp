#include "probe/bpf_helper_scan.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/error.h"
#include "common/unique_fd.h"

namespace pwru {

std::optional<std::uint64_t> kallsyms_address(std::string_view kallsyms_text, std::string_view name) {
  std::size_t line_start = 0;
  while (line_start < kallsyms_text.size()) {
    std::size_t line_end = kallsyms_text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = kallsyms_text.size();
    const std::string_view line = kallsyms_text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    // "ffffffff81234560 T __bpf_call_base"; a module symbol has a tab and
    // "[module]" after its name.
    const std::size_t type_end = line.find(' ', line.find(' ') + 1);
    if (type_end == std::string_view::npos) continue;
    std::string_view symbol = line.substr(type_end + 1);
    symbol = symbol.substr(0, symbol.find_first_of("\t "));
    if (symbol != name) continue;
    const std::uint64_t addr = std::strtoull(std::string(line.substr(0, line.find(' '))).c_str(), nullptr, 16);
    if (addr == 0) return std::nullopt;
    return addr;
  }
  return std::nullopt;
}

std::vector<std::string> called_kernel_functions(const std::vector<bpf_insn>& insns, std::uint64_t call_base,
                                                 const Ksyms& ksyms) {
  std::vector<std::string> names;
  for (const bpf_insn& insn : insns) {
    if (insn.code != (BPF_JMP | BPF_CALL) || insn.src_reg == BPF_PSEUDO_CALL) continue;
    // 0: the kernel hid the address from this reader.
    if (insn.imm == 0) continue;
    const std::uint64_t target = call_base + static_cast<std::int64_t>(insn.imm);
    std::string name = ksyms.nearest(target);
    // A tail call is dumped as a call with imm BPF_FUNC_tail_call, which
    // lands inside __bpf_call_base: only a function's first byte is a callee.
    if (name.empty() || ksyms.nearest(target - 1) == name) continue;
    const std::size_t module = name.find(' ');
    if (module != std::string::npos) {
      // Another BPF program (a callback, a trampoline) is not a helper.
      if (name.compare(module + 1, std::string::npos, "[bpf]") == 0) continue;
      name.erase(module);
    }
    names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

std::vector<bpf_insn> translated_instructions(int prog_fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0)
    throw SystemError("reading a BPF program's info (BPF_OBJ_GET_INFO_BY_FD)", errno);
  std::vector<bpf_insn> insns(info.xlated_prog_len / sizeof(bpf_insn));
  if (insns.empty()) return insns;
  bpf_prog_info dump{};
  dump.xlated_prog_len = static_cast<std::uint32_t>(insns.size() * sizeof(bpf_insn));
  dump.xlated_prog_insns = reinterpret_cast<std::uint64_t>(insns.data());
  len = sizeof(dump);
  if (bpf_obj_get_info_by_fd(prog_fd, &dump, &len) != 0)
    throw SystemError("reading a BPF program's instructions (BPF_OBJ_GET_INFO_BY_FD)", errno);
  // Blinded programs are not dumped to readers who may not see addresses.
  if (dump.xlated_prog_insns == 0) return {};
  insns.resize(std::min<std::size_t>(insns.size(), dump.xlated_prog_len / sizeof(bpf_insn)));
  return insns;
}

BpfHelperScan scan_loaded_bpf_helpers(const std::string& kallsyms_path) {
  std::ifstream in(kallsyms_path);
  if (!in) throw SystemError("--filter-track-bpf-helpers: cannot read " + kallsyms_path, errno ? errno : ENOENT);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::optional<std::uint64_t> call_base = kallsyms_address(text, "__bpf_call_base");
  if (!call_base)
    throw SystemError("--filter-track-bpf-helpers needs kernel addresses, and " + kallsyms_path +
                          " shows no address for __bpf_call_base (kernel.kptr_restrict hides them from this "
                          "user: run pwru as root with kernel.kptr_restrict 0 or 1)",
                      EPERM);
  std::istringstream symbols(text);
  const Ksyms ksyms = Ksyms::parse(symbols);
  BpfHelperScan scan;
  std::uint32_t id = 0;
  while (true) {
    if (bpf_prog_get_next_id(id, &id) != 0) {
      if (errno == ENOENT) break;
      throw SystemError("--filter-track-bpf-helpers: listing the loaded BPF programs", errno);
    }
    const UniqueFd fd(bpf_prog_get_fd_by_id(id));
    if (!fd) {
      if (errno == ENOENT) {
        ++scan.programs_gone;
        continue;
      }
      throw SystemError("--filter-track-bpf-helpers: opening BPF program " + std::to_string(id), errno);
    }
    const std::vector<std::string> called = called_kernel_functions(translated_instructions(fd.get()), *call_base,
                                                                    ksyms);
    scan.functions.insert(scan.functions.end(), called.begin(), called.end());
    ++scan.programs;
  }
  std::sort(scan.functions.begin(), scan.functions.end());
  scan.functions.erase(std::unique(scan.functions.begin(), scan.functions.end()), scan.functions.end());
  return scan;
}

}  // namespace pwru
