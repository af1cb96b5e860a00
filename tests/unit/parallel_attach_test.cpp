#include "probe/parallel_attach.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace pwru {
namespace {

using std::chrono::milliseconds;

TEST(ParallelAttach, StartsEveryIndexOnceAndOverlapsThem) {
  constexpr std::size_t kCount = 60;
  std::vector<std::atomic<int>> calls(kCount);
  std::atomic<int> in_flight{0}, most_in_flight{0};
  std::mutex ids_mutex;
  std::set<std::thread::id> ids;
  attach_each_in_parallel(
      kCount, 6,
      [&](std::size_t i) {
        const int now = ++in_flight;
        for (int seen = most_in_flight; now > seen && !most_in_flight.compare_exchange_weak(seen, now);) {
        }
        {
          std::lock_guard lock(ids_mutex);
          ids.insert(std::this_thread::get_id());
        }
        std::this_thread::sleep_for(milliseconds(2));
        ++calls[i];
        --in_flight;
      },
      nullptr, nullptr);
  for (std::size_t i = 0; i < kCount; ++i) EXPECT_EQ(calls[i], 1) << "index " << i;
  EXPECT_GT(most_in_flight, 1);
  EXPECT_LE(most_in_flight, 6);
  EXPECT_LE(ids.size(), 6u);
  EXPECT_TRUE(ids.count(std::this_thread::get_id())) << "the calling thread attaches too";
}

TEST(ParallelAttach, OneThreadAttachesInOrderOnTheCallingThread) {
  const auto caller = std::this_thread::get_id();
  std::vector<std::size_t> order;
  attach_each_in_parallel(
      5, 1,
      [&](std::size_t i) {
        EXPECT_EQ(std::this_thread::get_id(), caller);
        order.push_back(i);
      },
      nullptr, nullptr);
  EXPECT_EQ(order, (std::vector<std::size_t>{0, 1, 2, 3, 4}));
}

TEST(ParallelAttach, MoreThreadsThanWorkAndNoWork) {
  std::atomic<int> calls{0};
  attach_each_in_parallel(
      3, 64, [&](std::size_t) { ++calls; }, nullptr, nullptr);
  EXPECT_EQ(calls, 3);
  bool progressed = false;
  attach_each_in_parallel(
      0, 4, [&](std::size_t) { ++calls; }, nullptr, [&](std::size_t, std::size_t) { progressed = true; });
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(progressed);
}

TEST(ParallelAttach, ProgressComesFromTheCallingThreadRisingToTheTotal) {
  constexpr std::size_t kCount = 200;
  const auto caller = std::this_thread::get_id();
  std::vector<std::pair<std::size_t, std::size_t>> seen;
  attach_each_in_parallel(
      kCount, 8, [](std::size_t) { std::this_thread::sleep_for(std::chrono::microseconds(200)); }, nullptr,
      [&](std::size_t done, std::size_t total) {
        EXPECT_EQ(std::this_thread::get_id(), caller);
        seen.emplace_back(done, total);
      });
  ASSERT_FALSE(seen.empty());
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].second, kCount);
    if (i) {
      EXPECT_GT(seen[i].first, seen[i - 1].first);
    }
  }
  EXPECT_EQ(seen.back().first, kCount);
}

TEST(ParallelAttach, CancelledBeforeStartAttachesNothing) {
  std::atomic<int> calls{0};
  attach_each_in_parallel(
      10, 4, [&](std::size_t) { ++calls; }, [] { return true; }, nullptr);
  EXPECT_EQ(calls, 0);
}

TEST(ParallelAttach, CancelStopsNewAttachesAndEveryThreadHasStoppedOnReturn) {
  constexpr std::size_t kCount = 1000;
  std::atomic<int> started{0}, finished{0};
  std::atomic<bool> cancel{false};
  const auto start = std::chrono::steady_clock::now();
  attach_each_in_parallel(
      kCount, 4,
      [&](std::size_t) {
        if (++started == 20) cancel = true;
        std::this_thread::sleep_for(milliseconds(5));
        ++finished;
      },
      [&] { return cancel.load(); }, nullptr);
  const int on_return = finished;
  EXPECT_EQ(on_return, started.load()) << "an attach was still running after return";
  EXPECT_LT(started, 40) << "attaching went on long after cancel";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(finished, on_return);
}

TEST(ParallelAttach, AThrowingAttachStopsTheRestAndIsRethrownAfterEveryThreadStopped) {
  std::atomic<int> started{0}, finished{0};
  EXPECT_THROW(attach_each_in_parallel(
                   1000, 4,
                   [&](std::size_t i) {
                     ++started;
                     std::this_thread::sleep_for(milliseconds(2));
                     ++finished;
                     if (i == 10) throw std::runtime_error("refused");
                   },
                   nullptr, nullptr),
               std::runtime_error);
  EXPECT_EQ(finished, started.load());
  EXPECT_LT(started, 100);
}

TEST(ParallelAttach, AThrowingProgressStillJoinsTheThreads) {
  std::atomic<int> started{0}, finished{0};
  EXPECT_THROW(attach_each_in_parallel(
                   1000, 4,
                   [&](std::size_t) {
                     ++started;
                     std::this_thread::sleep_for(milliseconds(1));
                     ++finished;
                   },
                   nullptr, [](std::size_t, std::size_t) { throw std::runtime_error("terminal gone"); }),
               std::runtime_error);
  EXPECT_EQ(finished, started.load());
  EXPECT_LT(started, 1000);
}

}  // namespace
}  // namespace pwru
