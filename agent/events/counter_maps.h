// Reads pwru-agent's per-CPU drop and visit counter maps (bpf/skb_event.bpf.h)
// into a CounterSnapshot, summing the CPUs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "events/counter_source.h"

namespace pwru {

class VisitSweepObject;

struct CounterMapFds {
  int drop_counts = -1;
  int visit_counts = -1;
  int visit_cache = -1;  // per-CPU slots in front of visit_counts
  int counters = -1;     // the per-CPU array with the overflow counters
};

// What erase_netns() removed from the kernel.
struct ErasedCounters {
  std::size_t entries = 0;      // drop_counts and visit_counts entries
  std::size_t cache_slots = 0;  // visit_cache slots, summed over CPUs
};

class BpfCounterSource final : public CounterSource {
 public:
  // The maps must outlive this reader (the probes that own them do). Loads
  // the visit cache sweeper; a kernel that refuses it leaves the slots of
  // gone netns in place (said once in the log), which costs speed, not counts.
  explicit BpfCounterSource(CounterMapFds fds);
  ~BpfCounterSource() override;
  CounterSnapshot read() const override;

  // Deletes the hash-map entries and frees the cache slots of these netns
  // (their pods are gone, past the grace period in which their last counts
  // were scraped), so pod churn does not fill the maps with the dead. Call
  // it from one thread: the sweeper's list of gone netns is not shared.
  ErasedCounters erase_netns(const std::vector<std::uint32_t>& netns) const;

  bool frees_cache_slots() const { return sweeper_ != nullptr; }

 private:
  CounterMapFds fds_;
  int ncpus_;
  mutable std::unique_ptr<VisitSweepObject> sweeper_;  // dropped when the kernel cannot run it
};

}  // namespace pwru
