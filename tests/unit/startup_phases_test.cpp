#include "session/startup_phases.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace pwru {
namespace {

TEST(StartupPhases, LineListsPhasesInOrderAndAddsRepeats) {
  StartupPhases phases;
  phases.add("btf", 1.2);
  phases.add("kallsyms", 0.31);
  phases.add("btf", 0.3);
  EXPECT_EQ(phases.line(), "btf 1.50 s, kallsyms 0.31 s");
}

TEST(StartupPhases, TimeReturnsTheResultAndRecordsEvenWhenWorkThrows) {
  StartupPhases phases;
  EXPECT_EQ(phases.time("load", [] { return 42; }), 42);
  EXPECT_THROW(phases.time("attach", []() -> int { throw std::runtime_error("refused"); }), std::runtime_error);
  ASSERT_EQ(phases.phases().size(), 2u);
  EXPECT_EQ(phases.phases()[0].first, "load");
  EXPECT_EQ(phases.phases()[1].first, "attach");
  EXPECT_GE(phases.phases()[1].second, 0.0);
}

TEST(StartupPhases, AppendMergesAnotherRecord) {
  StartupPhases outer, session;
  outer.add("btf", 0.5);
  session.add("kallsyms", 0.25);
  session.add("btf", 0.5);
  outer.append(session);
  EXPECT_EQ(outer.line(), "btf 1.00 s, kallsyms 0.25 s");
}

}  // namespace
}  // namespace pwru
