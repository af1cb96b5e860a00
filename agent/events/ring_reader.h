// Reads events from the BPF ring buffer and the per-CPU counters beside it.
#pragma once

#include <array>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "pwru_abi.h"

struct ring_buffer;

namespace pwru {

// One ring record: the event and, with --output-pcap, the packet bytes
// that followed it (empty otherwise).
struct RingRecord {
  const pwru_event& event;
  std::span<const std::uint8_t> packet;
  std::uint32_t packet_len = 0;  // the whole packet's length; packet may hold less
};

// What happens to a record once decoded: the handler's answer and what it
// throws. Apart from the ring so that it can be tested without one.
//
// An exception from the handler is one of two kinds:
//  - the system underneath failed (SystemError, std::system_error: a write
//    to a full disk, a file gone; std::bad_alloc). The next event would
//    fail the same way, so reading stops and RingReader's poll()/drain()
//    rethrow it: the trace ends with that error.
//  - anything else is this one event's fault (a bug in naming or
//    formatting it): the event is skipped, counted, the first message kept
//    (and logged once, so that a trace where every event fails does not run
//    on silently), and reading goes on.
class RecordDispatcher {
 public:
  // `on_event` returns false to stop consuming (e.g. a line limit was hit).
  using Handler = std::function<bool(const RingRecord&)>;
  explicit RecordDispatcher(Handler on_event) : handler_(std::move(on_event)) {}

  // The ring callback's answers. libbpf (1.1) stops consuming only on a
  // negative one; a positive one would go on and hand it every later record.
  static constexpr int kGoOn = 0;
  static constexpr int kStop = -ECANCELED;  // the handler asked to stop, or stopped before
  static constexpr int kFailed = -EIO;      // a failure of the system: rethrow_failure() throws it
  int dispatch(const RingRecord& record) noexcept;
  bool stopped() const { return stopped_; }
  // Throws the failure that stopped reading, once; does nothing otherwise.
  void rethrow_failure();
  // Events skipped because the handler threw, and the first one's message.
  std::uint64_t unhandled() const { return unhandled_; }
  const std::string& first_unhandled_reason() const { return first_unhandled_reason_; }

 private:
  void note_unhandled(const char* reason) noexcept;

  Handler handler_;
  bool stopped_ = false;
  std::exception_ptr failure_;
  std::uint64_t unhandled_ = 0;
  std::string first_unhandled_reason_;
};

class RingReader {
 public:
  // `on_event` returns false to stop consuming (e.g. a line limit was hit);
  // the events after it stay in the ring. What it throws: RecordDispatcher.
  using Handler = RecordDispatcher::Handler;
  RingReader(int ring_fd, Handler on_event);
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  // Waits up to timeout_ms for events and handles what arrived. Returns
  // false once the handler asked to stop; throws what stopped the handler.
  bool poll(int timeout_ms);
  // Handles everything already in the ring without waiting.
  bool drain();
  // Records decode_event_record refused (ABI mismatch).
  std::uint64_t malformed() const { return malformed_; }
  // Events skipped because the handler threw, and the first one's message.
  std::uint64_t unhandled() const { return dispatcher_.unhandled(); }
  const std::string& first_unhandled_reason() const { return dispatcher_.first_unhandled_reason(); }

 private:
  static int on_sample(void* ctx, void* data, std::size_t size) noexcept;
  struct ring_buffer* ring_ = nullptr;
  RecordDispatcher dispatcher_;
  std::uint64_t malformed_ = 0;
};

// The per-CPU counters map (enum pwru_counter) summed across CPUs. A
// counter whose lookup failed reads 0 and is counted in failed_lookups.
struct CounterTotals {
  std::array<std::uint64_t, PWRU_CNT_MAX> values{};
  std::uint32_t failed_lookups = 0;
  int first_errno = 0;  // of the first failed lookup
  std::uint64_t operator[](std::size_t counter) const { return values[counter]; }
};

CounterTotals read_counters(int counters_fd);

// The return addresses of one stack id, innermost first; empty when gone.
std::vector<std::uint64_t> read_stack(int stacks_fd, std::int64_t stack_id);

}  // namespace pwru
