// Reads pwru-agent's per-CPU drop and visit counter maps (bpf/skb_event.bpf.h)
// into a CounterSnapshot, summing the CPUs.
#pragma once

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

 private:
  CounterMapFds fds_;
  int ncpus_;
};

}  // namespace pwru
