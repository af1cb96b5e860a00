// Tracepoint backend: attaches one tp_btf program per skb tracepoint the
// running kernel has, as discovered from its BTF.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bpfobj/kprobe_object.h"
#include "btf/kernel_btf.h"
#include "filter/pcap_compiler.h"
#include "pwru_abi.h"

struct bpf_link;

namespace pwru {

class TpObject;

// What an event's hook_id stands for.
struct Hook {
  std::uint16_t id = 0;
  std::string name;
  bool reports_drops = false;
};

// pwru-agent's counter maps (count_only); trace sessions use the default,
// which costs no memory beyond the visit cache's fixed 24 KiB per CPU.
struct CounterMapSizes {
  std::uint32_t drop_entries = 1;
  std::uint32_t visit_entries = 1;
  std::uint32_t visit_cache_slots = 0;  // per CPU; a power of two up to PWRU_VISIT_CACHE_SLOTS, 0: none
};

struct AttachReport {
  std::size_t attached = 0;
  std::vector<std::string> skipped;  // "name: reason"
};

class TracepointBackend {
 public:
  // Loads (verifies) programs for every tracepoint in `tracepoints`; ones
  // the kernel refuses are left out and reported by attach() as skipped.
  // `pcap` may be null (no expression: everything matches).
  TracepointBackend(const std::vector<SkbTracepoint>& tracepoints, const pwru_filter_cfg& filter,
                    std::uint32_t ring_bytes, std::shared_ptr<const CompiledPcap> pcap = nullptr,
                    CounterMapSizes counter_sizes = {});
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

 private:
  std::unique_ptr<TpObject> object_;
  std::vector<Hook> hooks_;
  std::vector<struct bpf_link*> links_;
  std::vector<std::string> refused_;  // tracepoints whose program did not load
};

}  // namespace pwru
