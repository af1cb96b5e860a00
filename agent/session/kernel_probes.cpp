#include "session/kernel_probes.h"

#include <bpf/bpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "common/function_name_filter.h"
#include "probe/backend_select.h"
#include "probe/bpf_helper_scan.h"
#include "probe/bpfprog_backend.h"
#include "probe/kprobe_backend.h"
#include "probe/kprobe_plan.h"
#include "session/startup_phases.h"
#include "session/trace_session.h"

namespace pwru {

namespace {

std::string describe(const KprobePlan& plan) {
  std::size_t without_skb = 0;
  for (const SkbFunction& fn : plan.functions) without_skb += fn.skb_arg < 0 ? 1 : 0;
  return std::to_string(plan.functions.size()) + " functions (" +
         (without_skb ? std::to_string(without_skb) + " without an skb, tracked by stack; " : std::string()) +
         std::to_string(plan.not_in_kallsyms) + " not in kallsyms, " +
         (plan.traceable_list_read ? std::to_string(plan.not_traceable) + " not traceable, "
                                   : std::string("available_filter_functions unreadable, ")) +
         std::to_string(plan.filtered_out) + " left out by --filter-func)";
}

// Options that only kprobes honour, on a kernel that may have none: a
// mistake to fix, a warning, or fine.
void check_options_against(const BackendChoice& choice, const KernelBtf& btf, const TraceConfig& config) {
  if (!choice.kprobe && (!config.filter_func.empty() || !config.kmods.empty())) {
    // pwru's rules hold without kprobes too: a module without BTF, or a
    // pattern that names none of the skb functions, is a mistake to fix,
    // not to ignore.
    std::vector<SkbFunction> candidates = btf.skb_functions();
    for (const std::string& module : config.kmods) {
      const std::vector<SkbFunction> more = KernelBtf::load_module(module, btf).skb_functions();
      candidates.insert(candidates.end(), more.begin(), more.end());
    }
    if (!config.filter_func.empty() && count_matching(candidates, FunctionNameFilter(config.filter_func)) == 0)
      throw UsageError("Cannot find a matching kernel function: --filter-func '" + config.filter_func +
                       "' matches no kernel function among the " + std::to_string(candidates.size()) +
                       " that take an skb; the whole name must match (pwru's rule): '^ip_.*', not '^ip_'");
    const bool both = !config.filter_func.empty() && !config.kmods.empty();
    spdlog::warn(
        "{} {} the kernel functions that get kprobes, and this kernel has no kprobe backend ({}): every "
        "skb tracepoint is traced whatever the function names",
        both                   ? "--filter-func and --kmods"
        : config.kmods.empty() ? "--filter-func"
                               : "--kmods",
        both ? "choose" : "chooses", choice.reason);
  }
  if (config.track_bpf_helpers && !choice.kprobe)
    throw SystemError("--filter-track-bpf-helpers probes BPF helpers with kprobes, and this kernel accepts none (" +
                          choice.reason + "); it needs a kernel built with CONFIG_KPROBES, or run without it",
                      ENOTSUP);
  if (config.filter.track_skb_by_stack && !choice.kprobe)
    throw UsageError(
        "--filter-track-skb-by-stackid and --filter-non-skb-funcs need a kprobe backend, and this "
        "kernel has none (" +
        choice.reason + "); run without them");
}

class RingEvents final : public EventSource {
 public:
  RingEvents(int ring_fd, RingReader::Handler on_event) : reader_(ring_fd, std::move(on_event)) {}
  bool poll(int timeout_ms) override { return reader_.poll(timeout_ms); }
  bool drain() override { return reader_.drain(); }
  std::uint64_t malformed() const override { return reader_.malformed(); }
  std::uint64_t unhandled() const override { return reader_.unhandled(); }
  const std::string& first_unhandled_reason() const override { return reader_.first_unhandled_reason(); }

 private:
  RingReader reader_;
};

class KernelProbes final : public TraceProbes {
 public:
  KernelProbes(const KernelBtf& btf, const TraceConfig& config, BackendChoice choice, StartupPhases& phases)
      : choice_(std::move(choice)), kprobe_batch_(config.kprobe_batch), phases_(phases) {
    if (config.track_bpf_helpers) scan_bpf_helpers();
    load_tracepoints(btf, config);
    // --summary names the function that dropped or freed an skb.
    if (config.output.stack || config.output.caller || choice_.kprobe || config.summary)
      ksyms_ = phases_.time("kallsyms", [] { return Ksyms::load(); });
    if (choice_.kprobe) load_kprobes(btf, config);
    if (config.trace_tc || config.trace_xdp) load_tc_xdp_programs(config);
  }
  ~KernelProbes() override { detach(); }

  const std::string& backend_name() const override { return choice_.name; }
  const std::string& backend_reason() const override { return choice_.reason; }
  const std::string& plan_summary() const override { return plan_summary_; }
  const Ksyms& ksyms() const override { return ksyms_; }
  ProbeHooks hooks() const override {
    return {tracepoints_->hooks(), kprobes_ ? &kprobes_->hooks() : nullptr, bpfprogs_ ? &bpfprogs_->hooks() : nullptr};
  }

  AttachReport attach(const std::function<bool()>& cancelled,
                      const std::function<void(std::size_t, std::size_t)>& progress) override {
    AttachReport report = phases_.time("attach tracepoints", [&] { return tracepoints_->attach(cancelled); });
    if (kprobes_) {
      const std::size_t base = report.attached + report.skipped.size();
      const std::size_t total = hook_count();
      AttachReport kp = phases_.time("attach kprobes", [&] {
        return kprobes_->attach(
            cancelled,
            [&](std::size_t done, std::size_t) {
              if (progress) progress(base + done, total);
            },
            kprobe_batch_);
      });
      report.attached += kp.attached;
      report.skipped.insert(report.skipped.end(), kp.skipped.begin(), kp.skipped.end());
    }
    if (bpfprogs_ && !(cancelled && cancelled())) {
      AttachReport bp = bpfprogs_->attach();
      report.attached += bp.attached;
      report.skipped.insert(report.skipped.end(), bp.skipped.begin(), bp.skipped.end());
    }
    return report;
  }

  void detach() noexcept override {
    if (bpfprogs_) bpfprogs_->detach();
    if (kprobes_) kprobes_->detach(kprobe_batch_);
    if (tracepoints_) tracepoints_->detach();
  }

  std::unique_ptr<EventSource> read_events(RingReader::Handler on_event) override {
    return std::make_unique<RingEvents>(tracepoints_->events_fd(), std::move(on_event));
  }
  CounterTotals counters() const override { return read_counters(tracepoints_->counters_fd()); }
  std::vector<std::uint64_t> stack(std::int64_t stack_id) const override {
    return read_stack(tracepoints_->stacks_fd(), stack_id);
  }
  bool take_text(BtfTextMap map, std::uint64_t id, pwru_btf_text& text) override {
    const int fd = map == BtfTextMap::kSkb ? tracepoints_->print_skb_fd() : tracepoints_->print_shinfo_fd();
    return bpf_map_lookup_and_delete_elem(fd, &id, &text) == 0 ||
           (bpf_map_lookup_elem(fd, &id, &text) == 0 && bpf_map_delete_elem(fd, &id) == 0);
  }

 private:
  std::size_t hook_count() const {
    return tracepoints_->hooks().size() + (kprobes_ ? kprobes_->hooks().size() : 0) +
           (bpfprogs_ ? bpfprogs_->hooks().size() : 0);
  }

  // Read before this session loads a program: the helpers pwru's own
  // programs call would otherwise report pwru's own work on each skb.
  void scan_bpf_helpers() {
    bpf_helpers_ = scan_loaded_bpf_helpers();
    if (bpf_helpers_.functions.empty())
      spdlog::warn(
          "--filter-track-bpf-helpers: none of the {} loaded BPF programs calls a kernel function; "
          "load the programs to watch before starting pwru",
          bpf_helpers_.programs);
  }

  // The drop tracepoint stays attached on every backend: kfree_skb carries
  // the drop reason, which no kprobe argument does on every kernel.
  void load_tracepoints(const KernelBtf& btf, const TraceConfig& config) {
    std::vector<SkbTracepoint> tracepoints = phases_.time("btf tracepoints", [&] { return btf.skb_tracepoints(); });
    if (choice_.kprobe) tracepoints = tracepoints_beside_kprobes(tracepoints);
    // The netns set goes into the tracepoint object's map, before anything
    // attaches; the kprobe and tc/XDP objects read the same map (SharedMaps).
    tracepoints_ = phases_.time("tracepoint load", [&] {
      return std::make_unique<TracepointBackend>(tracepoints, config.filter, config.ring_bytes, config.pcap,
                                                 std::nullopt, config.netns_set);
    });
  }

  void load_kprobes(const KernelBtf& btf, const TraceConfig& config) {
    const KprobePlan plan = plan_for(btf, config);
    plan_summary_ = describe(plan);
    if (config.track_bpf_helpers)
      plan_summary_ += "; --filter-track-bpf-helpers: " + std::to_string(bpf_helpers_.functions.size()) +
                       " kernel functions called by " + std::to_string(bpf_helpers_.programs) + " loaded BPF programs";
    const SharedMaps maps = tracepoints_->shared_maps();
    kprobes_ = phases_.time("kprobe load", [&] {
      return std::make_unique<KprobeBackend>(*choice_.kprobe, plan.functions,
                                             static_cast<std::uint16_t>(tracepoints_->hooks().size()), config.filter,
                                             config.pcap, maps);
    });
  }

  // vmlinux's skb functions plus those of the modules asked for, narrowed.
  KprobePlan plan_for(const KernelBtf& btf, const TraceConfig& config) {
    std::vector<SkbFunction> candidates = phases_.time("btf functions", [&] { return btf.skb_functions(); });
    std::vector<KernelBtf> module_btfs;
    const std::vector<std::string> modules = config.all_kmods ? KernelBtf::modules_with_btf() : config.kmods;
    for (const std::string& module : modules)
      phases_.time("module btf", [&] {
        module_btfs.push_back(KernelBtf::load_module(module, btf));
        const std::vector<SkbFunction> more = module_btfs.back().skb_functions();
        candidates.insert(candidates.end(), more.begin(), more.end());
      });
    std::vector<SkbFunction> named;
    for (const std::string& name : config.non_skb_funcs) {
      std::optional<SkbFunction> fn = btf.function(name);
      for (std::size_t i = 0; !fn && i < module_btfs.size(); ++i) fn = module_btfs[i].function(name);
      if (!fn)
        throw UsageError("--filter-non-skb-funcs: the kernel's BTF has no function named '" + name +
                         "' (a module's function needs --kmods MODULE)");
      named.push_back(*fn);
    }
    // Found in kallsyms, not BTF: pwru probes them by name, BTF or not.
    for (const std::string& name : bpf_helpers_.functions) named.push_back(SkbFunction{name, -1});
    const auto traceable = phases_.time("available_filter_functions", [] { return read_traceable_functions(); });
    return phases_.time("plan", [&] { return plan_kprobes(candidates, ksyms_, traceable, config.filter_func, named); });
  }

  void load_tc_xdp_programs(const TraceConfig& config) {
    bpfprogs_ = std::make_unique<BpfProgBackend>(
        config.trace_tc, config.trace_xdp,
        static_cast<std::uint16_t>(tracepoints_->hooks().size() + (kprobes_ ? kprobes_->hooks().size() : 0)),
        config.filter, config.pcap, tracepoints_->shared_maps());
  }

  BackendChoice choice_;
  unsigned kprobe_batch_;
  StartupPhases& phases_;
  std::string plan_summary_;
  BpfHelperScan bpf_helpers_;  // TraceConfig::track_bpf_helpers
  Ksyms ksyms_;
  std::unique_ptr<TracepointBackend> tracepoints_;
  std::unique_ptr<KprobeBackend> kprobes_;
  std::unique_ptr<BpfProgBackend> bpfprogs_;
};

}  // namespace

std::unique_ptr<TraceProbes> load_kernel_probes(const KernelBtf& btf, const TraceConfig& config,
                                                StartupPhases& phases) {
  BackendChoice choice = phases.time("backend probe", [&] { return choose_backend(config.backend); });
  check_options_against(choice, btf, config);
  return std::make_unique<KernelProbes>(btf, config, std::move(choice), phases);
}

}  // namespace pwru
