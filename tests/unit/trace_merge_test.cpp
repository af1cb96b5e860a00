// The fan-out merge (issue 20): wall-clock order across node feeds, the
// reorder window, late lines, slow and failed feeds, the caps, backpressure
// and cancel. Clocks are fakes moved by hand, so the timeouts are exact and
// the tests only ever wait for the writer thread.
#include "traces/trace_merge.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eventually.h"

namespace pwru {
namespace {

using namespace std::chrono_literals;
using ::pwru::testing::eventually;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::uint64_t kMs = 1000000;

class RecordingSink final : public LineSink {
 public:
  void write(std::string_view text) override {
    ++writing_;
    std::unique_lock lock(mutex_);
    opened_.wait(lock, [&] { return open_; });
    lines_.emplace_back(text);
  }
  void flush() override { ++flushes_; }
  bool closed() const override { return closed_; }

  std::vector<std::string> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  std::size_t count() const { return lines().size(); }
  // While shut, write() blocks: a client that does not read.
  void shut() {
    std::lock_guard lock(mutex_);
    open_ = false;
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }
  std::atomic<bool> closed_{false};
  std::atomic<int> flushes_{0};
  std::atomic<int> writing_{0};  // write() calls begun

 private:
  mutable std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = true;
  std::vector<std::string> lines_;
};

// A merge over fake clocks with its writer on a thread.
class Merge {
 public:
  Merge(std::vector<std::string> nodes, MergeOptions options = {})
      : stream_(
            std::move(nodes), options,
            [this] { return std::chrono::steady_clock::time_point(steady_ns_.load() * 1ns); },
            [this] { return wall_ns_.load(); }) {}
  ~Merge() {
    stream_.cancel();
    if (writer_.joinable()) writer_.join();
  }
  void start() {
    writer_ = std::thread([this] {
      stream_.run(sink_);
      returned_ = true;
    });
  }
  bool returned() {
    if (!eventually([&] { return returned_.load(); }, 5s, 2ms)) return false;
    writer_.join();
    return true;
  }
  void advance(std::chrono::milliseconds by) { steady_ns_ += by.count() * kMs; }

  static std::string event(std::uint64_t wall_ms, const std::string& node, const std::string& rest = "") {
    return R"({"wall_ns":)" + std::to_string(wall_ms * kMs) + R"(,"node":")" + node + R"(","skb":"0x1")" + rest + "}";
  }
  static std::string heartbeat(std::uint64_t wall_ms) {
    return R"({"heartbeat":{"wall_ns":)" + std::to_string(wall_ms * kMs) + "}}";
  }
  // The wall_ns (in ms) of each written line, "L" appended when late.
  std::vector<std::string> order() const {
    std::vector<std::string> out;
    for (const auto& line : sink_.lines()) {
      const auto n = std::stoull(line.substr(11));
      out.push_back(std::to_string(n / kMs) + (line.find(R"("late":true)") != std::string::npos ? "L" : ""));
    }
    return out;
  }
  bool wrote(std::size_t n) const {
    return eventually([&] { return sink_.count() >= n; }, 5s, 2ms) && sink_.count() == n;
  }
  // Gives the writer a moment to write what it should not.
  bool still_wrote(std::size_t n) const {
    std::this_thread::sleep_for(40ms);
    return sink_.count() == n;
  }

  std::atomic<std::int64_t> steady_ns_{1000 * static_cast<std::int64_t>(kMs)};
  std::atomic<std::uint64_t> wall_ns_{1000000 * kMs};
  RecordingSink sink_;
  MergedStream stream_;
  std::thread writer_;
  std::atomic<bool> returned_{false};
};

TEST(TraceMerge, ThreeFeedsComeOutInWallOrder) {
  Merge m({"n1", "n2", "n3"});
  m.start();
  const std::vector<std::vector<std::uint64_t>> feeds = {{10, 40, 70, 100}, {20, 30, 90}, {5, 50, 60, 80}};
  std::vector<std::thread> threads;
  for (std::size_t n = 0; n < feeds.size(); ++n) {
    threads.emplace_back([&, n] {
      for (auto wall : feeds[n]) EXPECT_TRUE(m.stream_.push(n, Merge::event(wall, "n" + std::to_string(n + 1))));
      m.stream_.push(n, Merge::heartbeat(200));
      m.stream_.end_feed(n, true, "");
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(m.returned());
  EXPECT_THAT(m.order(), ElementsAre("5", "10", "20", "30", "40", "50", "60", "70", "80", "90", "100"));
  auto r = m.stream_.result();
  EXPECT_EQ(r.ended, "");
  EXPECT_EQ(r.events_sent, 11u);
  EXPECT_EQ(r.events_late, 0u);
  EXPECT_EQ(r.nodes[0].node, "n1");
  EXPECT_EQ(r.nodes[0].state, "ok");
  EXPECT_EQ(r.nodes[1].events, 3u);
  EXPECT_GE(m.sink_.flushes_.load(), 1);
  EXPECT_EQ(m.sink_.lines()[0], Merge::event(5, "n3") + "\n");
}

TEST(TraceMerge, EventWaitsForTheOtherNodesHeartbeat) {
  Merge m({"n1", "n2"});
  m.start();
  m.stream_.push(0, Merge::event(100, "n1"));
  m.stream_.push(0, Merge::heartbeat(200));
  m.stream_.push(1, Merge::heartbeat(50));
  m.stream_.push(1, Merge::heartbeat(99));
  EXPECT_TRUE(m.still_wrote(0));
  m.stream_.push(1, Merge::heartbeat(100));
  ASSERT_TRUE(m.wrote(1));
  // n2's own event promises nothing about n2's later ones (other CPUs).
  m.stream_.push(1, Merge::event(120, "n2"));
  EXPECT_TRUE(m.still_wrote(1));
  m.stream_.push(1, Merge::heartbeat(130));
  ASSERT_TRUE(m.wrote(2));
  EXPECT_THAT(m.order(), ElementsAre("100", "120"));
}

TEST(TraceMerge, HeldPastTheReorderWindowGoesOutAnyway) {
  Merge m({"n1", "n2"}, MergeOptions{.reorder_window = 250ms});
  m.start();
  m.stream_.push(0, Merge::event(100, "n1"));
  m.stream_.push(0, Merge::event(90, "n1"));
  m.advance(249ms);
  EXPECT_TRUE(m.still_wrote(0));
  m.advance(1ms);
  ASSERT_TRUE(m.wrote(2));
  EXPECT_THAT(m.order(), ElementsAre("90", "100"));
}

TEST(TraceMerge, LateLineIsMarkedAfterWallNsAndCounted) {
  Merge m({"n1", "n2"});
  m.start();
  m.stream_.push(0, Merge::event(100, "n1"));
  m.stream_.push(0, Merge::heartbeat(200));
  m.stream_.push(1, Merge::heartbeat(200));
  ASSERT_TRUE(m.wrote(1));
  m.stream_.push(1, Merge::event(50, "n2"));  // behind its own promise: a clock step, say
  m.stream_.push(1, Merge::heartbeat(300));
  m.stream_.push(0, Merge::heartbeat(300));
  ASSERT_TRUE(m.wrote(2));
  EXPECT_EQ(m.sink_.lines()[1], R"({"wall_ns":50000000,"late":true,"node":"n2","skb":"0x1"})"
                                "\n");
  EXPECT_EQ(m.stream_.result().events_late, 1u);
}

TEST(TraceMerge, FeedEndingUncleanlyLeavesTheOthersFlowing) {
  Merge m({"n1", "n2", "n3"});
  m.start();
  m.stream_.push(1, Merge::event(10, "n2"));
  m.advance(3200ms);  // also past slow_after: the others must not be slow afterwards
  m.stream_.push(0, Merge::heartbeat(5));
  m.stream_.push(2, Merge::heartbeat(5));
  m.stream_.end_feed(1, false, "");
  m.stream_.push(0, Merge::event(20, "n1"));
  m.stream_.push(2, Merge::event(30, "n3"));
  m.stream_.push(0, Merge::heartbeat(40));
  m.stream_.push(2, Merge::heartbeat(40));
  ASSERT_TRUE(m.wrote(3));
  m.stream_.end_feed(0, true, "");
  m.stream_.end_feed(2, false, "refused: 429 too many traces");
  ASSERT_TRUE(m.returned());
  EXPECT_THAT(m.order(), ElementsAre("10", "20", "30"));
  auto r = m.stream_.result();
  EXPECT_EQ(r.nodes[0].state, "ok");
  EXPECT_EQ(r.nodes[1].state, "stopped answering after 3.2 s");
  EXPECT_EQ(r.nodes[2].state, "refused: 429 too many traces");
}

TEST(TraceMerge, SilentFeedBecomesSlowAndLeavesTheWatermark) {
  Merge m({"n1", "n2"}, MergeOptions{.reorder_window = 10s, .slow_after = 2000ms});
  m.start();
  m.stream_.push(1, Merge::heartbeat(10));
  m.stream_.push(0, Merge::event(100, "n1"));
  m.stream_.push(0, Merge::heartbeat(200));
  m.advance(1999ms);
  m.stream_.push(0, Merge::heartbeat(210));
  EXPECT_TRUE(m.still_wrote(0));
  m.advance(1ms);  // n2 has been silent for 2 s
  ASSERT_TRUE(m.wrote(1));
  EXPECT_EQ(m.stream_.result().nodes[1].state, "slow: nothing for 2.0 s");
  // It speaks again: live, and what it held back is late.
  m.stream_.push(1, Merge::event(60, "n2"));
  m.stream_.push(0, Merge::event(220, "n1"));
  m.stream_.push(0, Merge::heartbeat(300));
  EXPECT_TRUE(m.still_wrote(1));
  EXPECT_EQ(m.stream_.result().nodes[1].state, "ok");
  m.stream_.push(1, Merge::heartbeat(300));
  ASSERT_TRUE(m.wrote(3));
  EXPECT_THAT(m.order(), ElementsAre("100", "60L", "220"));
  // Slow when the merge ends: reported so, whatever the hang-up afterwards.
  m.advance(2500ms);
  m.stream_.push(0, Merge::heartbeat(400));
  m.stream_.cancel();
  ASSERT_TRUE(m.returned());
  m.stream_.end_feed(1, false, "");
  auto r = m.stream_.result();
  EXPECT_EQ(r.ended, "cancelled");
  EXPECT_EQ(r.nodes[0].state, "cancelled");
  EXPECT_EQ(r.nodes[1].state, "slow: nothing for 2.5 s");
}

TEST(TraceMerge, SummariesJourneysAndErrorsAreCollectedNotWritten) {
  const std::string journey1 = R"({"journey":{"skb":"0x1","fate":"delivered"}})";
  const std::string journey2 = R"({"journey":{"skb":"0x2","fate":"dropped"}})";
  // Each is charged twice its line: parsed, it takes more than its text.
  Merge m({"n1", "n2"}, MergeOptions{.max_journey_bytes = 2 * (journey1.size() + journey2.size()) + 1});
  m.start();
  m.stream_.push(0, Merge::event(10, "n1"));
  m.stream_.push(0, journey1);
  m.stream_.push(1, journey2);
  m.stream_.push(1, R"({"journey":{"skb":"0x3"}})");  // over the byte cap
  m.stream_.push(0, R"({"summary":{"events_sent":1,"events_lost":0}})");
  m.stream_.push(1, R"({"error":"trace ended: pods gone"})");
  m.stream_.push(1, R"({"summary":{"events_sent":0}})");
  m.stream_.end_feed(0, true, "");
  m.stream_.end_feed(1, true, "");
  ASSERT_TRUE(m.returned());
  EXPECT_THAT(m.order(), ElementsAre("10"));
  auto r = m.stream_.take_result();
  ASSERT_TRUE(r.nodes[0].summary);
  EXPECT_EQ((*r.nodes[0].summary)["events_sent"], 1);
  ASSERT_EQ(r.nodes[0].journeys.size(), 1u);
  EXPECT_EQ(r.nodes[0].journeys[0]["fate"], "delivered");
  ASSERT_EQ(r.nodes[1].journeys.size(), 1u);
  EXPECT_EQ(r.nodes[1].journeys[0]["skb"], "0x2");
  EXPECT_EQ(r.journeys_not_kept, 1u);
  EXPECT_EQ(r.nodes[1].last_error, "trace ended: pods gone");
  EXPECT_EQ(r.nodes[1].state, "ok, but it sent an error: trace ended: pods gone");
  EXPECT_EQ(r.nodes[0].last_error, "");
  EXPECT_EQ(r.nodes[0].state, "ok");
  EXPECT_EQ(r.nodes[1].events, 0u);
  EXPECT_EQ(r.nodes[0].events, 1u);
  // Taken, not copied: what is left has the counts but no journeys.
  auto again = m.stream_.result();
  EXPECT_TRUE(again.nodes[0].journeys.empty());
  EXPECT_FALSE(again.nodes[0].summary);
  EXPECT_EQ(again.nodes[0].events, 1u);
  EXPECT_EQ(again.nodes[1].state, r.nodes[1].state);
}

TEST(TraceMerge, ErrorInAnOkStateIsCutAndOtherObjectsAreIgnored) {
  Merge m({"n1", "n2", "n3"});
  m.start();
  const std::string long_error(1000, 'x');
  m.stream_.push(0, R"({"error":")" + long_error + R"("})");
  m.stream_.push(1, R"({"newer_kind":{"a":1}})");  // from a newer node: not an error
  m.stream_.push(2, R"({"error":"disk full"})");
  m.stream_.end_feed(0, true, "");
  m.stream_.end_feed(1, true, "");
  m.stream_.end_feed(2, false, "refused: 503");
  ASSERT_TRUE(m.returned());
  auto r = m.stream_.result();
  EXPECT_EQ(r.nodes[0].state, "ok, but it sent an error: " + std::string(300, 'x') + "...");
  EXPECT_EQ(r.nodes[1].state, "ok");
  EXPECT_EQ(r.nodes[1].last_error, "");
  EXPECT_EQ(r.nodes[2].state, "refused: 503") << "a state that is not ok says enough";
}

TEST(TraceMerge, MaxEventsCutsAndEnds) {
  Merge m({"n1"}, MergeOptions{.max_events = 3});
  m.start();
  for (std::uint64_t wall = 1; wall <= 5; ++wall) m.stream_.push(0, Merge::event(wall, "n1"));
  m.stream_.push(0, Merge::heartbeat(10));
  ASSERT_TRUE(m.returned());
  EXPECT_THAT(m.order(), ElementsAre("1", "2", "3"));
  EXPECT_FALSE(m.stream_.push(0, Merge::event(11, "n1")));
  auto r = m.stream_.result();
  EXPECT_EQ(r.ended, "max_events");
  EXPECT_EQ(r.events_sent, 3u);
  EXPECT_EQ(r.nodes[0].state, "ok");
}

TEST(TraceMerge, RateCapEndsWithTheConfigKey) {
  Merge m({"n1"}, MergeOptions{.max_events_per_second = 2});
  m.start();
  m.stream_.push(0, Merge::event(1, "n1"));
  m.stream_.push(0, Merge::heartbeat(1));
  ASSERT_TRUE(m.wrote(1));
  m.advance(600ms);
  m.stream_.push(0, Merge::event(2, "n1"));
  m.stream_.push(0, Merge::heartbeat(2));
  ASSERT_TRUE(m.wrote(2));
  m.advance(500ms);  // the first has left the last second
  m.stream_.push(0, Merge::event(3, "n1"));
  m.stream_.push(0, Merge::heartbeat(3));
  ASSERT_TRUE(m.wrote(3));
  m.advance(100ms);  // 2 and 3 within the second: a 4th is one too many
  m.stream_.push(0, Merge::event(4, "n1"));
  m.stream_.push(0, Merge::heartbeat(4));
  ASSERT_TRUE(m.returned());
  EXPECT_THAT(m.order(), ElementsAre("1", "2", "3"));
  EXPECT_EQ(m.stream_.result().ended, "events per second over traces.fanout.max_events_per_second (2)");
}

TEST(TraceMerge, RateCapCountsArrivalsEvenWhileTheClientReadsNothing) {
  Merge m({"n1"}, MergeOptions{.max_events_per_second = 3});
  m.sink_.shut();
  m.start();
  for (std::uint64_t wall = 1; wall <= 3; ++wall) EXPECT_TRUE(m.stream_.push(0, Merge::event(wall, "n1")));
  m.advance(999ms);
  EXPECT_FALSE(m.stream_.push(0, Merge::event(4, "n1")));
  m.sink_.open();
  ASSERT_TRUE(m.returned());
  auto r = m.stream_.result();
  EXPECT_EQ(r.ended, "events per second over traces.fanout.max_events_per_second (3)");
  EXPECT_EQ(r.nodes[0].events, 4u);
}

TEST(TraceMerge, RateCapIgnoresABacklogDrainedAfterAPause) {
  Merge m({"n1"}, MergeOptions{.max_events_per_second = 4});
  m.sink_.shut();  // the client reads nothing for a while
  m.start();
  m.stream_.push(0, Merge::event(1, "n1"));
  m.stream_.push(0, Merge::heartbeat(1));
  ASSERT_TRUE(eventually([&] { return m.sink_.writing_ == 1; }, 5s, 2ms));
  for (std::uint64_t wall = 2; wall <= 4; ++wall) EXPECT_TRUE(m.stream_.push(0, Merge::event(wall, "n1")));
  m.advance(1000ms);
  for (std::uint64_t wall = 5; wall <= 8; ++wall) EXPECT_TRUE(m.stream_.push(0, Merge::event(wall, "n1")));
  m.stream_.push(0, Merge::heartbeat(10));
  m.stream_.end_feed(0, true, "");
  m.sink_.open();  // 8 written at one instant; 4 a second arrived
  ASSERT_TRUE(m.returned());
  EXPECT_THAT(m.order(), ElementsAre("1", "2", "3", "4", "5", "6", "7", "8"));
  EXPECT_EQ(m.stream_.result().ended, "");
}

TEST(TraceMerge, FractionalRateBelowOneIsTakenAsOne) {
  Merge m({"n1"}, MergeOptions{.max_events_per_second = 0.5});
  m.start();
  EXPECT_TRUE(m.stream_.push(0, Merge::event(1, "n1")));
  EXPECT_FALSE(m.stream_.push(0, Merge::event(2, "n1")));
  ASSERT_TRUE(m.returned());
  EXPECT_EQ(m.stream_.result().ended, "events per second over traces.fanout.max_events_per_second (1)");
}

TEST(TraceMerge, PushBlocksAtMaxBufferedLinesAndResumes) {
  Merge m({"n1"}, MergeOptions{.max_buffered_lines = 2});
  m.sink_.shut();
  m.start();
  m.stream_.push(0, Merge::event(1, "n1"));
  m.stream_.push(0, Merge::heartbeat(1));
  ASSERT_TRUE(eventually([&] { return m.sink_.writing_ == 1; }, 5s, 2ms));
  // The writer is stuck writing 1; two more fill the buffer.
  m.stream_.push(0, Merge::event(2, "n1"));
  m.stream_.push(0, Merge::event(3, "n1"));
  std::atomic<bool> pushed{false};
  std::thread feed([&] {
    EXPECT_TRUE(m.stream_.push(0, Merge::event(4, "n1")));
    pushed = true;
    m.stream_.push(0, Merge::heartbeat(10));
    m.stream_.end_feed(0, true, "");
  });
  std::this_thread::sleep_for(40ms);
  EXPECT_FALSE(pushed.load());
  m.sink_.open();
  feed.join();
  ASSERT_TRUE(m.returned());
  EXPECT_THAT(m.order(), ElementsAre("1", "2", "3", "4"));
}

TEST(TraceMerge, PushBlocksAtMaxBufferedBytesAndHeartbeatsStillFlow) {
  const std::size_t event_bytes = Merge::event(1, "n1").size();
  // Two events reach the cap; lines are no limit here.
  Merge m({"n1", "n2"}, MergeOptions{.reorder_window = 10s, .max_buffered_bytes = 2 * event_bytes});
  m.start();
  m.stream_.push(1, Merge::heartbeat(0));  // n2 holds everything back
  EXPECT_TRUE(m.stream_.push(0, Merge::event(3, "n1")));
  EXPECT_TRUE(m.still_wrote(0));
  // Full: the writer lets the oldest go so that the feeds go on.
  EXPECT_TRUE(m.stream_.push(0, Merge::event(1, "n1")));
  ASSERT_TRUE(m.wrote(1));
  EXPECT_TRUE(m.stream_.push(0, Merge::event(2, "n1")));
  ASSERT_TRUE(m.wrote(2));
  EXPECT_THAT(m.order(), ElementsAre("1", "2"));
  // A client that reads nothing: the writer is stuck, push() waits.
  m.sink_.shut();
  EXPECT_TRUE(m.stream_.push(0, Merge::event(4, "n1")));
  ASSERT_TRUE(eventually([&] { return m.sink_.writing_ == 3; }, 5s, 2ms));
  EXPECT_TRUE(m.stream_.push(0, Merge::event(5, "n1")));  // 4 and 5 held: full
  std::atomic<bool> pushed{false};
  std::thread feed([&] {
    EXPECT_TRUE(m.stream_.push(0, Merge::event(6, "n1")));
    pushed = true;
  });
  std::this_thread::sleep_for(40ms);
  EXPECT_FALSE(pushed.load());
  m.sink_.open();
  feed.join();
  m.stream_.push(1, Merge::heartbeat(100));  // a heartbeat is never held up
  m.stream_.push(0, Merge::heartbeat(100));
  ASSERT_TRUE(m.wrote(6));
  EXPECT_THAT(m.order(), ElementsAre("1", "2", "3", "4", "5", "6"));
}

TEST(TraceMerge, CancelReleasesABlockedPushAndEndsRun) {
  Merge m({"n1", "n2"}, MergeOptions{.max_buffered_lines = 1});
  m.sink_.shut();
  m.start();
  m.stream_.push(0, Merge::event(1, "n1"));
  m.stream_.push(0, Merge::heartbeat(1));
  m.stream_.push(1, Merge::heartbeat(1));
  ASSERT_TRUE(eventually([&] { return m.sink_.writing_ == 1; }, 5s, 2ms));
  m.stream_.push(0, Merge::event(2, "n1"));  // the buffer is full now
  std::atomic<int> pushed{-1};
  std::thread feed([&] { pushed = m.stream_.push(0, Merge::event(3, "n1")) ? 1 : 0; });
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(pushed.load(), -1);
  m.stream_.cancel();
  feed.join();
  EXPECT_EQ(pushed.load(), 0);
  m.sink_.open();
  ASSERT_TRUE(m.returned());
  EXPECT_THAT(m.order(), ElementsAre("1"));  // what was held is dropped
  EXPECT_FALSE(m.stream_.push(1, Merge::heartbeat(5)));
  auto r = m.stream_.result();
  EXPECT_EQ(r.ended, "cancelled");
  EXPECT_EQ(r.nodes[0].state, "cancelled");
  EXPECT_EQ(r.nodes[1].state, "cancelled");
}

TEST(TraceMerge, ClosedOutputEndsWithClientGone) {
  Merge m({"n1"});
  m.start();
  m.stream_.push(0, Merge::event(1, "n1"));
  m.stream_.push(0, Merge::heartbeat(1));
  ASSERT_TRUE(m.wrote(1));
  m.sink_.closed_ = true;
  ASSERT_TRUE(m.returned());
  EXPECT_FALSE(m.stream_.push(0, Merge::event(2, "n1")));
  auto r = m.stream_.result();
  EXPECT_EQ(r.ended, "client gone");
  EXPECT_EQ(r.nodes[0].state, "cancelled");
}

TEST(TraceMerge, ClockOffsetIsTheSmallestHeartbeatLag) {
  Merge m({"n1", "n2"});
  m.wall_ns_ = 1000 * kMs;
  m.stream_.push(0, R"({"heartbeat":{"wall_ns":999500000}})");  // 0.5 ms behind
  m.wall_ns_ = 1100 * kMs;
  m.stream_.push(0, R"({"heartbeat":{"wall_ns":1098000000}})");  // 2 ms: not the minimum
  m.stream_.push(1, R"({"heartbeat":{"wall_ns":1101000000}})");  // its clock is ahead
  auto r = m.stream_.result();
  ASSERT_TRUE(r.nodes[0].clock_offset_ms_estimate);
  EXPECT_DOUBLE_EQ(*r.nodes[0].clock_offset_ms_estimate, 0.5);
  ASSERT_TRUE(r.nodes[1].clock_offset_ms_estimate);
  EXPECT_DOUBLE_EQ(*r.nodes[1].clock_offset_ms_estimate, -1.0);
}

TEST(TraceMerge, UnreadableEventLineIsAnErrorNotAnEvent) {
  Merge m({"n1"});
  m.start();
  m.stream_.push(0, R"({"wall_ns":"12","skb":"0x1"})");
  m.stream_.end_feed(0, true, "");
  ASSERT_TRUE(m.returned());
  EXPECT_TRUE(m.sink_.lines().empty());
  EXPECT_THAT(m.stream_.result().nodes[0].last_error, HasSubstr("unreadable event line"));
  EXPECT_THAT(m.stream_.result().nodes[0].state, HasSubstr("ok, but it sent an error: unreadable event line"));
}

}  // namespace
}  // namespace pwru
