// NetnsResolver for the agent: netns inode -> pod, from the pods the API
// server lists on this node (PodCache) and the /proc scan that finds each
// pod's netns (ProcScanner). Refreshed from outside (the agent's main loop)
// so a scrape never waits for a /proc walk.
//
// A netns whose pod is deleted (or whose processes are gone) keeps its pod
// labels for a grace period, so the last scrapes see the final counts; then
// it is "gone": its series are dropped and its kernel counters can be
// erased (take_gone()).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "events/counter_source.h"
#include "k8s/pod_cache.h"
#include "k8s/proc_scan.h"

namespace pwru {

struct PodResolverTimes {
  std::chrono::seconds rescan_every{30};
  std::chrono::seconds deleted_pod_grace{60};
};

// Where a pod named in a request lives.
struct PodNetns {
  std::uint32_t netns = 0;    // 0 exactly when `error` is set
  bool host_network = false;  // netns is the host's: the pod's traffic is not separable from the node's
  std::string pod_uid;
  std::string error;      // what is wrong, for the requester
  bool not_here = false;  // the error is that this node runs no such pod (it may run elsewhere)
};

struct PodResolverStats {
  std::size_t pod_netns = 0;       // netns labelled with a running pod
  std::size_t departed_netns = 0;  // in their grace period
  std::size_t gone_netns = 0;      // remembered as gone
  std::uint64_t scans = 0;
  std::uint64_t scan_failures = 0;
};

class PodResolver final : public NetnsResolver {
 public:
  using Scan = std::function<ProcScanResult()>;
  using Clock = std::chrono::steady_clock;

  PodResolver(const PodCache& cache, Scan scan, PodResolverTimes times);

  PodIdentity resolve(std::uint32_t netns_inode) const override;

  // Rescans when the pod set changed since the last scan, `rescan_every`
  // has passed, or a departed netns's grace ended after the last scan, and
  // ages departed netns into gone ones (only those a scan after their grace
  // did not find: a new pod may have their inode); returns whether it
  // scanned. A scan that throws is counted and retried at the next call.
  // `now` is injectable for tests.
  bool refresh(Clock::time_point now = Clock::now());

  // Netns that turned gone since the last call.
  std::vector<std::uint32_t> take_gone();

  // The netns of pod `namespace_name`/`name`, or why there is none.
  PodNetns netns_of_pod(const std::string& namespace_name, const std::string& name) const;

  PodResolverStats stats() const;

  // Gone netns remembered (oldest forgotten first): a forgotten one whose
  // counters come back shows up as an unresolved netns again.
  static constexpr std::size_t kMaxGoneRemembered = 65536;

 private:
  struct Departed {
    PodIdentity identity;
    Clock::time_point since;
    std::set<std::string> uids;  // of the pod(s) that had it: their own lingering processes do not hold it
  };
  bool held_by_another_pod(std::uint32_t netns, const Departed& departed) const;  // caller holds mutex_
  void age(Clock::time_point now);                                                // caller holds mutex_
  // A departed netns is past its grace but no scan has looked since.
  bool gone_due(Clock::time_point now) const;

  const PodCache& cache_;
  Scan scan_;
  PodResolverTimes times_;
  std::uint64_t scanned_generation_ = ~std::uint64_t{0};
  Clock::time_point last_scan_{};
  Clock::time_point last_good_scan_{};  // under mutex_: age() compares it with grace ends
  // netns -> UIDs of the pods whose processes the last good scan found in it.
  std::map<std::uint32_t, std::set<std::string>> held_;

  mutable std::mutex mutex_;
  std::map<std::uint32_t, PodIdentity> live_;
  std::map<std::uint32_t, Departed> departed_;
  std::map<std::uint32_t, Clock::time_point> gone_;
  std::vector<std::uint32_t> newly_gone_;
  std::uint32_t host_netns_ = 0;
  std::map<std::string, std::uint32_t> netns_by_uid_;  // last scan's
  std::uint64_t scans_ = 0;
  std::uint64_t scan_failures_ = 0;
  bool scan_failing_ = false;
};

}  // namespace pwru
