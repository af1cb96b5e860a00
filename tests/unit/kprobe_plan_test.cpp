#include "probe/kprobe_plan.h"

#include <gtest/gtest.h>

#include <sstream>

#include "common/error.h"

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

const std::vector<SkbFunction> kCandidates = {{"__netif_receive_skb_core", 0},
                                              {"inlined_helper", 0},
                                              {"ip_rcv", 0},
                                              {"ip_rcv_finish", 2},
                                              {"tcp_v4_rcv", 0},
                                              {"veth_xmit", 0}};

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
  const KprobePlan p = plan_kprobes(kCandidates, kallsyms(), traceable, "^ip_.*|.*xmit$");
  EXPECT_EQ(names(p), (std::vector<std::string>{"ip_rcv", "ip_rcv_finish", "veth_xmit"}));
  EXPECT_EQ(p.filtered_out, 3u);  // __netif_receive_skb_core, inlined_helper, tcp_v4_rcv
  const KprobePlan q = plan_kprobes(kCandidates, kallsyms(), traceable, "");
  EXPECT_EQ(q.not_traceable, 2u);
  EXPECT_THROW(plan_kprobes(kCandidates, kallsyms(), std::nullopt, "ip_(rcv"), UsageError);
}

// pwru keeps a function when regexp.FindString(name) == name: the
// leftmost-first match must be the whole name.
TEST(KprobePlan, TheRegexMustMatchTheWholeNameAsInPwru) {
  const auto planned = [](const std::string& pattern) {
    return names(plan_kprobes(kCandidates, kallsyms(), std::nullopt, pattern));
  };
  EXPECT_EQ(planned("ip_rcv"), (std::vector<std::string>{"ip_rcv"}));
  EXPECT_EQ(planned("ip_rcv.*"), (std::vector<std::string>{"ip_rcv", "ip_rcv_finish"}));
  EXPECT_EQ(planned(".*_rcv"), (std::vector<std::string>{"ip_rcv", "tcp_v4_rcv"}));
  // Leftmost-first, as Go: the first alternative wins at position 0, and
  // "ip_rcv" is not all of "ip_rcv_finish".
  EXPECT_EQ(planned("ip_rcv|ip_rcv_finish"), (std::vector<std::string>{"ip_rcv"}));
  EXPECT_EQ(planned("ip_rcv_finish|ip_rcv"), (std::vector<std::string>{"ip_rcv", "ip_rcv_finish"}));
  EXPECT_EQ(planned("^(ip_rcv|ip_rcv_finish)$"), (std::vector<std::string>{"ip_rcv", "ip_rcv_finish"}));
  EXPECT_EQ(planned("(?i)VETH_XMIT"), (std::vector<std::string>{"veth_xmit"}));
}

TEST(KprobePlan, ARegexThatKeepsNothingStopsThePlanAsInPwru) {
  try {
    plan_kprobes(kCandidates, kallsyms(), std::nullopt, "^ip_");  // a prefix: no whole name
    ADD_FAILURE() << "planned with a regex matching no function";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("Cannot find a matching kernel function: --filter-func '^ip_' matches no "
                                         "kernel function among the 6"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("'^ip_.*'"), std::string::npos) << e.what();
  }
  // Matching only functions kallsyms lacks is no error: the plan is empty
  // for another reason, which describe() reports.
  const KprobePlan p = plan_kprobes(kCandidates, kallsyms(), std::nullopt, "inlined_helper");
  EXPECT_TRUE(p.functions.empty());
  EXPECT_EQ(p.not_in_kallsyms, 1u);
  try {
    plan_kprobes(kCandidates, kallsyms(), std::nullopt, "ip_[rcv");
    ADD_FAILURE() << "planned with an invalid regex";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--filter-func 'ip_[rcv' is not a valid regular expression: a '[' without"),
              std::string::npos)
        << e.what();
  }
}

TEST(KprobePlan, CountMatchingAppliesTheSameRule) {
  EXPECT_EQ(count_matching(kCandidates, FunctionNameFilter(".*rcv.*")), 3u);
  EXPECT_EQ(count_matching(kCandidates, FunctionNameFilter("rcv")), 0u);
  EXPECT_EQ(count_matching({}, FunctionNameFilter(".*")), 0u);
}

// A pattern that makes a backtracking engine take exponential time in the
// name's length, over names made for it: RE2 answers in linear time. No
// clock here; a backtracking engine would not finish this test at all
// (2^60 steps per name).
TEST(KprobePlan, NestedQuantifiersDoNotBacktrack) {
  std::vector<SkbFunction> many;
  for (int i = 0; i < 2000; ++i) many.push_back({std::string(60, '_') + std::to_string(i), 0});
  EXPECT_EQ(count_matching(many, FunctionNameFilter("(_+)+x")), 0u);
  EXPECT_EQ(count_matching(many, FunctionNameFilter("(_+)+\\d+")), 2000u);
}

// The textbook case, `(a+)+$`, on names far longer than any kernel symbol.
// A backtracking engine tries about 2^n splits of the a's before it gives
// up on a name that ends in something else; this test would not end.
TEST(KprobePlan, TheTextbookCatastrophicPatternAnswersEveryName) {
  const FunctionNameFilter filter("(a+)+$");
  const std::string run(100000, 'a');
  EXPECT_TRUE(filter.matches(run));
  EXPECT_FALSE(filter.matches(run + "!"));  // no match anywhere: the worst case for backtracking
  EXPECT_FALSE(filter.matches("!" + run));  // a match, but not of the whole name
  EXPECT_FALSE(filter.matches(run.substr(0, 50000) + "!" + run.substr(0, 50000)));
  const std::vector<SkbFunction> names = {{run + "!", 0}, {run, 0}, {"ip_rcv", 0}};
  EXPECT_EQ(count_matching(names, filter), 1u);
}

// The pattern's size is bounded too: counts that multiply past RE2's limit,
// or a program too big for its memory budget, are refused in our words.
TEST(KprobePlan, APatternTooLargeIsRefusedNotBuilt) {
  const auto refusal = [](const std::string& pattern) {
    try {
      FunctionNameFilter huge(pattern);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refusal("((a{100}){100}){100}")
                .find("a repetition count over 1000 or out of order at '{100}' "
                      "(nested counts multiply"),
            std::string::npos)
      << refusal("((a{100}){100}){100}");
  // Every Unicode letter, a thousand times: far beyond 4 MiB of program.
  EXPECT_NE(refusal("\\pL{1000}").find("a pattern too large to compile"), std::string::npos) << refusal("\\pL{1000}");
  EXPECT_EQ(refusal("[a-z_]{1,200}"), "accepted");
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
