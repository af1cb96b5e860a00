#include "k8s/pod_resolver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace pwru {

PodResolver::PodResolver(const PodCache& cache, Scan scan, PodResolverTimes times)
    : cache_(cache), scan_(std::move(scan)), times_(times) {}

PodIdentity PodResolver::resolve(std::uint32_t netns_inode) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = live_.find(netns_inode); it != live_.end()) return it->second;
  if (auto it = departed_.find(netns_inode); it != departed_.end()) return it->second.identity;
  if (host_netns_ != 0 && netns_inode == host_netns_) return PodIdentity{PodIdentity::Kind::kHost, "", ""};
  if (gone_.count(netns_inode) != 0) return PodIdentity{PodIdentity::Kind::kGone, "", ""};
  return {};
}

bool PodResolver::refresh(Clock::time_point now) {
  const std::uint64_t generation = cache_.generation();
  // A new pod's processes appear after its ADDED event: the periodic rescan
  // catches those the event-driven one was too early for.
  // scanned_generation_ starts at a value no generation reaches: the first
  // call always scans.
  const bool due = generation != scanned_generation_ || now - last_scan_ >= times_.rescan_every || gone_due(now);
  if (!due) {
    std::lock_guard<std::mutex> lock(mutex_);
    age(now);
    return false;
  }
  ProcScanResult scan;
  try {
    scan = scan_();
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++scan_failures_;
    // Once per failure streak, not at every retry.
    if (!scan_failing_) spdlog::warn("kubernetes: scanning processes failed: {}", e.what());
    scan_failing_ = true;
    last_scan_ = now;  // retried at the next rescan_every, not on every call
    scanned_generation_ = generation;
    age(now);
    return false;
  }
  std::map<std::uint32_t, PodIdentity> live;
  // hostNetwork pods are not in pod_netns (the scanner keeps them apart):
  // their traffic stays host traffic.
  for (const auto& [uid, netns] : scan.pod_netns)
    if (auto pod = cache_.by_uid(uid))
      live[netns] = PodIdentity{PodIdentity::Kind::kPod, pod->namespace_name, pod->name};

  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [netns, identity] : live_)
    if (live.count(netns) == 0) departed_.emplace(netns, Departed{std::move(identity), now, held_[netns]});
  for (const auto& [netns, identity] : live) {
    departed_.erase(netns);
    gone_.erase(netns);  // the kernel reused the inode for a new netns
  }
  live_ = std::move(live);
  host_netns_ = scan.host_netns;
  netns_by_uid_ = std::move(scan.pod_netns);
  ++scans_;
  if (std::exchange(scan_failing_, false)) spdlog::info("kubernetes: scanning processes works again");
  scanned_generation_ = generation;
  last_scan_ = now;
  last_good_scan_ = now;
  held_.clear();
  for (const auto& [uid, netns] : netns_by_uid_) held_[netns].insert(uid);
  age(now);
  return true;
}

bool PodResolver::gone_due(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [netns, departed] : departed_)
    // Against last_scan_, not last_good_scan_: a failing scan is retried at
    // rescan_every, not at every call.
    if (now - departed.since >= times_.deleted_pod_grace && last_scan_ < departed.since + times_.deleted_pod_grace)
      return true;
  return false;
}

void PodResolver::age(Clock::time_point now) {
  for (auto it = departed_.begin(); it != departed_.end();) {
    // Gone only once a scan after the grace did not find it either: the
    // kernel hands a destroyed netns's inode to the next new one, and a pod
    // that got it meanwhile must not have its fresh counters erased.
    // Nor while another pod's process holds it, even one of a pod this agent
    // has not been told about yet (its ADDED event still on the way). The
    // deleted pod's own processes do not count: a force-deleted pod's may
    // linger, and its series go after the grace all the same.
    const Clock::time_point grace_end = it->second.since + times_.deleted_pod_grace;
    if (now < grace_end || last_good_scan_ < grace_end || held_by_another_pod(it->first, it->second)) {
      ++it;
      continue;
    }
    gone_[it->first] = now;
    newly_gone_.push_back(it->first);
    it = departed_.erase(it);
  }
  if (gone_.size() <= kMaxGoneRemembered) return;
  // Forget the oldest quarter in one go rather than one per departure.
  std::vector<std::pair<Clock::time_point, std::uint32_t>> by_age;
  by_age.reserve(gone_.size());
  for (const auto& [netns, since] : gone_) by_age.emplace_back(since, netns);
  std::sort(by_age.begin(), by_age.end());
  for (std::size_t i = 0; i < by_age.size() / 4; ++i) gone_.erase(by_age[i].second);
}

bool PodResolver::held_by_another_pod(std::uint32_t netns, const Departed& departed) const {
  const auto it = held_.find(netns);
  if (it == held_.end()) return false;
  for (const std::string& uid : it->second)
    if (departed.uids.count(uid) == 0) return true;
  return false;
}

std::vector<std::uint32_t> PodResolver::take_gone() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(newly_gone_, {});
}

PodNetns PodResolver::netns_of_pod(const std::string& namespace_name, const std::string& name) const {
  PodNetns out;
  std::optional<PodInfo> found;
  for (PodInfo& pod : cache_.pods()) {
    if (pod.namespace_name == namespace_name && pod.name == name) {
      found = std::move(pod);
      break;
    }
  }
  const std::string who = namespace_name + "/" + name;
  if (!found) {
    out.error = "pod " + who + " is not on this node (or the API server has not listed it to this agent yet)";
    out.not_here = true;
    return out;
  }
  out.pod_uid = found->uid;
  std::lock_guard<std::mutex> lock(mutex_);
  if (found->host_network) {
    if (host_netns_ == 0) {
      out.error = "pod " + who + " uses the host's network, and the host's netns is unknown to this agent";
      return out;
    }
    out.netns = host_netns_;
    out.host_network = true;
    return out;
  }
  if (auto it = netns_by_uid_.find(found->uid); it != netns_by_uid_.end()) {
    out.netns = it->second;
    return out;
  }
  out.error = "pod " + who + " has no process on this node yet (is it running?); try again in a few seconds";
  return out;
}

PodResolverStats PodResolver::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return PodResolverStats{live_.size(), departed_.size(), gone_.size(), scans_, scan_failures_};
}

}  // namespace pwru
