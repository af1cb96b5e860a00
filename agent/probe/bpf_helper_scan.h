// --filter-track-bpf-helpers: the kernel functions (BPF helpers, kfuncs,
// map operations) that the BPF programs loaded on this machine call, so the
// kprobe backends can probe them as functions without an skb (the skb is
// the one their stack carries, as for --filter-non-skb-funcs).
//
// pwru finds them by disassembling each program's x86 JIT image from
// /proc/kcore. Here the kernel's own translated instructions are read
// instead (BPF_OBJ_GET_INFO_BY_FD, xlated_prog_insns): after verification a
// call's imm is the callee's address minus __bpf_call_base, for helpers and
// kfuncs alike, on every architecture.
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "enrich/ksyms.h"

namespace pwru {

struct BpfHelperScan {
  std::vector<std::string> functions;  // sorted, unique, bare names ("bpf_skb_load_bytes")
  std::size_t programs = 0;            // programs whose instructions were read
  std::size_t programs_gone = 0;       // unloaded between listing and reading
};

// The kernel functions that translated instructions call: each helper or
// kfunc call's target (call_base + imm) named by `ksyms`, module suffix
// dropped. Calls of the program's own subprograms, tail calls and targets
// that are not the start of a kernel function are left out.
std::vector<std::string> called_kernel_functions(const std::vector<bpf_insn>& insns, std::uint64_t call_base,
                                                 const Ksyms& ksyms);

// One loaded program's translated instructions (root). Throws SystemError.
std::vector<bpf_insn> translated_instructions(int prog_fd);

// Every program loaded now, read through the kernel's program ids. Needs
// the rights to read kernel addresses (root with kptr_restrict < 2): a
// SystemError saying so otherwise.
BpfHelperScan scan_loaded_bpf_helpers(const std::string& kallsyms_path = "/proc/kallsyms");

}  // namespace pwru
