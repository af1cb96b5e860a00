// Reads events from the BPF ring buffer and the per-CPU counters beside it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
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

class RingReader {
 public:
  // `on_event` returns false to stop consuming (e.g. a line limit was hit);
  // the events after it stay in the ring.
  using Handler = std::function<bool(const RingRecord&)>;
  RingReader(int ring_fd, Handler on_event);
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  // Waits up to timeout_ms for events and handles what arrived. Returns
  // false once the handler asked to stop.
  bool poll(int timeout_ms);
  // Handles everything already in the ring without waiting.
  bool drain();
  // Records decode_event_record refused (ABI mismatch).
  std::uint64_t malformed() const { return malformed_; }

 private:
  static int on_sample(void* ctx, void* data, std::size_t size) noexcept;
  struct ring_buffer* ring_ = nullptr;
  Handler handler_;
  bool stopped_ = false;
  std::uint64_t malformed_ = 0;
};

// Sums the per-CPU counters map (enum pwru_counter) across CPUs.
std::array<std::uint64_t, PWRU_CNT_MAX> read_counters(int counters_fd);

// The return addresses of one stack id, innermost first; empty when gone.
std::vector<std::uint64_t> read_stack(int stacks_fd, std::int64_t stack_id);

}  // namespace pwru
