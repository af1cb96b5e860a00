// Where the Kubernetes API server is and how to talk to it: from the
// agent's `kubernetes:` configuration and, inside a cluster, the
// environment the kubelet gives every pod.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "config/agent_config.h"

namespace pwru {

struct KubeApiConfig {
  std::string host;  // API server host name or address
  int port = 443;
  std::string token_file;  // bearer token, re-read before every request (it rotates)
  std::string ca_file;     // CA bundle that signed the API server's certificate
  std::string node_name;   // only pods scheduled here are listed and watched

  std::string url() const;  // https://HOST:PORT, for log lines
};

// Looks up an environment variable; tests inject their own.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
EnvLookup process_environment();

// The API server to watch, or why pod identity is off.
struct KubeApiChoice {
  std::optional<KubeApiConfig> api;
  std::string off_reason;  // set exactly when `api` is empty
};

// kubernetes.api_server wins over the in-cluster service
// (KUBERNETES_SERVICE_HOST/_PORT); the node is kubernetes.node_name, else
// $NODE_NAME. Throws UsageError when on but unusable: enabled: on with no
// API server, no node name, or a malformed KUBERNETES_SERVICE_PORT.
KubeApiChoice choose_kube_api(const AgentConfig::Kubernetes& config, const EnvLookup& env);

}  // namespace pwru
