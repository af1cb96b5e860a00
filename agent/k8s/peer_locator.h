// Where a pod that is not on this node runs, and which pwru-agent serves
// that node: for forwarding trace requests, so one `kubectl port-forward`
// to any agent reaches every pod. Asks the API server each time (a trace
// request is rare; a stale answer would send it to the wrong node).
#pragma once

#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "k8s/kube_api_config.h"

namespace pwru {

struct PeerAgent {
  std::string node;  // the node the pod runs on
  std::string pod;   // the agent pod there, for messages
  std::string host;  // its pod IP (the node's, with hostNetwork)
  int port = 0;
};

// From a PodList of the pods matching the agents' label selector on one
// node: the first that is an agent of this release, i.e. Running, Ready
// and owned (as controller) by the DaemonSet `daemonset`. Labels alone
// prove nothing: anyone who may create a pod can give it any label. Its
// port is the container port named "peer", else `default_port`. Each pod
// passed over adds a line to `passed_over` saying why.
std::optional<PeerAgent> pick_peer_agent(const nlohmann::json& pod_list, const std::string& daemonset, int default_port,
                                         std::vector<std::string>& passed_over);

class PeerLocator {
 public:
  // Agents are the pods matching `agent_selector` ("k=v,...") in
  // `agent_namespace` owned by the DaemonSet `agent_daemonset` there (see
  // pick_peer_agent).
  PeerLocator(KubeApiConfig api, std::string agent_namespace, std::string agent_selector, std::string agent_daemonset,
              int default_port);

  // Throws RequestError: 404 (no such pod, or not scheduled yet), 502 (no
  // running agent on its node), 503 (the API server could not be asked).
  PeerAgent locate(const std::string& namespace_name, const std::string& pod) const;

  // Every node's agent of this release, by node name, from one (paged) list
  // of the agents' pods: for a trace fanned out to many nodes, one request
  // rather than one per node. A node whose pods pick_peer_agent passes over
  // is absent (the reasons go to the log). Throws RequestError 503 when the
  // API server could not be asked.
  std::map<std::string, PeerAgent> agents_by_node() const;

  const std::string& node_name() const { return api_.node_name; }

 private:
  KubeApiConfig api_;
  std::string agent_namespace_;
  std::string agent_selector_;
  std::string agent_daemonset_;
  int default_port_;
};

// The agent's own namespace: POD_NAMESPACE, else the service account's
// namespace file; "" when neither says.
std::string own_pod_namespace(const EnvLookup& env, const std::string& namespace_file =
                                                        "/var/run/secrets/kubernetes.io/serviceaccount/namespace");

}  // namespace pwru
