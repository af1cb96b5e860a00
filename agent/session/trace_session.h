// One trace: discover hooks, load and attach, read events, print them,
// detach. `pwru` runs one; the agent will run one per trace request.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "journey/journey.h"
#include "output/event_formatter.h"
#include "probe/tracepoint_backend.h"
#include "pwru_abi.h"
#include "session/startup_phases.h"
#include "session/trace_probes.h"

namespace pwru {

class LineSink;
class KernelBtf;
struct RingRecord;
class PcapFile;

// pwru --summary's own memory budget: the CLI runs alone, so generous.
constexpr std::uint64_t kCliSummaryBudgetBytes = 512ull << 20;

struct TraceConfig {
  pwru_filter_cfg filter{};
  // The agent's traces of several netns: the programs keep skbs of these
  // (a map lookup each); filter.netns is then 0, and the session sets
  // netns_in_map and track_skb_in_netns. Empty: filter.netns alone decides.
  std::vector<std::uint32_t> netns_set;
  OutputOptions output;
  std::uint64_t limit = 0;  // stop after this many events; 0: no limit
  std::uint32_t ring_bytes = 8u << 20;
  std::string backend = "auto";            // auto | kprobe-multi | kprobe | tracepoint
  std::string filter_func;                 // regex over kprobe function names
  std::vector<std::string> kmods;          // modules whose skb functions are probed too
  bool all_kmods = false;                  // every module with BTF
  unsigned kprobe_batch = 10;              // threads that attach and detach kprobes
  std::vector<std::string> non_skb_funcs;  // probed by name; their skb is the one their stack carries
  // --filter-track-bpf-helpers: what the BPF programs loaded before this
  // session call is probed as non_skb_funcs are (kprobe backends only).
  bool track_bpf_helpers = false;
  std::shared_ptr<const CompiledPcap> pcap;  // null: no pcap filter
  // --summary: follow every reported skb and decide its fate at the end.
  // Its events also carry the packet's identity (PWRU_OUT_IDENT), so
  // journeys can be stitched across nodes (journey/stitch.h).
  bool summary = false;
  std::shared_ptr<const DropHints> drop_hints;  // null: the built-in catalogue
  // What the summary may hold in memory; the agent's traces share one.
  // Null: a budget of this session's own (kCliSummaryBudgetBytes).
  std::shared_ptr<JourneyBudget> summary_budget;
  // --output-pcap: every reported event's packet is written here too.
  std::shared_ptr<PcapFile> pcap_file;
  // --filter-trace-tc / --filter-trace-xdp: the node's tc and XDP programs
  // as hooks too (fentry on each).
  bool trace_tc = false;
  bool trace_xdp = false;
  // The trace API: skb addresses become per-trace pseudonyms and stack
  // frames without a symbol print as "?" (skb_pseudonym.h).
  bool hide_kernel_addresses = false;
  // A pod-set trace: each event in one of these netns is labelled with the
  // node and its pod (EventView::node, ::pod).
  std::string node_name;
  std::map<std::uint32_t, PodLabel> pod_labels;
  // A fan-out's merge mode: each event line starts with its wall-clock time
  // (ts_ns plus CLOCK_REALTIME - CLOCK_MONOTONIC, sampled each second).
  bool wall_clock = false;
};

struct TraceStats {
  std::uint64_t events_written = 0;  // formatted and handed to the sink
  std::uint64_t events_lost = 0;     // did not fit into the ring buffer
  std::uint64_t events_filtered = 0;
  std::uint64_t events_malformed = 0;
  // Events skipped because printing them threw (RecordDispatcher), and the
  // first one's message.
  std::uint64_t events_unhandled = 0;
  std::string first_unhandled_reason;
  // The kernel's counters (lost, filtered, ...) whose last read failed:
  // those read as 0. counters_errno: the first failure's.
  std::uint32_t counters_unread = 0;
  int counters_errno = 0;
  std::uint64_t track_failures = 0;  // skbs --filter-track-skb-by-stackid could not record
  std::uint64_t texts_lost = 0;      // --output-skb/-shared-info texts the kernel could not store
  std::uint64_t pcap_records = 0;    // --output-pcap: packets written
  std::uint64_t pcap_truncated = 0;  // of which holding only the packet's first bytes
  bool limit_reached = false;
};

class TraceSession {
 public:
  // Loads the programs (nothing is attached yet). Throws on failure.
  TraceSession(const KernelBtf& btf, TraceConfig config, LineSink& sink);
  // The same over the probes `load` gives; the one above loads the
  // kernel's (load_kernel_probes, session/kernel_probes.h).
  TraceSession(const KernelBtf& btf, TraceConfig config, LineSink& sink, const ProbeLoader& load);
  ~TraceSession();

  const std::string& backend_name() const;
  const std::string& backend_reason() const;
  std::size_t hook_count() const;
  // kprobe backends: how the function list was narrowed ("" otherwise).
  const std::string& plan_summary() const;
  // Time spent so far per start-up phase (construction, then attach()).
  const StartupPhases& startup_phases() const { return startup_; }

  // Tracepoints first, then kprobes, reporting (done, total) as it goes.
  AttachReport attach(const std::function<bool()>& cancelled,
                      const std::function<void(std::size_t, std::size_t)>& progress = nullptr);
  // Reads and prints events until `stop()` says so (asked about every
  // poll round, 100 ms), the limit is hit or the sink closes.
  void run(const std::function<bool()>& stop);
  // Events the kernel could not put into the ring so far (the kernel's
  // running count; finish() reports the last one in TraceStats).
  std::uint64_t events_lost_so_far() const;
  // Detaches every link, prints what is still in the ring, flushes.
  TraceStats finish();
  // Prints what is in the ring now, flushes and counts, leaving the links
  // attached: what they write afterwards is never read. For a caller that
  // must answer before a slow detach (about 30 s for 1.5k plain kprobes,
  // the kernel's grace period per link); the destructor detaches.
  TraceStats stop_output();
  void detach() noexcept;
  // With TraceConfig::summary, after finish(): the skbs followed, their
  // fates decided on demand (JourneyTracker::for_each); null without.
  const JourneyTracker* journeys() const;
  // CLOCK_REALTIME - CLOCK_MONOTONIC as last sampled (at attach, then each
  // second of run()): an event's ts_ns plus this is its wall-clock time.
  std::int64_t wall_offset_ns() const { return wall_offset_ns_; }
  // Samples the offset now.
  void sample_wall_offset();

 private:
  // The construction's steps after loading, in order.
  void follow_journeys();
  void name_events(const KernelBtf& btf);
  void open_output();
  bool handle(const RingRecord& record);
  // Whether events of a task in `netns` may name it: only tasks of the
  // trace's own netns when it has some.
  bool traced_netns(std::uint32_t netns) const;

  TraceConfig config_;
  LineSink& sink_;
  StartupPhases startup_;  // before impl_: the probes time their attach in it
  struct Impl;
  std::unique_ptr<Impl> impl_;
  TraceStats stats_;
  std::string buffer_;
  bool finished_ = false;
  std::int64_t wall_offset_ns_ = 0;
};

}  // namespace pwru
