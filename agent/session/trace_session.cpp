#include "session/trace_session.h"

#include <bpf/bpf.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "common/function_name_filter.h"
#include "enrich/event_namer.h"
#include "enrich/ksyms.h"
#include "events/ring_reader.h"
#include "output/pcap_file.h"
#include "output/sink.h"
#include "probe/backend_select.h"
#include "probe/bpf_helper_scan.h"
#include "probe/bpfprog_backend.h"
#include "probe/kprobe_backend.h"
#include "probe/kprobe_plan.h"
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
  auto drop_tracepoint = std::find_if(tracepoints.begin(), tracepoints.end(),
                                      [](const Hook& hook) { return hook.name == "kfree_skb"; });
  if (drop_tracepoint == tracepoints.end()) return {};
  namer.print_drops_as(drop_tracepoint->id, drop_function);
  std::unordered_set<std::uint16_t> repeated;
  if (kprobes)
    for (const Hook& hook : *kprobes)
      if (hook.name == drop_function) repeated.insert(hook.id);
  return repeated;
}

}  // namespace


std::string describe(const KprobePlan& plan) {
  std::size_t without_skb = 0;
  for (const SkbFunction& fn : plan.functions) without_skb += fn.skb_arg < 0 ? 1 : 0;
  return std::to_string(plan.functions.size()) + " functions (" +
         (without_skb ? std::to_string(without_skb) + " without an skb, tracked by stack; " : std::string()) +
         std::to_string(plan.not_in_kallsyms) +
         " not in kallsyms, " +
         (plan.traceable_list_read ? std::to_string(plan.not_traceable) + " not traceable, "
                                   : std::string("available_filter_functions unreadable, ")) +
         std::to_string(plan.filtered_out) + " left out by --filter-func)";
}

namespace {

constexpr const char* kNoBtfText =
    "(no text: the kernel could not render or store it, or it was evicted before it was read; a busy trace "
    "needs a narrower filter with --output-skb)";

// The BPF side's rendering of an event's skb or shared info, taken out of
// its map so the map only holds texts not yet printed.
std::string take_btf_text(int map_fd, std::uint64_t id) {
  static thread_local pwru_btf_text text;
  if (id == 0) return kNoBtfText;
  if (bpf_map_lookup_and_delete_elem(map_fd, &id, &text) != 0 &&
      (bpf_map_lookup_elem(map_fd, &id, &text) != 0 || bpf_map_delete_elem(map_fd, &id) != 0))
    return kNoBtfText;
  const std::size_t len = std::min<std::size_t>(text.len > 0 ? text.len : 0, PWRU_BTF_TEXT_MAX - 1);
  std::string out(text.text, strnlen(text.text, len));
  if (text.len >= PWRU_BTF_TEXT_MAX)
    out += "\n... (cut at " + std::to_string(PWRU_BTF_TEXT_MAX - 1) + " of " + std::to_string(text.len) + " bytes)";
  return out;
}

}  // namespace

struct TraceSession::Impl {
  std::unique_ptr<TracepointBackend> backend;
  std::unique_ptr<KprobeBackend> kprobes;
  std::unique_ptr<BpfProgBackend> bpfprogs;
  Ksyms ksyms;
  std::unique_ptr<EventNamer> namer;
  ProgramNamer programs;
  // Kprobes on the function the drop tracepoint reports from: each of their
  // events would repeat, without the reason, a drop that event prints.
  std::unordered_set<std::uint16_t> repeated_drop_hooks;
  std::unique_ptr<EventFormatter> formatter;
  std::unique_ptr<RingReader> reader;
  std::unique_ptr<JourneyTracker> journeys;
  std::optional<SkbPseudonym> pseudonym;  // TraceConfig::hide_kernel_addresses
  BpfHelperScan bpf_helpers;              // TraceConfig::track_bpf_helpers
};

// vmlinux's skb functions plus those of the modules asked for, narrowed.
KprobePlan TraceSession::plan_for(const KernelBtf& btf, const Ksyms& ksyms) {
  std::vector<SkbFunction> candidates = startup_.time("btf functions", [&] { return btf.skb_functions(); });
  std::vector<KernelBtf> module_btfs;
  const std::vector<std::string> modules = config_.all_kmods ? KernelBtf::modules_with_btf() : config_.kmods;
  for (const std::string& module : modules)
    startup_.time("module btf", [&] {
      module_btfs.push_back(KernelBtf::load_module(module, btf));
      const std::vector<SkbFunction> more = module_btfs.back().skb_functions();
      candidates.insert(candidates.end(), more.begin(), more.end());
    });
  std::vector<SkbFunction> named;
  for (const std::string& name : config_.non_skb_funcs) {
    std::optional<SkbFunction> fn = btf.function(name);
    for (std::size_t i = 0; !fn && i < module_btfs.size(); ++i) fn = module_btfs[i].function(name);
    if (!fn)
      throw UsageError("--filter-non-skb-funcs: the kernel's BTF has no function named '" + name +
                       "' (a module's function needs --kmods MODULE)");
    named.push_back(*fn);
  }
  // Found in kallsyms, not BTF: pwru probes them by name, BTF or not.
  for (const std::string& name : impl_->bpf_helpers.functions) named.push_back(SkbFunction{name, -1});
  const auto traceable = startup_.time("available_filter_functions", [] { return read_traceable_functions(); });
  return startup_.time("plan", [&] { return plan_kprobes(candidates, ksyms, traceable, config_.filter_func, named); });
}

TraceSession::TraceSession(const KernelBtf& btf, TraceConfig config, LineSink& sink)
    : config_(std::move(config)), sink_(sink), impl_(std::make_unique<Impl>()) {
  const BackendChoice choice = startup_.time("backend probe", [&] { return choose_backend(config_.backend); });
  backend_name_ = choice.name;
  backend_reason_ = choice.reason;
  if (!choice.kprobe && (!config_.filter_func.empty() || !config_.kmods.empty())) {
    // pwru's rules hold without kprobes too: a module without BTF, or a
    // pattern that names none of the skb functions, is a mistake to fix,
    // not to ignore.
    std::vector<SkbFunction> candidates = btf.skb_functions();
    for (const std::string& module : config_.kmods) {
      const std::vector<SkbFunction> more = KernelBtf::load_module(module, btf).skb_functions();
      candidates.insert(candidates.end(), more.begin(), more.end());
    }
    if (!config_.filter_func.empty() && count_matching(candidates, FunctionNameFilter(config_.filter_func)) == 0)
      throw UsageError("Cannot find a matching kernel function: --filter-func '" + config_.filter_func +
                       "' matches no kernel function among the " + std::to_string(candidates.size()) +
                       " that take an skb; the whole name must match (pwru's rule): '^ip_.*', not '^ip_'");
    const bool both = !config_.filter_func.empty() && !config_.kmods.empty();
    spdlog::warn("{} {} the kernel functions that get kprobes, and this kernel has no kprobe backend ({}): every "
                 "skb tracepoint is traced whatever the function names",
                 both ? "--filter-func and --kmods" : config_.kmods.empty() ? "--filter-func" : "--kmods",
                 both ? "choose" : "chooses", choice.reason);
  }
  if (config_.track_bpf_helpers) {
    if (!choice.kprobe)
      throw SystemError("--filter-track-bpf-helpers probes BPF helpers with kprobes, and this kernel accepts none (" +
                            choice.reason + "); it needs a kernel built with CONFIG_KPROBES, or run without it",
                        ENOTSUP);
    // Read before this session loads a program: the helpers pwru's own
    // programs call would otherwise report pwru's own work on each skb.
    impl_->bpf_helpers = scan_loaded_bpf_helpers();
    if (impl_->bpf_helpers.functions.empty())
      spdlog::warn("--filter-track-bpf-helpers: none of the {} loaded BPF programs calls a kernel function; "
                   "load the programs to watch before starting pwru",
                   impl_->bpf_helpers.programs);
  }
  if (config_.filter.track_skb_by_stack && !choice.kprobe)
    throw UsageError("--filter-track-skb-by-stackid and --filter-non-skb-funcs need a kprobe backend, and this "
                     "kernel has none (" + choice.reason + "); run without them");
  const bool want_stack = config_.output.stack || config_.output.caller;
  config_.filter.capture_bytes = config_.pcap_file ? PWRU_CAPTURE_MAX - 1 : 0;
  const OutputOptions& out = config_.output;
  config_.filter.output_flags = static_cast<std::uint8_t>((out.skb ? PWRU_OUT_SKB : 0) | (out.shinfo ? PWRU_OUT_SHINFO : 0) |
                                                          (out.cb && out.meta ? PWRU_OUT_CB : 0) |
                                                          (out.tunnel ? PWRU_OUT_TUNNEL : 0));
  config_.filter.want_stack = want_stack ? 1 : 0;
  // The skb tracepoints stay attached on every backend: kfree_skb carries
  // the drop reason, which no kprobe argument does on every kernel.
  const std::vector<SkbTracepoint> tracepoints = startup_.time("btf tracepoints", [&] { return btf.skb_tracepoints(); });
  impl_->backend = startup_.time("tracepoint load", [&] {
    return std::make_unique<TracepointBackend>(tracepoints, config_.filter, config_.ring_bytes, config_.pcap);
  });
  // --summary names the function that dropped or freed an skb.
  if (want_stack || choice.kprobe || config_.summary)
    impl_->ksyms = startup_.time("kallsyms", [] { return Ksyms::load(); });
  if (config_.summary)
    impl_->journeys = std::make_unique<JourneyTracker>(
        config_.drop_hints ? *config_.drop_hints : DropHints::builtin(),
        config_.summary_budget ? config_.summary_budget
                               : std::make_shared<JourneyBudget>(kCliSummaryBudgetBytes,
                                                                 format_bytes(kCliSummaryBudgetBytes),
                                                                 "narrow the trace (a pcap filter, --filter-netns) "
                                                                 "or shorten it"));
  if (choice.kprobe) {
    const KprobePlan plan = plan_for(btf, impl_->ksyms);
    plan_summary_ = describe(plan);
    if (config_.track_bpf_helpers)
      plan_summary_ += "; --filter-track-bpf-helpers: " + std::to_string(impl_->bpf_helpers.functions.size()) +
                       " kernel functions called by " + std::to_string(impl_->bpf_helpers.programs) +
                       " loaded BPF programs";
    const SharedMaps maps = impl_->backend->shared_maps();
    impl_->kprobes = startup_.time("kprobe load", [&] {
      return std::make_unique<KprobeBackend>(*choice.kprobe, plan.functions,
                                             static_cast<std::uint16_t>(impl_->backend->hooks().size()),
                                             config_.filter, config_.pcap, maps);
    });
  }
  if (config_.trace_tc || config_.trace_xdp)
    impl_->bpfprogs = std::make_unique<BpfProgBackend>(
        config_.trace_tc, config_.trace_xdp,
        static_cast<std::uint16_t>(impl_->backend->hooks().size() + (impl_->kprobes ? impl_->kprobes->hooks().size() : 0)),
        config_.filter, config_.pcap, impl_->backend->shared_maps());
  // By id: a tc or XDP program that could not be traced leaves its id unused.
  std::vector<std::string> names;
  const auto name_hooks = [&names](const std::vector<Hook>& hooks) {
    for (const Hook& hook : hooks) {
      if (names.size() <= hook.id) names.resize(hook.id + 1u);
      names[hook.id] = hook.name;
    }
  };
  name_hooks(impl_->backend->hooks());
  if (impl_->kprobes) name_hooks(impl_->kprobes->hooks());
  if (impl_->bpfprogs) name_hooks(impl_->bpfprogs->hooks());
  impl_->namer = std::make_unique<EventNamer>(std::move(names), btf.enum_values("skb_drop_reason"),
                                              &impl_->ksyms);
  impl_->repeated_drop_hooks = name_drops_as_pwru(btf, impl_->backend->hooks(),
                                                  impl_->kprobes ? &impl_->kprobes->hooks() : nullptr, *impl_->namer);
  impl_->formatter = std::make_unique<EventFormatter>(config_.output);
  if (config_.hide_kernel_addresses) impl_->pseudonym.emplace();
  impl_->reader = std::make_unique<RingReader>(
      impl_->backend->events_fd(), [this](const RingRecord& r) { return handle(r); });
}

TraceSession::~TraceSession() {
  if (impl_) detach();
}

void TraceSession::detach() noexcept {
  if (impl_->bpfprogs) impl_->bpfprogs->detach();
  if (impl_->kprobes) impl_->kprobes->detach(config_.kprobe_batch);
  if (impl_->backend) impl_->backend->detach();
}

std::size_t TraceSession::hook_count() const {
  return impl_->backend->hooks().size() + (impl_->kprobes ? impl_->kprobes->hooks().size() : 0) +
         (impl_->bpfprogs ? impl_->bpfprogs->hooks().size() : 0);
}

AttachReport TraceSession::attach(const std::function<bool()>& cancelled,
                                  const std::function<void(std::size_t, std::size_t)>& progress) {
  AttachReport report = startup_.time("attach tracepoints", [&] { return impl_->backend->attach(cancelled); });
  if (impl_->kprobes) {
    const std::size_t base = report.attached + report.skipped.size();
    const std::size_t total = hook_count();
    AttachReport kp = startup_.time("attach kprobes", [&] {
      return impl_->kprobes->attach(cancelled, [&](std::size_t done, std::size_t) {
        if (progress) progress(base + done, total);
      }, config_.kprobe_batch);
    });
    report.attached += kp.attached;
    report.skipped.insert(report.skipped.end(), kp.skipped.begin(), kp.skipped.end());
  }
  if (impl_->bpfprogs && !(cancelled && cancelled())) {
    AttachReport bp = impl_->bpfprogs->attach();
    report.attached += bp.attached;
    report.skipped.insert(report.skipped.end(), bp.skipped.begin(), bp.skipped.end());
  }
  sink_.write(impl_->formatter->header());
  sink_.flush();
  return report;
}

bool TraceSession::handle(const RingRecord& record) {
  if (impl_->repeated_drop_hooks.count(record.event.hook_id)) return true;
  pwru_event masked;
  if (impl_->pseudonym) {
    masked = record.event;
    masked.skb_addr = (*impl_->pseudonym)(masked.skb_addr);
    // A packet is often handled in softirq on whatever task was running:
    // a netns-scoped trace names only tasks of that netns, never another
    // tenant's process (it prints "-:0").
    if (config_.filter.netns && impl_->programs.task_netns(masked) != config_.filter.netns) {
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
    stack = impl_->namer->stack_names(read_stack(impl_->backend->stacks_fd(), event.stack_id));
    // A frame no symbol covers prints as its address.
    if (impl_->pseudonym)
      for (std::string& frame : stack)
        if (frame.rfind("0x", 0) == 0) frame = "?";
    if (config_.output.caller) caller = EventNamer::caller(stack, impl_->namer->printed_hook(event));
  }
  std::string skb_text, shinfo_text;
  if (config_.output.skb) skb_text = take_btf_text(impl_->backend->print_skb_fd(), event.dump_id);
  if (config_.output.shinfo) shinfo_text = take_btf_text(impl_->backend->print_shinfo_fd(), event.dump_id);
  // The trace API shows comm:pid only, never a host path from /proc.
  const std::string_view program = impl_->pseudonym ? std::string_view{} : impl_->programs.program(event);
  EventView view{event, impl_->namer->func(event), caller, &stack, skb_text, shinfo_text, program};
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

void TraceSession::run(const std::function<bool()>& stop) {
  while (!stop()) {
    const bool more = impl_->reader->poll(kPollMs);
    sink_.write(buffer_);
    buffer_.clear();
    sink_.flush();
    if (config_.pcap_file) config_.pcap_file->flush();
    if (!more || sink_.closed()) break;
  }
}

std::uint64_t TraceSession::events_lost_so_far() const {
  return read_counters(impl_->backend->counters_fd())[PWRU_CNT_LOST];
}

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
  const auto counters = read_counters(impl_->backend->counters_fd());
  stats_.events_lost = counters[PWRU_CNT_LOST];
  stats_.events_filtered = counters[PWRU_CNT_FILTERED];
  stats_.track_failures = counters[PWRU_CNT_TRACK_FULL];
  stats_.texts_lost = counters[PWRU_CNT_DUMP_LOST];
  stats_.events_malformed = impl_->reader->malformed();
  if (config_.pcap_file) {
    config_.pcap_file->flush();
    stats_.pcap_records = config_.pcap_file->records();
    stats_.pcap_truncated = config_.pcap_file->truncated();
  }
  return stats_;
}

const JourneyTracker* TraceSession::journeys() const { return impl_->journeys.get(); }

}  // namespace pwru
