#include "probe/counting_probes.h"

#include <bpf/btf.h>

#include <algorithm>
#include <optional>

#include "common/error.h"
#include "probe/backend_select.h"
#include "probe/kprobe_plan.h"
#include "probe/visit_hooks.h"

namespace pwru {

namespace {

// Drop counters come from this tracepoint; it is attached whatever the
// visit selection says.
constexpr const char* kDropTracepoint = "kfree_skb";
// Events are never written in count-only mode: the smallest ring will do.
constexpr std::uint32_t kUnusedRingBytes = 4096;

std::vector<SkbTracepoint> select_tracepoints(const KernelBtf& btf, const CountingSpec& spec,
                                              std::vector<std::string>& left_out) {
  std::vector<SkbTracepoint> all = btf.skb_tracepoints();
  if (spec.all_tracepoints && spec.visit_hooks == CountingSpec::VisitHooks::kAll) return all;
  if (spec.all_tracepoints) {
    StageTracepoints stages = stage_tracepoints(all, [&](const std::string& name) {
      return btf__find_by_name_kind(btf.raw(), ("btf_trace_" + name).c_str(), BTF_KIND_TYPEDEF) > 0;
    });
    left_out = std::move(stages.left_out);
    return stages.kept;
  }
  std::vector<std::string> wanted = spec.tracepoints;
  if (std::find(wanted.begin(), wanted.end(), kDropTracepoint) == wanted.end()) wanted.push_back(kDropTracepoint);
  std::vector<SkbTracepoint> chosen;
  for (const std::string& name : wanted) {
    auto it = std::find_if(all.begin(), all.end(), [&](const SkbTracepoint& tp) { return tp.name == name; });
    if (it == all.end()) {
      std::string known;
      for (const SkbTracepoint& tp : all) known += (known.empty() ? "" : ", ") + tp.name;
      throw UsageError("counters.visit_tracepoints: this kernel has no skb tracepoint '" + name +
                       "'; it has: " + known);
    }
    chosen.push_back(*it);
  }
  return chosen;
}

// The named functions this kernel has with an skb argument, in vmlinux or
// in a module's BTF.
std::vector<SkbFunction> resolve_functions(const KernelBtf& btf, const std::vector<std::string>& names,
                                           std::vector<std::string>& skipped) {
  std::vector<KernelBtf> modules;
  for (const std::string& module : KernelBtf::modules_with_btf()) {
    try {
      modules.push_back(KernelBtf::load_module(module, btf));
    } catch (const std::exception&) {
      // A module whose BTF cannot be read only loses its functions.
    }
  }
  std::vector<SkbFunction> found;
  for (const std::string& name : names) {
    std::optional<SkbFunction> fn = btf.function(name);
    for (std::size_t i = 0; !fn && i < modules.size(); ++i) fn = modules[i].function(name);
    if (!fn) {
      skipped.push_back(name + ": not in this kernel's BTF (or its module is not loaded)");
    } else if (fn->skb_arg < 0) {
      skipped.push_back(name + ": takes no struct sk_buff * among its first five arguments");
    } else {
      found.push_back(*fn);
    }
  }
  return found;
}

}  // namespace

CountingProbes::CountingProbes(const KernelBtf& btf, const Ksyms& ksyms, const CountingSpec& spec) {
  const BackendChoice choice = choose_backend(spec.backend);
  backend_name_ = choice.name;
  backend_reason_ = choice.reason;
  // Counting has no filter: every skb counts.
  const pwru_filter_cfg no_filter{};
  const std::vector<SkbTracepoint> tracepoints = select_tracepoints(btf, spec, left_out_tracepoints_);
  tracepoints_ = std::make_unique<TracepointBackend>(tracepoints, no_filter, kUnusedRingBytes, nullptr, spec.sizes);
  const std::vector<std::string> functions =
      !choice.kprobe || spec.visit_hooks == CountingSpec::VisitHooks::kAll
          ? spec.functions
          : functions_apart_from_tracepoints(spec.functions, tracepoints, skipped_functions_);
  if (choice.kprobe && !functions.empty()) {
    const std::vector<SkbFunction> named = resolve_functions(btf, functions, skipped_functions_);
    const KprobePlan plan = plan_kprobes({}, ksyms, read_traceable_functions(), "", named);
    for (const SkbFunction& fn : named) {
      const bool planned = std::any_of(plan.functions.begin(), plan.functions.end(),
                                       [&](const SkbFunction& p) { return p.name == fn.name; });
      if (!planned) skipped_functions_.push_back(fn.name + ": not in kallsyms or not traceable");
    }
    if (!plan.functions.empty())
      kprobes_ = std::make_unique<KprobeBackend>(*choice.kprobe, plan.functions,
                                                 static_cast<std::uint16_t>(tracepoints_->hooks().size()), no_filter,
                                                 nullptr, tracepoints_->shared_maps(), tracepoints_->counting());
  }
}

CountingProbes::~CountingProbes() { detach(); }

AttachReport CountingProbes::attach(const std::function<bool()>& cancelled) {
  AttachReport report = tracepoints_->attach(cancelled);
  if (kprobes_) {
    AttachReport kp = kprobes_->attach(cancelled, nullptr);
    report.attached += kp.attached;
    report.skipped.insert(report.skipped.end(), kp.skipped.begin(), kp.skipped.end());
  }
  return report;
}

void CountingProbes::detach() noexcept {
  if (kprobes_) kprobes_->detach();
  if (tracepoints_) tracepoints_->detach();
}

std::vector<std::string> CountingProbes::hook_names() const {
  std::vector<std::string> names;
  for (const Hook& hook : tracepoints_->hooks()) names.push_back(hook.name);
  if (kprobes_)
    for (const Hook& hook : kprobes_->hooks()) names.push_back(hook.name);
  return names;
}

}  // namespace pwru
