#include "k8s/node_pods.h"

#include "k8s/proc_scan.h"

namespace pwru {

NodePods::NodePods(KubeApiConfig api, std::string proc_root, PodResolverTimes times)
    : resolver_(std::make_shared<PodResolver>(
          cache_, [scanner = ProcScanner(std::move(proc_root))] { return scanner.scan(); }, times)),
      watcher_(std::move(api), cache_) {}

NodePods::~NodePods() { stop(); }

void NodePods::start() { watcher_.start(); }

void NodePods::stop() noexcept { watcher_.stop(); }

std::vector<std::uint32_t> NodePods::refresh() {
  // Before the first LIST the cache is empty: a scan would only name every
  // netns unknown, and departing nothing.
  if (!watcher_.synced()) return {};
  resolver_->refresh();
  return resolver_->take_gone();
}

PodNetns NodePods::netns_of_pod(const std::string& namespace_name, const std::string& name) const {
  return resolver_->netns_of_pod(namespace_name, name);
}

bool NodePods::has_pod(const std::string& pod_uid) const { return cache_.by_uid(pod_uid).has_value(); }

NodePodsStatus NodePods::status() const {
  return NodePodsStatus{watcher_.synced(), watcher_.current(), cache_.size(), watcher_.stats(), resolver_->stats()};
}

}  // namespace pwru
