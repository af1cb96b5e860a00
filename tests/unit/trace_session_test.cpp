// A TraceSession over fake programs: events fed through the handler path
// become lines, the limit and the sink end a run, and the summary's counts
// are read before (stop_output) or after (finish) the links are detached.
#include "session/trace_session.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "fake_trace_probes.h"

namespace pwru {
namespace {

using testing::FakeKernel;
using testing::RecordingSink;

class TraceSessionOverFakes : public ::testing::Test {
 protected:
  TraceSessionOverFakes() : kernel_(std::make_shared<FakeKernel>()), btf_(testing::empty_btf()) {
    config_.output.json = true;
  }
  std::unique_ptr<TraceSession> load() {
    return std::make_unique<TraceSession>(btf_, config_, sink_, kernel_->loader());
  }
  // Runs until `lines` lines arrived or a second passed.
  void run_until(TraceSession& session, std::size_t lines) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    session.run([&] { return sink_.lines().size() >= lines || std::chrono::steady_clock::now() > give_up; });
  }

  std::shared_ptr<FakeKernel> kernel_;
  KernelBtf btf_;
  TraceConfig config_;
  RecordingSink sink_;
};

TEST_F(TraceSessionOverFakes, PrintsEachFedEventAsOneJsonLine) {
  auto session = load();
  EXPECT_EQ(session->backend_name(), "fake");
  EXPECT_EQ(session->hook_count(), 2u);
  const AttachReport report = session->attach(nullptr);
  EXPECT_EQ(report.attached, 2u);
  EXPECT_TRUE(sink_.lines().empty());  // JSON has no header
  kernel_->feed(FakeKernel::event(0x1000, 0));
  kernel_->feed(FakeKernel::event(0x2000, 1));
  run_until(*session, 2);
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find(R"("skb":"0x1000")"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find(R"("func":"netif_receive_skb")"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find(R"("func":"kfree_skb")"), std::string::npos) << lines[1];
  EXPECT_EQ(session->stop_output().events_written, 2u);
}

TEST_F(TraceSessionOverFakes, TextOutputStartsWithItsHeaderWhenAttached) {
  config_.output.json = false;
  auto session = load();
  EXPECT_TRUE(sink_.lines().empty());
  session->attach(nullptr);
  ASSERT_EQ(sink_.lines().size(), 1u);
  EXPECT_NE(sink_.lines()[0].find("FUNC"), std::string::npos) << sink_.lines()[0];
}

TEST_F(TraceSessionOverFakes, TheLimitEndsTheRunAndLeavesLaterEventsInTheRing) {
  config_.limit = 2;
  auto session = load();
  session->attach(nullptr);
  for (std::uint64_t skb = 1; skb <= 3; ++skb) kernel_->feed(FakeKernel::event(skb));
  session->run([] { return false; });  // returns only because the limit was hit
  const TraceStats stats = session->stop_output();
  EXPECT_TRUE(stats.limit_reached);
  EXPECT_EQ(stats.events_written, 2u);
  EXPECT_EQ(sink_.lines().size(), 2u);
  EXPECT_EQ(kernel_->pending(), 1u);
}

TEST_F(TraceSessionOverFakes, AClosedSinkEndsTheRun) {
  sink_.close_after = 1;
  auto session = load();
  session->attach(nullptr);
  kernel_->feed(FakeKernel::event(1));
  const auto started = std::chrono::steady_clock::now();
  session->run([] { return false; });
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  EXPECT_EQ(session->stop_output().events_written, 1u);
}

TEST_F(TraceSessionOverFakes, HiddenKernelAddressesBecomeStablePseudonyms) {
  config_.hide_kernel_addresses = true;
  auto session = load();
  session->attach(nullptr);
  kernel_->feed(FakeKernel::event(0xffff888012345678));
  kernel_->feed(FakeKernel::event(0xffff888012345678));
  kernel_->feed(FakeKernel::event(0xffff888087654321));
  run_until(*session, 3);
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 3u);
  const auto skb_of = [](const std::string& line) { return line.substr(0, line.find(',')); };
  for (const std::string& line : lines) EXPECT_EQ(line.find("ffff8880"), std::string::npos) << line;
  EXPECT_EQ(skb_of(lines[0]), skb_of(lines[1]));
  EXPECT_NE(skb_of(lines[0]), skb_of(lines[2]));
}

TEST_F(TraceSessionOverFakes, StopOutputCountsWithTheLinksStillAttached) {
  kernel_->set_lost(7);
  auto session = load();
  session->attach(nullptr);
  EXPECT_EQ(session->events_lost_so_far(), 7u);
  kernel_->feed(FakeKernel::event(1));
  // Still in the ring when output stops: printed, not dropped.
  const TraceStats stats = session->stop_output();
  EXPECT_EQ(stats.events_written, 1u);
  EXPECT_EQ(stats.events_lost, 7u);
  EXPECT_EQ(kernel_->calls(), (std::vector<std::string>{"load", "attach"}));
  session.reset();
  EXPECT_EQ(kernel_->calls(), (std::vector<std::string>{"load", "attach", "detach", "unload"}));
  EXPECT_EQ(kernel_->alive(), 0);
}

TEST_F(TraceSessionOverFakes, FinishDetachesThenPrintsWhatTheRingStillHeld) {
  auto session = load();
  session->attach(nullptr);
  std::size_t lines_at_detach = 99;
  kernel_->on_detach = [&] { lines_at_detach = sink_.lines().size(); };
  kernel_->feed(FakeKernel::event(1));
  const TraceStats stats = session->finish();
  EXPECT_EQ(lines_at_detach, 0u);
  EXPECT_EQ(stats.events_written, 1u);
  EXPECT_EQ(sink_.lines().size(), 1u);
}

TEST_F(TraceSessionOverFakes, ASummaryFollowsTheSkbsItPrinted) {
  config_.summary = true;
  auto session = load();
  session->attach(nullptr);
  kernel_->feed(FakeKernel::event(1, 0));
  kernel_->feed(FakeKernel::event(1, 1));
  kernel_->feed(FakeKernel::event(2, 0));
  run_until(*session, 3);
  session->finish();
  ASSERT_NE(session->journeys(), nullptr);
  std::size_t journeys = 0;
  session->journeys()->for_each([&](const Journey&) { ++journeys; });
  EXPECT_EQ(journeys, 2u);
}

TEST_F(TraceSessionOverFakes, ALoadThatFailsAfterTheProgramsLoadedLeavesNoneLoaded) {
  kernel_->read_failure = "no ring buffer";
  EXPECT_THROW(load(), std::runtime_error);
  EXPECT_EQ(kernel_->alive(), 0);
  EXPECT_EQ(kernel_->calls(), (std::vector<std::string>{"load", "unload"}));
}

}  // namespace
}  // namespace pwru
