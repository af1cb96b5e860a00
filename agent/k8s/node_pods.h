// The pods of this node and the network namespaces they live in: the API
// watch (PodWatcher into PodCache, on its own thread) and the /proc scan
// (ProcScanner through PodResolver), put together for the agent. The
// owner calls refresh() from its main loop; scrapes and trace requests
// only read.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "k8s/kube_api_config.h"
#include "k8s/pod_cache.h"
#include "k8s/pod_resolver.h"
#include "k8s/pod_watcher.h"

namespace pwru {

struct NodePodsStatus {
  bool synced = false;   // a LIST succeeded since start
  bool current = false;  // ... and no API failure since (PodWatcher::current)
  std::size_t pods = 0;
  PodWatcherStats watch;
  PodResolverStats resolve;
};

class NodePods {
 public:
  NodePods(KubeApiConfig api, std::string proc_root, PodResolverTimes times);
  ~NodePods();
  NodePods(const NodePods&) = delete;
  NodePods& operator=(const NodePods&) = delete;

  // Starts watching; returns at once (the API server may be down).
  void start();
  void stop() noexcept;

  // Rescans /proc when due; returns the netns that turned gone since the
  // last call (their kernel counters can be erased).
  std::vector<std::uint32_t> refresh();

  // For the metrics collector; valid as long as this object.
  std::shared_ptr<const NetnsResolver> resolver() const { return resolver_; }
  PodNetns netns_of_pod(const std::string& namespace_name, const std::string& name) const;
  // Whether the API server still lists a pod with this UID on this node.
  bool has_pod(const std::string& pod_uid) const;
  NodePodsStatus status() const;
  const KubeApiConfig& api() const { return watcher_.config(); }

 private:
  PodCache cache_;
  std::shared_ptr<PodResolver> resolver_;
  PodWatcher watcher_;
};

}  // namespace pwru
