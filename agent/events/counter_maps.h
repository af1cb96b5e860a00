// Reads pwru-agent's per-CPU drop and visit counter maps (bpf/skb_event.bpf.h)
// into a CounterSnapshot, summing the CPUs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "events/counter_source.h"

namespace pwru {

struct CounterMapFds {
  int drop_counts = -1;
  int visit_counts = -1;
  int visit_cache = -1;  // per-CPU slots in front of visit_counts
  int counters = -1;  // the per-CPU array with the overflow counters
};

class BpfCounterSource final : public CounterSource {
 public:
  // The maps must outlive this reader (the probes that own them do).
  explicit BpfCounterSource(CounterMapFds fds);
  CounterSnapshot read() const override;

  // Deletes the hash-map entries of these netns (their pods are gone), so
  // pod churn does not fill the maps with the dead. Cache slots cannot be
  // freed from here without racing the CPUs that own them: they stay, and
  // the resolver keeps naming their netns gone. Returns entries deleted.
  std::size_t erase_netns(const std::vector<std::uint32_t>& netns) const;

 private:
  CounterMapFds fds_;
  int ncpus_;
};

}  // namespace pwru
