#include "events/ring_reader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/error.h"
#include "events/event_record.h"

namespace pwru {

RingReader::RingReader(int ring_fd, Handler on_event) : handler_(std::move(on_event)) {
  ring_ = ring_buffer__new(ring_fd, &RingReader::on_sample, this, nullptr);
  if (!ring_) throw_libbpf("opening the event ring buffer", 0);
}

RingReader::~RingReader() { ring_buffer__free(ring_); }

int RingReader::on_sample(void* ctx, void* data, std::size_t size) noexcept {
  auto* self = static_cast<RingReader*>(ctx);
  DecodedEvent decoded;
  if (!decode_event_record({static_cast<const std::uint8_t*>(data), size}, decoded)) {
    ++self->malformed_;
    return 0;
  }
  RingRecord record{decoded.event, decoded.packet, decoded.packet_len};
  try {
    if (!self->handler_(record)) {
      self->stopped_ = true;
      return 1;  // stops ring_buffer__poll/consume here
    }
  } catch (...) {
    self->stopped_ = true;
    return -1;
  }
  return 0;
}

bool RingReader::poll(int timeout_ms) {
  if (stopped_) return false;
  int ret = ring_buffer__poll(ring_, timeout_ms);
  if (ret < 0 && ret != -EINTR && !stopped_) throw_libbpf("reading the event ring buffer", ret);
  return !stopped_;
}

bool RingReader::drain() {
  if (stopped_) return false;
  int ret = ring_buffer__consume(ring_);
  if (ret < 0 && ret != -EINTR && !stopped_) throw_libbpf("draining the event ring buffer", ret);
  return !stopped_;
}

std::array<std::uint64_t, PWRU_CNT_MAX> read_counters(int counters_fd) {
  std::array<std::uint64_t, PWRU_CNT_MAX> totals{};
  const int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return totals;
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(ncpus));
  for (std::uint32_t key = 0; key < PWRU_CNT_MAX; ++key) {
    if (bpf_map_lookup_elem(counters_fd, &key, per_cpu.data()) != 0) continue;
    for (std::uint64_t v : per_cpu) totals[key] += v;
  }
  return totals;
}

std::vector<std::uint64_t> read_stack(int stacks_fd, std::int64_t stack_id) {
  std::vector<std::uint64_t> ips;
  if (stack_id < 0) return ips;
  std::uint64_t frames[PWRU_MAX_STACK_DEPTH] = {};
  auto key = static_cast<std::uint32_t>(stack_id);
  if (bpf_map_lookup_elem(stacks_fd, &key, frames) != 0) return ips;
  for (std::uint64_t ip : frames) {
    if (ip == 0) break;
    ips.push_back(ip);
  }
  return ips;
}

}  // namespace pwru
