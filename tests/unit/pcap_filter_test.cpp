// pcap compilation and cBPF -> eBPF translation, without a kernel. The
// verdicts themselves are proven against libpcap in tests/bpf.
#include <gtest/gtest.h>
#include <linux/filter.h>

#include "common/error.h"
#include "filter/cbpf_translator.h"
#include "filter/pcap_compiler.h"
#include "pwru_abi.h"

namespace pwru {
namespace {

// Every jump lands inside the code or exactly one past it (the stub's
// join point), and no instruction exits: the code runs inline.
void expect_well_formed(const std::vector<bpf_insn>& code) {
  ASSERT_FALSE(code.empty());
  for (std::size_t i = 0; i < code.size(); ++i) {
    const bpf_insn& in = code[i];
    const std::uint8_t cls = BPF_CLASS(in.code);
    EXPECT_FALSE((cls == BPF_JMP || cls == BPF_JMP32) && BPF_OP(in.code) == BPF_EXIT) << "exit at " << i;
    if ((cls == BPF_JMP || cls == BPF_JMP32) && BPF_OP(in.code) != BPF_CALL) {
      const long target = static_cast<long>(i) + 1 + in.off;
      EXPECT_GT(target, static_cast<long>(i)) << "backward jump at " << i;
      EXPECT_LE(target, static_cast<long>(code.size())) << "jump past the join point at " << i;
    }
    if (cls == BPF_JMP && BPF_OP(in.code) == BPF_CALL) {
      EXPECT_EQ(in.imm, BPF_FUNC_probe_read_kernel);
    }
  }
}

TEST(PcapCompiler, BothFormsAndLinkLayerOnlyExpressions) {
  const CompiledPcap tcp = compile_pcap("tcp and port 443");
  EXPECT_FALSE(tcp.l3_rejects_all);
  EXPECT_GT(tcp.l2.size(), 5u);
  const CompiledPcap arp = compile_pcap("arp");
  EXPECT_TRUE(arp.l3_rejects_all);
  ASSERT_EQ(arp.l3.size(), 1u);
  EXPECT_EQ(arp.l3[0].code, BPF_RET | BPF_K);
  EXPECT_EQ(arp.l3[0].k, 0u);
  const CompiledPcap all = compile_pcap("");
  EXPECT_FALSE(all.l2.empty());
}

TEST(PcapCompiler, RejectionsCarryLibpcapsMessage) {
  try {
    compile_pcap("tcp and prot 80");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("syntax error"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'tcp and prot 80'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(compile_pcap("host 300.1.1.1"), UsageError);
  EXPECT_THROW(compile_pcap("ip broadcast"), UsageError);  // needs a netmask
  // protochain loops; eBPF tracing programs cannot run it
  EXPECT_THROW(compile_pcap("ip6 protochain 6"), UsageError);
}

TEST(CbpfTranslator, WellFormedForTypicalExpressions) {
  for (const char* expr : {"tcp and port 443", "icmp or arp", "tcp[tcpflags] & tcp-syn != 0", "vlan and udp",
                           "ip[2:2] - ((ip[0]&0xf)<<2) > 40", "ip[8] / ip[9] = 10", "len > 100", ""}) {
    const CompiledPcap c = compile_pcap(expr);
    for (const CbpfProgram* p : {&c.l2, &c.l3}) {
      const auto code = translate_cbpf(*p, StubInputs{BPF_REG_2, BPF_REG_1});
      SCOPED_TRACE(expr);
      expect_well_formed(code);
      EXPECT_LE(code.size(), static_cast<std::size_t>(PWRU_PCAP_STUB_INSNS));
      // The inputs are copied out first, whatever registers they came in.
      EXPECT_EQ(code[0].src_reg, BPF_REG_2);
      EXPECT_EQ(code[1].src_reg, BPF_REG_1);
    }
  }
}

TEST(CbpfTranslator, RefusesWhatItCannotRun) {
  const CbpfProgram unknown_opcode{{0xff, 0, 0, 0}};
  EXPECT_THROW(translate_cbpf(unknown_opcode, StubInputs{1, 2}), SystemError);
  const CbpfProgram jump_out{{BPF_JMP | BPF_JEQ | BPF_K, 5, 0, 1}, {BPF_RET | BPF_K, 0, 0, 1}};
  EXPECT_THROW(translate_cbpf(jump_out, StubInputs{1, 2}), SystemError);
  const CbpfProgram scratch_out_of_range{{BPF_LD | BPF_MEM, 0, 0, 16}, {BPF_RET | BPF_A, 0, 0, 0}};
  EXPECT_THROW(translate_cbpf(scratch_out_of_range, StubInputs{1, 2}), SystemError);
  EXPECT_THROW(translate_cbpf(CbpfProgram{}, StubInputs{1, 2}), SystemError);
}

TEST(CbpfTranslator, UnreachableInstructionsAreLeftOut) {
  // ret #1 followed by code nothing jumps to: the verifier would refuse it.
  const CbpfProgram program{
      {BPF_RET | BPF_K, 0, 0, 1}, {BPF_LD | BPF_W | BPF_ABS, 0, 0, 0}, {BPF_RET | BPF_A, 0, 0, 0}};
  const auto code = translate_cbpf(program, StubInputs{1, 2});
  expect_well_formed(code);
  for (const bpf_insn& in : code) EXPECT_NE(in.code, BPF_JMP | BPF_CALL) << "the unreachable load was emitted";
}

}  // namespace
}  // namespace pwru
