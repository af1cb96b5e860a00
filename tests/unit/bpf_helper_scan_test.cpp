// --filter-track-bpf-helpers: which calls of a program's translated
// instructions name a kernel function, against a made-up kallsyms.
#include "probe/bpf_helper_scan.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace pwru {
namespace {

constexpr std::uint64_t kCallBase = 0xffffffff81200000;

constexpr const char* kKallsyms =
    "ffffffff81100000 T _stext\n"
    "ffffffff81200000 T __bpf_call_base\n"
    "ffffffff81200100 T __bpf_prog_run32\n"
    "ffffffff81300000 t __pfx_bpf_skb_load_bytes\n"
    "ffffffff81300010 T bpf_skb_load_bytes\n"
    "ffffffff81300200 T bpf_redirect\n"
    "ffffffff81400000 d some_data\n"
    "ffffffffc0001000 t nf_conntrack_kfunc_lookup\t[nf_conntrack]\n"
    "ffffffffc0002000 t bpf_prog_0123456789abcdef_callback\t[bpf]\n";

Ksyms symbols() {
  std::istringstream in(kKallsyms);
  return Ksyms::parse(in);
}

bpf_insn call(std::uint64_t target, std::uint8_t src_reg = 0) {
  bpf_insn insn{};
  insn.code = BPF_JMP | BPF_CALL;
  insn.src_reg = src_reg;
  insn.imm = static_cast<std::int32_t>(static_cast<std::int64_t>(target - kCallBase));
  return insn;
}

TEST(BpfHelperScan, FindsTheAddressOfASymbol) {
  const Ksyms ksyms = symbols();
  EXPECT_EQ(ksyms.address_of("__bpf_call_base"), kCallBase);
  EXPECT_EQ(ksyms.address_of("nf_conntrack_kfunc_lookup"), 0xffffffffc0001000);
  // A prefix of a name, or a name absent, is not found.
  EXPECT_FALSE(ksyms.address_of("__bpf_call").has_value());
  EXPECT_FALSE(ksyms.address_of("no_such_symbol").has_value());
  // kptr_restrict shows zeros: no address to compute calls from.
  std::istringstream hidden("0000000000000000 T __bpf_call_base\n");
  EXPECT_FALSE(Ksyms::parse(hidden).address_of("__bpf_call_base").has_value());
}

TEST(BpfHelperScan, NamesHelperAndKfuncCallsOnly) {
  bpf_insn not_a_call{};
  not_a_call.code = BPF_ALU64 | BPF_MOV | BPF_K;
  not_a_call.imm = 0x100010;  // bpf_skb_load_bytes' offset, but a move
  bpf_insn hidden = call(kCallBase);
  hidden.imm = 0;  // what a reader who may not see kernel addresses gets
  bpf_insn tail_call{};
  tail_call.code = BPF_JMP | BPF_CALL;
  tail_call.imm = BPF_FUNC_tail_call;  // the dump's rendering: inside __bpf_call_base
  const std::vector<bpf_insn> insns{
      not_a_call,
      call(0xffffffff81300010),                         // bpf_skb_load_bytes
      call(0xffffffff81300200),                         // bpf_redirect
      call(0xffffffff81300010),                         // again: listed once
      call(0xffffffff81300020),                         // inside bpf_skb_load_bytes: no callee
      call(0xffffffffc0001000, BPF_PSEUDO_KFUNC_CALL),  // a module's kfunc
      call(0xffffffffc0002000),                         // another BPF program
      call(0xffffffff81300200, BPF_PSEUDO_CALL),        // the program's own subprogram
      hidden,
      tail_call,
  };
  EXPECT_EQ(called_kernel_functions(insns, kCallBase, symbols()),
            (std::vector<std::string>{"bpf_redirect", "bpf_skb_load_bytes", "nf_conntrack_kfunc_lookup"}));
  EXPECT_TRUE(called_kernel_functions({}, kCallBase, symbols()).empty());
}

TEST(BpfHelperScan, UnreadableKallsymsIsRefusedWithTheReason) {
  try {
    scan_loaded_bpf_helpers("/nonexistent/kallsyms");
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/kallsyms"), std::string::npos) << e.what();
  }
}

TEST(BpfHelperScan, HiddenKernelAddressesAreRefusedWithWhatToDo) {
  const std::string path = ::testing::TempDir() + "pwru_hidden_kallsyms";
  {
    std::ofstream out(path);
    out << "0000000000000000 T _stext\n0000000000000000 T __bpf_call_base\n";
  }
  try {
    scan_loaded_bpf_helpers(path);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("kptr_restrict"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace pwru
