// Where a pod that is not on this node runs, and which pwru-agent serves
// that node: for forwarding trace requests, so one `kubectl port-forward`
// to any agent reaches every pod. Asks the API server each time (a trace
// request is rare; a stale answer would send it to the wrong node).
#pragma once

#include <string>

#include "k8s/kube_api_config.h"

namespace pwru {

struct PeerAgent {
  std::string node;  // the node the pod runs on
  std::string pod;   // the agent pod there, for messages
  std::string host;  // its pod IP (the node's, with hostNetwork)
  int port = 0;
};

class PeerLocator {
 public:
  // Agents are the pods matching `agent_selector` ("k=v,...") in
  // `agent_namespace`; their port is the container port named "http",
  // else `default_port`.
  PeerLocator(KubeApiConfig api, std::string agent_namespace, std::string agent_selector, int default_port);

  // Throws RequestError: 404 (no such pod, or not scheduled yet), 502 (no
  // running agent on its node), 503 (the API server could not be asked).
  PeerAgent locate(const std::string& namespace_name, const std::string& pod) const;

  const std::string& node_name() const { return api_.node_name; }

 private:
  KubeApiConfig api_;
  std::string agent_namespace_;
  std::string agent_selector_;
  int default_port_;
};

// The agent's own namespace: POD_NAMESPACE, else the service account's
// namespace file; "" when neither says.
std::string own_pod_namespace(const EnvLookup& env,
                              const std::string& namespace_file =
                                  "/var/run/secrets/kubernetes.io/serviceaccount/namespace");

}  // namespace pwru
