#include "events/ring_reader.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <new>
#include <stdexcept>
#include <string>

#include "common/error.h"

namespace pwru {
namespace {

RingRecord record_of(const pwru_event& event) { return RingRecord{event, {}, 0}; }

TEST(RecordDispatcher, AnEventThatCannotBePrintedIsCountedSkippedAndItsMessageKept) {
  int calls = 0;
  RecordDispatcher dispatcher([&calls](const RingRecord& r) -> bool {
    ++calls;
    if (r.event.pid == 7) throw std::out_of_range("no name for hook 4242");
    if (r.event.pid == 8) throw std::runtime_error("a later failure");
    return true;
  });
  pwru_event fine{}, odd{}, later{};
  fine.pid = 1;
  odd.pid = 7;
  later.pid = 8;
  EXPECT_EQ(dispatcher.dispatch(record_of(fine)), RecordDispatcher::kGoOn);
  EXPECT_EQ(dispatcher.dispatch(record_of(odd)), RecordDispatcher::kGoOn);
  EXPECT_EQ(dispatcher.dispatch(record_of(later)), RecordDispatcher::kGoOn);
  EXPECT_EQ(dispatcher.dispatch(record_of(odd)), RecordDispatcher::kGoOn);
  EXPECT_EQ(dispatcher.dispatch(record_of(fine)), RecordDispatcher::kGoOn);
  EXPECT_EQ(calls, 5);  // reading went on after each
  EXPECT_FALSE(dispatcher.stopped());
  EXPECT_EQ(dispatcher.unhandled(), 3u);
  EXPECT_EQ(dispatcher.first_unhandled_reason(), "no name for hook 4242");
  EXPECT_NO_THROW(dispatcher.rethrow_failure());
}

TEST(RecordDispatcher, AFailedWriteStopsReadingAndIsRethrownOnce) {
  int calls = 0;
  RecordDispatcher dispatcher([&calls](const RingRecord&) -> bool {
    ++calls;
    throw SystemError("writing trace output to /full/disk", ENOSPC);
  });
  pwru_event event{};
  EXPECT_EQ(dispatcher.dispatch(record_of(event)), RecordDispatcher::kFailed);
  EXPECT_TRUE(dispatcher.stopped());
  // What is still in the ring is not handed to a handler that cannot write.
  EXPECT_EQ(dispatcher.dispatch(record_of(event)), RecordDispatcher::kStop);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(dispatcher.unhandled(), 0u);
  try {
    dispatcher.rethrow_failure();
    ADD_FAILURE() << "the write failure was not rethrown";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ENOSPC);
    EXPECT_NE(std::string(e.what()).find("writing trace output to /full/disk"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(dispatcher.rethrow_failure());
}

TEST(RecordDispatcher, OutOfMemoryStopsReadingToo) {
  RecordDispatcher dispatcher([](const RingRecord&) -> bool { throw std::bad_alloc(); });
  pwru_event event{};
  EXPECT_EQ(dispatcher.dispatch(record_of(event)), RecordDispatcher::kFailed);
  EXPECT_THROW(dispatcher.rethrow_failure(), std::bad_alloc);
}

TEST(RecordDispatcher, AHandlerThatAsksToStopStopsWithoutAnError) {
  RecordDispatcher dispatcher([](const RingRecord&) { return false; });
  pwru_event event{};
  EXPECT_EQ(dispatcher.dispatch(record_of(event)), RecordDispatcher::kStop);
  EXPECT_TRUE(dispatcher.stopped());
  EXPECT_NO_THROW(dispatcher.rethrow_failure());
  EXPECT_EQ(dispatcher.unhandled(), 0u);
}

TEST(ReadCounters, FailedLookupsAreCountedWithTheirErrno) {
  // Not a map: every lookup fails (EBADF, or EPERM where unprivileged BPF
  // is off), and each counter reads 0 rather than a guess.
  const CounterTotals totals = read_counters(-1);
  EXPECT_EQ(totals.failed_lookups, static_cast<std::uint32_t>(PWRU_CNT_MAX));
  EXPECT_TRUE(totals.first_errno == EBADF || totals.first_errno == EPERM) << totals.first_errno;
  for (int counter = 0; counter < PWRU_CNT_MAX; ++counter) EXPECT_EQ(totals[counter], 0u);
}

}  // namespace
}  // namespace pwru
