#include <gtest/gtest.h>

#include <sstream>

#include "common/error.h"
#include "probe/kprobe_plan.h"

namespace pwru {
namespace {

Ksyms kallsyms() {
  std::istringstream in(
      "ffffffff81100000 t ip_rcv\n"
      "ffffffff81100800 T ip_rcv_finish\n"
      "ffffffff81200000 T __netif_receive_skb_core\n"
      "ffffffff81300000 T tcp_v4_rcv\n"
      "ffffffffc0a01000 t veth_xmit\t[veth]\n");
  return Ksyms::parse(in);
}

const std::vector<SkbFunction> kCandidates = {{"__netif_receive_skb_core", 0}, {"inlined_helper", 0},
                                              {"ip_rcv", 0},  {"ip_rcv_finish", 2},
                                              {"tcp_v4_rcv", 0}, {"veth_xmit", 0}};

std::vector<std::string> names(const KprobePlan& p) {
  std::vector<std::string> out;
  for (const auto& f : p.functions) out.push_back(f.name);
  return out;
}

TEST(KprobePlan, KallsymsDecidesWhenTracefsIsUnreadable) {
  const KprobePlan p = plan_kprobes(kCandidates, kallsyms(), std::nullopt, "");
  EXPECT_EQ(names(p), (std::vector<std::string>{"__netif_receive_skb_core", "ip_rcv", "ip_rcv_finish", "tcp_v4_rcv",
                                                "veth_xmit"}));
  EXPECT_EQ(p.not_in_kallsyms, 1u);
  EXPECT_FALSE(p.traceable_list_read);
  EXPECT_EQ(p.functions[2].skb_arg, 2);
}

TEST(KprobePlan, TraceableListAndRegexNarrowIt) {
  const std::unordered_set<std::string> traceable = {"ip_rcv", "ip_rcv_finish", "veth_xmit"};
  const KprobePlan p = plan_kprobes(kCandidates, kallsyms(), traceable, "^ip_|xmit$");
  EXPECT_EQ(names(p), (std::vector<std::string>{"ip_rcv", "ip_rcv_finish", "veth_xmit"}));
  EXPECT_EQ(p.filtered_out, 3u);  // __netif_receive_skb_core, inlined_helper, tcp_v4_rcv
  const KprobePlan q = plan_kprobes(kCandidates, kallsyms(), traceable, "");
  EXPECT_EQ(q.not_traceable, 2u);
  EXPECT_THROW(plan_kprobes(kCandidates, kallsyms(), std::nullopt, "ip_(rcv"), UsageError);
}

TEST(KprobePlan, NamedFunctionsSkipTheRegexButNotKallsyms) {
  const std::vector<SkbFunction> named = {{"fib_table_lookup", -1}, {"ip_rcv", 0}, {"not_a_symbol", -1}};
  std::istringstream in(
      "ffffffff81100000 t ip_rcv\n"
      "ffffffff81400000 T fib_table_lookup\n");
  const KprobePlan p = plan_kprobes(kCandidates, Ksyms::parse(in), std::nullopt, "^ip_rcv$", named);
  // ip_rcv matched the regex and is named too: planned once.
  EXPECT_EQ(names(p), (std::vector<std::string>{"ip_rcv", "fib_table_lookup"}));
  EXPECT_EQ(p.functions[1].skb_arg, -1);
  EXPECT_EQ(p.not_in_kallsyms, 1u);  // not_a_symbol
}

TEST(KprobePlan, UnreadableTracefsIsNotAnError) {
  EXPECT_FALSE(read_traceable_functions("/nonexistent/available_filter_functions").has_value());
}

}  // namespace
}  // namespace pwru
