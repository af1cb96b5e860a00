// NetnsResolver for the agent: netns inode -> pod, from the pods the API
// server lists on this node (PodCache) and the /proc scan that finds each
// pod's netns (ProcScanner). Refreshed from outside (the agent's main loop)
// so a scrape never waits for a /proc walk.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

#include "events/counter_source.h"
#include "k8s/pod_cache.h"
#include "k8s/proc_scan.h"

namespace pwru {

class PodResolver final : public NetnsResolver {
 public:
  using Scan = std::function<ProcScanResult()>;
  using Clock = std::chrono::steady_clock;

  PodResolver(const PodCache& cache, Scan scan, std::chrono::seconds rescan_every);

  // Pod labels of a netns; empty for the host's netns (hostNetwork pods are
  // host traffic, not one arbitrary pod) and for netns no known pod owns.
  PodIdentity resolve(std::uint32_t netns_inode) const override;

  // Rescans when the pod set changed since the last scan or `rescan_every`
  // has passed; returns whether it did. `now` is injectable for tests.
  bool refresh(Clock::time_point now = Clock::now());

  std::size_t resolved_netns() const;

 private:
  const PodCache& cache_;
  Scan scan_;
  std::chrono::seconds rescan_every_;
  std::uint64_t scanned_generation_ = ~std::uint64_t{0};
  Clock::time_point last_scan_{};
  mutable std::mutex mutex_;
  std::map<std::uint32_t, PodIdentity> by_netns_;
};

}  // namespace pwru
