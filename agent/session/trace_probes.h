// A trace's loaded BPF programs as its TraceSession uses them: attach,
// events out of the ring, the maps beside it, detach. The session turns
// events into lines; this is everything it needs of the kernel for that.
// kernel_probes.h loads real ones; unit tests load fakes, so a session (and
// the agent's traces) can run without BPF.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "enrich/ksyms.h"
#include "events/ring_reader.h"
#include "probe/tracepoint_backend.h"
#include "pwru_abi.h"

namespace pwru {

class KernelBtf;
class StartupPhases;
struct TraceConfig;

// Where a session's events come from: the ring buffer's reader, handing
// each event to the handler it was opened with.
class EventSource {
 public:
  virtual ~EventSource() = default;
  // Waits up to timeout_ms and handles what arrived; false once the
  // handler asked to stop.
  virtual bool poll(int timeout_ms) = 0;
  // Handles what is there now, without waiting.
  virtual bool drain() = 0;
  // Records that did not decode (ABI mismatch).
  virtual std::uint64_t malformed() const = 0;
  // Events skipped because the handler threw, and the first one's message
  // (RecordDispatcher).
  virtual std::uint64_t unhandled() const = 0;
  virtual const std::string& first_unhandled_reason() const = 0;
};

// The hooks of each kind of program, ids unique across all of them.
struct ProbeHooks {
  const std::vector<Hook>& tracepoints;
  const std::vector<Hook>* kprobes = nullptr;   // null without a kprobe backend
  const std::vector<Hook>* programs = nullptr;  // tc/XDP programs; null unless asked for
};

// The maps holding the BPF side's renderings of an event's skb and shared info.
enum class BtfTextMap { kSkb, kSharedInfo };

class TraceProbes {
 public:
  virtual ~TraceProbes() = default;  // detaches what is still attached

  virtual const std::string& backend_name() const = 0;
  virtual const std::string& backend_reason() const = 0;
  // kprobe backends: how the function list was narrowed ("" otherwise).
  virtual const std::string& plan_summary() const = 0;
  // What stack frames and drop locations are named with.
  virtual const Ksyms& ksyms() const = 0;
  virtual ProbeHooks hooks() const = 0;

  // Tracepoints first, then kprobes, then tc/XDP programs, reporting
  // (done, total) as it goes; stops early when `cancelled` says so.
  virtual AttachReport attach(const std::function<bool()>& cancelled,
                              const std::function<void(std::size_t, std::size_t)>& progress) = 0;
  // Idempotent.
  virtual void detach() noexcept = 0;

  // Events written into the ring from now on go to `on_event`.
  virtual std::unique_ptr<EventSource> read_events(RingReader::Handler on_event) = 0;
  // The per-CPU counters (enum pwru_counter), summed.
  virtual CounterTotals counters() const = 0;
  // The return addresses of one stack id, innermost first; empty when gone.
  virtual std::vector<std::uint64_t> stack(std::int64_t stack_id) const = 0;
  // Takes the text stored under `id` out of its map; false when there is none.
  virtual bool take_text(BtfTextMap map, std::uint64_t id, pwru_btf_text& text) = 0;
};

// Picks the backend, checks the session's options against it and loads
// the programs, nothing attached; throws UsageError for options this
// kernel cannot honour, other errors when loading fails. `phases` outlives
// the probes (they time their attach in it).
using ProbeLoader =
    std::function<std::unique_ptr<TraceProbes>(const KernelBtf& btf, const TraceConfig& config, StartupPhases& phases)>;

}  // namespace pwru
