#include "events/ring_reader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <new>
#include <system_error>
#include <utility>

#include "common/error.h"
#include "events/event_record.h"

namespace pwru {

int RecordDispatcher::dispatch(const RingRecord& record) noexcept {
  if (stopped_) return kStop;
  try {
    if (handler_(record)) return kGoOn;
    stopped_ = true;
    return kStop;
  } catch (const SystemError&) {
    failure_ = std::current_exception();
  } catch (const std::system_error&) {
    failure_ = std::current_exception();
  } catch (const std::bad_alloc&) {
    failure_ = std::current_exception();
  } catch (const std::exception& e) {
    note_unhandled(e.what());
    return kGoOn;
  } catch (...) {
    note_unhandled("an exception that is not a std::exception");
    return kGoOn;
  }
  stopped_ = true;
  return kFailed;
}

void RecordDispatcher::note_unhandled(const char* reason) noexcept {
  if (unhandled_++ != 0) return;
  try {
    first_unhandled_reason_ = reason;
    spdlog::warn(
        "an event could not be printed and was skipped: {} (later ones are only counted; the count comes "
        "with the trace's closing lines)",
        reason);
  } catch (...) {
    // Out of memory for the message: the count still tells.
  }
}

void RecordDispatcher::rethrow_failure() {
  if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
}

RingReader::RingReader(int ring_fd, Handler on_event) : dispatcher_(std::move(on_event)) {
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
  return self->dispatcher_.dispatch(RingRecord{decoded.event, decoded.packet, decoded.packet_len});
}

bool RingReader::poll(int timeout_ms) {
  if (dispatcher_.stopped()) return false;
  int ret = ring_buffer__poll(ring_, timeout_ms);
  dispatcher_.rethrow_failure();
  if (ret < 0 && ret != -EINTR && !dispatcher_.stopped()) throw_libbpf("reading the event ring buffer", ret);
  return !dispatcher_.stopped();
}

bool RingReader::drain() {
  if (dispatcher_.stopped()) return false;
  int ret = ring_buffer__consume(ring_);
  dispatcher_.rethrow_failure();
  if (ret < 0 && ret != -EINTR && !dispatcher_.stopped()) throw_libbpf("draining the event ring buffer", ret);
  return !dispatcher_.stopped();
}

CounterTotals read_counters(int counters_fd) {
  CounterTotals totals;
  const int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) {
    totals.failed_lookups = PWRU_CNT_MAX;
    totals.first_errno = -ncpus;
    return totals;
  }
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(ncpus));
  for (std::uint32_t key = 0; key < PWRU_CNT_MAX; ++key) {
    if (bpf_map_lookup_elem(counters_fd, &key, per_cpu.data()) != 0) {
      if (totals.failed_lookups++ == 0) totals.first_errno = errno;
      continue;
    }
    for (std::uint64_t v : per_cpu) totals.values[key] += v;
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
