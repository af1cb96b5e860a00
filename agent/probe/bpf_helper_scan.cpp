#include "probe/bpf_helper_scan.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>

#include "common/error.h"
#include "common/unique_fd.h"

namespace pwru {

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
  const Ksyms ksyms = Ksyms::load(kallsyms_path);
  // Empty when unreadable or when kptr_restrict shows only zeros.
  const std::optional<std::uint64_t> call_base = ksyms.address_of("__bpf_call_base");
  if (!call_base)
    throw SystemError("--filter-track-bpf-helpers needs kernel addresses, and " + kallsyms_path +
                          " shows no address for __bpf_call_base (unreadable, or kernel.kptr_restrict hides them "
                          "from this user: run pwru as root with kernel.kptr_restrict 0 or 1)",
                      EPERM);
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
    const std::vector<std::string> called =
        called_kernel_functions(translated_instructions(fd.get()), *call_base, ksyms);
    scan.functions.insert(scan.functions.end(), called.begin(), called.end());
    ++scan.programs;
  }
  std::sort(scan.functions.begin(), scan.functions.end());
  scan.functions.erase(std::unique(scan.functions.begin(), scan.functions.end()), scan.functions.end());
  return scan;
}

}  // namespace pwru
