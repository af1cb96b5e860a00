#include "k8s/pod_resolver.h"

namespace pwru {

PodResolver::PodResolver(const PodCache& cache, Scan scan, std::chrono::seconds rescan_every)
    : cache_(cache), scan_(std::move(scan)), rescan_every_(rescan_every) {}

PodIdentity PodResolver::resolve(std::uint32_t netns_inode) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = by_netns_.find(netns_inode);
  return it == by_netns_.end() ? PodIdentity{} : it->second;
}

bool PodResolver::refresh(Clock::time_point now) {
  const std::uint64_t generation = cache_.generation();
  // A new pod's processes appear after its ADDED event: the periodic rescan
  // catches those the event-driven one was too early for.
  if (generation == scanned_generation_ && now - last_scan_ < rescan_every_) return false;
  const ProcScanResult scan = scan_();
  std::map<std::uint32_t, PodIdentity> by_netns;
  // hostNetwork pods are not in pod_netns (the scanner keeps them apart):
  // their traffic stays host traffic.
  for (const auto& [uid, netns] : scan.pod_netns)
    if (auto pod = cache_.by_uid(uid)) by_netns[netns] = PodIdentity{pod->namespace_name, pod->name};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    by_netns_ = std::move(by_netns);
  }
  scanned_generation_ = generation;
  last_scan_ = now;
  return true;
}

std::size_t PodResolver::resolved_netns() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return by_netns_.size();
}

}  // namespace pwru
