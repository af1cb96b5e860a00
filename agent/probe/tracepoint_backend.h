// Tracepoint backend: attaches one tp_btf program per skb tracepoint the
// running kernel has, as discovered from its BTF.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bpfobj/bpf_link.h"
#include "bpfobj/kprobe_object.h"
#include "btf/kernel_btf.h"
#include "filter/pcap_compiler.h"
#include "pwru_abi.h"

namespace pwru {

class TpObject;

// What an event's hook_id stands for.
struct Hook {
  std::uint16_t id = 0;
  std::string name;
  bool reports_drops = false;
};

// pwru-agent's counter maps (pwru_count_cfg); a trace has none, which costs
// no memory beyond the visit cache's fixed 24 KiB per CPU.
struct CounterMapSizes {
  std::uint32_t drop_entries = 1;
  std::uint32_t visit_entries = 1;
  std::uint32_t visit_cache_slots = 0;  // per CPU; a power of two up to PWRU_VISIT_CACHE_SLOTS, 0: none
};

struct AttachReport {
  std::size_t attached = 0;
  std::vector<std::string> skipped;  // "name: reason"
};

// The tracepoints a kprobe backend keeps beside its kprobes: the drop
// tracepoint (kfree_skb), whose reason and location no kprobe argument
// carries on every kernel. Every other skb tracepoint fires inside a
// function that has a kprobe of its own, and each costs a verifier run at
// start (about 0.12 s in the 6.12 TCG guest: 30 of them were 60 % of start-up).
std::vector<SkbTracepoint> tracepoints_beside_kprobes(const std::vector<SkbTracepoint>& all);

class TracepointBackend {
 public:
  // Loads (verifies) programs for every tracepoint in `tracepoints`; ones
  // the kernel refuses are left out and reported by attach() as skipped.
  // `pcap` may be null (no expression: everything matches). `counting`:
  // pwru-agent's count-only programs with counter maps of these sizes
  // (`filter` is then ignored); none: a trace. `netns_set`: the netns a
  // trace with filter.netns_in_map keeps (written before attach()).
  TracepointBackend(const std::vector<SkbTracepoint>& tracepoints, const pwru_filter_cfg& filter,
                    std::uint32_t ring_bytes, std::shared_ptr<const CompiledPcap> pcap = nullptr,
                    std::optional<CounterMapSizes> counting = std::nullopt,
                    const std::vector<std::uint32_t>& netns_set = {});
  ~TracepointBackend();
  TracepointBackend(const TracepointBackend&) = delete;
  TracepointBackend& operator=(const TracepointBackend&) = delete;

  // Attaches each hook; stops early (and detaches nothing) when `cancelled`
  // returns true. Throws when no hook at all could be attached.
  AttachReport attach(const std::function<bool()>& cancelled);
  // Idempotent; also done by the destructor.
  void detach() noexcept;

  const std::vector<Hook>& hooks() const { return hooks_; }
  int events_fd() const;
  int counters_fd() const;
  int stacks_fd() const;
  int drop_counts_fd() const;
  int visit_counts_fd() const;
  int visit_cache_fd() const;
  int tracked_skbs_fd() const;
  int print_skb_fd() const;
  int print_shinfo_fd() const;
  // The maps a kprobe object must share to write into the same ring and counters.
  SharedMaps shared_maps() const;
  // What the programs were loaded with: a kprobe object sharing the maps loads with the same.
  const pwru_count_cfg& counting() const { return counting_; }

 private:
  pwru_count_cfg counting_{};
  std::unique_ptr<TpObject> object_;
  std::vector<Hook> hooks_;
  std::vector<BpfLink> links_;
  std::vector<std::string> refused_;  // tracepoints whose program did not load
};

}  // namespace pwru
