// pwru-agent's always-on hooks: the skb tracepoints (and, on kprobe
// backends, a set of skb functions) loaded in count-only mode, so every
// packet bumps a per-CPU (netns, hook) visit counter and every kfree_skb a
// (netns, reason, location) drop counter, with no event and no filter.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "btf/kernel_btf.h"
#include "enrich/ksyms.h"
#include "probe/kprobe_backend.h"
#include "probe/tracepoint_backend.h"

namespace pwru {

struct CountingSpec {
  std::string backend = "auto";  // auto | kprobe-multi | kprobe | tracepoint
  CounterMapSizes sizes{16384, 16384, PWRU_VISIT_CACHE_SLOTS};
  bool all_tracepoints = true;
  // With all_tracepoints: kStages leaves out the tracepoints that see a
  // packet a second time at the same stage (probe/visit_hooks.h); a list of
  // tracepoints is taken as written either way.
  enum class VisitHooks { kStages, kAll } visit_hooks = VisitHooks::kStages;
  std::vector<std::string> tracepoints;  // when !all_tracepoints; kfree_skb is always added
  std::vector<std::string> functions;    // kprobe backends: skb functions whose visits count
};

class CountingProbes {
 public:
  // Loads everything (nothing attached yet). Unknown tracepoint names are a
  // UsageError; functions this kernel lacks or cannot probe are left out
  // and listed by skipped_functions().
  CountingProbes(const KernelBtf& btf, const Ksyms& ksyms, const CountingSpec& spec);
  ~CountingProbes();
  CountingProbes(const CountingProbes&) = delete;
  CountingProbes& operator=(const CountingProbes&) = delete;

  AttachReport attach(const std::function<bool()>& cancelled);
  void detach() noexcept;

  const std::string& backend_name() const { return backend_name_; }
  const std::string& backend_reason() const { return backend_reason_; }
  // hook_names()[hook_id]: the names visit counters are keyed by.
  std::vector<std::string> hook_names() const;
  const std::vector<std::string>& skipped_functions() const { return skipped_functions_; }
  // Tracepoints visit_hooks kStages left out, "name: why".
  const std::vector<std::string>& left_out_tracepoints() const { return left_out_tracepoints_; }

  int drop_counts_fd() const { return tracepoints_->drop_counts_fd(); }
  int visit_counts_fd() const { return tracepoints_->visit_counts_fd(); }
  int visit_cache_fd() const { return tracepoints_->visit_cache_fd(); }
  int counters_fd() const { return tracepoints_->counters_fd(); }

 private:
  std::string backend_name_;
  std::string backend_reason_;
  std::vector<std::string> skipped_functions_;  // "name: why"
  std::vector<std::string> left_out_tracepoints_;
  std::unique_ptr<TracepointBackend> tracepoints_;
  std::unique_ptr<KprobeBackend> kprobes_;
};

}  // namespace pwru
