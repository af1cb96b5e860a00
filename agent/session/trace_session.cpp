#include "session/trace_session.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <unordered_set>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "enrich/event_namer.h"
#include "enrich/ksyms.h"
#include "events/ring_reader.h"
#include "output/pcap_file.h"
#include "output/sink.h"
#include "session/kernel_probes.h"
#include "session/skb_pseudonym.h"

namespace pwru {

namespace {
constexpr std::size_t kFlushBytes = 1 << 16;
constexpr int kPollMs = 100;

// pwru v1.0.9 prints a drop from its kprobe on the kernel's drop function:
// sk_skb_reason_drop since 6.11 (kfree_skb_reason became an inline wrapper of
// it), kfree_skb_reason from 5.17. The kfree_skb tracepoint fires inside that
// function with the same reason and is attached on every backend, so its drops
// take that name, and a kprobe on the function would print each drop a second
// time, without the reason: returns the ids of such kprobes.
std::unordered_set<std::uint16_t> name_drops_as_pwru(const KernelBtf& btf, const std::vector<Hook>& tracepoints,
                                                     const std::vector<Hook>* kprobes, EventNamer& namer) {
  std::string drop_function;
  for (const char* name : {"sk_skb_reason_drop", "kfree_skb_reason"})
    if (btf.function(name)) {
      drop_function = name;
      break;
    }
  if (drop_function.empty()) return {};  // no drop reasons before 5.17: "kfree_skb", as pwru
  auto drop_tracepoint =
      std::find_if(tracepoints.begin(), tracepoints.end(), [](const Hook& hook) { return hook.name == "kfree_skb"; });
  if (drop_tracepoint == tracepoints.end()) return {};
  namer.print_drops_as(drop_tracepoint->id, drop_function);
  std::unordered_set<std::uint16_t> repeated;
  if (kprobes)
    for (const Hook& hook : *kprobes)
      if (hook.name == drop_function) repeated.insert(hook.id);
  return repeated;
}

}  // namespace

namespace {

constexpr const char* kNoBtfText =
    "(no text: the kernel could not render or store it, or it was evicted before it was read; a busy trace "
    "needs a narrower filter with --output-skb)";

// The BPF side's rendering of an event's skb or shared info, taken out of
// its map so the map only holds texts not yet printed.
std::string take_btf_text(TraceProbes& probes, BtfTextMap map, std::uint64_t id) {
  static thread_local pwru_btf_text text;
  if (id == 0 || !probes.take_text(map, id, text)) return kNoBtfText;
  const std::size_t len = std::min<std::size_t>(text.len > 0 ? text.len : 0, PWRU_BTF_TEXT_MAX - 1);
  std::string out(text.text, strnlen(text.text, len));
  if (text.len >= PWRU_BTF_TEXT_MAX)
    out += "\n... (cut at " + std::to_string(PWRU_BTF_TEXT_MAX - 1) + " of " + std::to_string(text.len) + " bytes)";
  return out;
}

// What the programs capture and render for each event, from the output
// options: fixed when they load.
pwru_filter_cfg with_output_switches(pwru_filter_cfg filter, const TraceConfig& config) {
  const OutputOptions& out = config.output;
  filter.capture_bytes = config.pcap_file ? PWRU_CAPTURE_MAX - 1 : 0;
  filter.output_flags =
      static_cast<std::uint8_t>((out.skb ? PWRU_OUT_SKB : 0) | (out.shinfo ? PWRU_OUT_SHINFO : 0) |
                                (out.cb && out.meta ? PWRU_OUT_CB : 0) | (out.tunnel ? PWRU_OUT_TUNNEL : 0) |
                                (config.summary ? PWRU_OUT_IDENT : 0));
  filter.want_stack = out.stack || out.caller ? 1 : 0;
  return filter;
}

// A set of netns is looked up in a map; one netns stays the rodata compare.
pwru_filter_cfg with_netns_set(pwru_filter_cfg filter, const TraceConfig& config) {
  filter.netns_in_map = config.netns_set.empty() ? 0 : 1;
  if (filter.netns_in_map) filter.netns = 0;
  return filter;
}

}  // namespace

struct TraceSession::Impl {
  std::unique_ptr<TraceProbes> probes;
  std::unique_ptr<EventNamer> namer;
  ProgramNamer programs;
  // Kprobes on the function the drop tracepoint reports from: each of their
  // events would repeat, without the reason, a drop that event prints.
  std::unordered_set<std::uint16_t> repeated_drop_hooks;
  std::unique_ptr<EventFormatter> formatter;
  std::unique_ptr<EventSource> reader;
  std::unique_ptr<JourneyTracker> journeys;
  std::optional<SkbPseudonym> pseudonym;  // TraceConfig::hide_kernel_addresses
};

TraceSession::TraceSession(const KernelBtf& btf, TraceConfig config, LineSink& sink)
    : TraceSession(btf, std::move(config), sink, load_kernel_probes) {}

TraceSession::TraceSession(const KernelBtf& btf, TraceConfig config, LineSink& sink, const ProbeLoader& load)
    : config_(std::move(config)), sink_(sink), impl_(std::make_unique<Impl>()) {
  config_.filter = with_netns_set(with_output_switches(config_.filter, config_), config_);
  impl_->probes = load(btf, config_, startup_);
  follow_journeys();
  name_events(btf);
  open_output();
}

void TraceSession::follow_journeys() {
  if (!config_.summary) return;
  impl_->journeys = std::make_unique<JourneyTracker>(
      config_.drop_hints ? *config_.drop_hints : DropHints::builtin(),
      config_.summary_budget
          ? config_.summary_budget
          : std::make_shared<JourneyBudget>(kCliSummaryBudgetBytes, format_bytes(kCliSummaryBudgetBytes),
                                            "narrow the trace (a pcap filter, --filter-netns) "
                                            "or shorten it"));
}

void TraceSession::name_events(const KernelBtf& btf) {
  const ProbeHooks hooks = impl_->probes->hooks();
  // By id: a tc or XDP program that could not be traced leaves its id unused.
  std::vector<std::string> names;
  const auto name_hooks = [&names](const std::vector<Hook>& hooks) {
    for (const Hook& hook : hooks) {
      if (names.size() <= hook.id) names.resize(hook.id + 1u);
      names[hook.id] = hook.name;
    }
  };
  name_hooks(hooks.tracepoints);
  if (hooks.kprobes) name_hooks(*hooks.kprobes);
  if (hooks.programs) name_hooks(*hooks.programs);
  impl_->namer =
      std::make_unique<EventNamer>(std::move(names), btf.enum_values("skb_drop_reason"), &impl_->probes->ksyms());
  impl_->repeated_drop_hooks = name_drops_as_pwru(btf, hooks.tracepoints, hooks.kprobes, *impl_->namer);
}

void TraceSession::open_output() {
  impl_->formatter = std::make_unique<EventFormatter>(config_.output);
  if (config_.hide_kernel_addresses) impl_->pseudonym.emplace();
  impl_->reader = impl_->probes->read_events([this](const RingRecord& r) { return handle(r); });
}

TraceSession::~TraceSession() {
  if (impl_) detach();
}

void TraceSession::detach() noexcept { impl_->probes->detach(); }

const std::string& TraceSession::backend_name() const { return impl_->probes->backend_name(); }
const std::string& TraceSession::backend_reason() const { return impl_->probes->backend_reason(); }
const std::string& TraceSession::plan_summary() const { return impl_->probes->plan_summary(); }

std::size_t TraceSession::hook_count() const {
  const ProbeHooks hooks = impl_->probes->hooks();
  return hooks.tracepoints.size() + (hooks.kprobes ? hooks.kprobes->size() : 0) +
         (hooks.programs ? hooks.programs->size() : 0);
}

AttachReport TraceSession::attach(const std::function<bool()>& cancelled,
                                  const std::function<void(std::size_t, std::size_t)>& progress) {
  sample_wall_offset();
  AttachReport report = impl_->probes->attach(cancelled, progress);
  sample_wall_offset();
  sink_.write(impl_->formatter->header());
  sink_.flush();
  return report;
}

bool TraceSession::traced_netns(std::uint32_t netns) const {
  if (!config_.netns_set.empty())
    return std::find(config_.netns_set.begin(), config_.netns_set.end(), netns) != config_.netns_set.end();
  return !config_.filter.netns || netns == config_.filter.netns;
}

bool TraceSession::handle(const RingRecord& record) {
  if (impl_->repeated_drop_hooks.count(record.event.hook_id)) return true;
  pwru_event masked;
  if (impl_->pseudonym) {
    masked = record.event;
    masked.skb_addr = (*impl_->pseudonym)(masked.skb_addr);
    // A packet is often handled in softirq on whatever task was running:
    // a netns-scoped trace names only tasks of its netns, never another
    // tenant's process (it prints "-:0").
    const bool scoped = config_.filter.netns || !config_.netns_set.empty();
    if (scoped && !traced_netns(impl_->programs.task_netns(masked))) {
      std::memset(masked.comm, 0, sizeof(masked.comm));
      masked.comm[0] = '-';
      masked.pid = 0;
    }
  }
  const pwru_event& event = impl_->pseudonym ? masked : record.event;
  if (config_.limit && stats_.events_written >= config_.limit) {
    stats_.limit_reached = true;
    return false;
  }
  std::vector<std::string> stack;
  std::string caller;
  if (event.stack_id >= 0 && (config_.output.stack || config_.output.caller)) {
    stack = impl_->namer->stack_names(impl_->probes->stack(event.stack_id));
    // A frame no symbol covers prints as its address.
    if (impl_->pseudonym)
      for (std::string& frame : stack)
        if (frame.rfind("0x", 0) == 0) frame = "?";
    if (config_.output.caller) caller = EventNamer::caller(stack, impl_->namer->printed_hook(event));
  }
  std::string skb_text, shinfo_text;
  if (config_.output.skb) skb_text = take_btf_text(*impl_->probes, BtfTextMap::kSkb, event.dump_id);
  if (config_.output.shinfo) shinfo_text = take_btf_text(*impl_->probes, BtfTextMap::kSharedInfo, event.dump_id);
  // The trace API shows comm:pid only, never a host path from /proc.
  const std::string_view program = impl_->pseudonym ? std::string_view{} : impl_->programs.program(event);
  EventView view{event, impl_->namer->func(event), caller, &stack, skb_text, shinfo_text, program};
  if (!config_.pod_labels.empty()) {
    if (const auto label = config_.pod_labels.find(event.netns); label != config_.pod_labels.end()) {
      view.node = config_.node_name;
      view.pod = &label->second;
    }
  }
  if (config_.wall_clock) {
    view.has_wall = true;
    view.wall_ns = static_cast<std::uint64_t>(static_cast<std::int64_t>(event.ts_ns) + wall_offset_ns_);
  }
  impl_->formatter->format(view, buffer_);
  if (config_.pcap_file) config_.pcap_file->write(event, view.func, record.packet, record.packet_len);
  if (impl_->journeys) {
    const std::string reason = impl_->namer->reason_name(event);
    const std::string location = impl_->namer->location_function(event);
    impl_->journeys->add(JourneyEvent{event, impl_->namer->hook_name(event), view.func, reason, location});
  }
  ++stats_.events_written;
  if (buffer_.size() >= kFlushBytes) {
    sink_.write(buffer_);
    buffer_.clear();
  }
  if (config_.limit && stats_.events_written >= config_.limit) {
    stats_.limit_reached = true;
    return false;
  }
  return true;
}

void TraceSession::sample_wall_offset() {
  // Monotonic read on both sides of the realtime one: their midpoint is
  // when the realtime clock was read, to well under a microsecond.
  timespec mono_before{}, real{}, mono_after{};
  clock_gettime(CLOCK_MONOTONIC, &mono_before);
  clock_gettime(CLOCK_REALTIME, &real);
  clock_gettime(CLOCK_MONOTONIC, &mono_after);
  const auto ns = [](const timespec& t) { return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; };
  wall_offset_ns_ = ns(real) - (ns(mono_before) + ns(mono_after)) / 2;
}

void TraceSession::run(const std::function<bool()>& stop) {
  // NTP slews the realtime clock: the offset follows it each second.
  auto next_sample = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!stop()) {
    if (config_.wall_clock && std::chrono::steady_clock::now() >= next_sample) {
      sample_wall_offset();
      next_sample = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
    const bool more = impl_->reader->poll(kPollMs);
    sink_.write(buffer_);
    buffer_.clear();
    sink_.flush();
    if (config_.pcap_file) config_.pcap_file->flush();
    if (!more || sink_.closed()) break;
  }
}

std::uint64_t TraceSession::events_lost_so_far() const { return impl_->probes->counters()[PWRU_CNT_LOST]; }

TraceStats TraceSession::finish() {
  if (finished_) return stats_;
  detach();
  // Events the kernel wrote before detach are still in the ring: print them
  // (up to the limit) rather than drop what was already collected.
  return stop_output();
}

TraceStats TraceSession::stop_output() {
  if (finished_) return stats_;
  finished_ = true;
  impl_->reader->drain();
  sink_.write(buffer_);
  buffer_.clear();
  sink_.flush();
  const auto counters = impl_->probes->counters();
  stats_.events_lost = counters[PWRU_CNT_LOST];
  stats_.events_filtered = counters[PWRU_CNT_FILTERED];
  stats_.track_failures = counters[PWRU_CNT_TRACK_FULL];
  stats_.texts_lost = counters[PWRU_CNT_DUMP_LOST];
  stats_.events_malformed = impl_->reader->malformed();
  stats_.events_unhandled = impl_->reader->unhandled();
  stats_.first_unhandled_reason = impl_->reader->first_unhandled_reason();
  stats_.counters_unread = counters.failed_lookups;
  stats_.counters_errno = counters.first_errno;
  if (config_.pcap_file) {
    config_.pcap_file->flush();
    stats_.pcap_records = config_.pcap_file->records();
    stats_.pcap_truncated = config_.pcap_file->truncated();
  }
  return stats_;
}

const JourneyTracker* TraceSession::journeys() const { return impl_->journeys.get(); }

}  // namespace pwru
