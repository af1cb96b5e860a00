#include "k8s/kube_api_config.h"

#include <cstdlib>

#include "common/error.h"

namespace pwru {

std::string KubeApiConfig::url() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return "https://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

EnvLookup process_environment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

namespace {

std::optional<std::string> non_empty(const std::optional<std::string>& value) {
  if (value && !value->empty()) return value;
  return std::nullopt;
}

int service_port(const EnvLookup& env) {
  const auto text = non_empty(env("KUBERNETES_SERVICE_PORT"));
  if (!text) return 443;
  const bool digits = text->size() <= 5 && text->find_first_not_of("0123456789") == std::string::npos;
  const int port = digits ? std::stoi(*text) : 0;
  if (port < 1 || port > 65535) {
    throw UsageError("kubernetes: KUBERNETES_SERVICE_PORT is '" + *text +
                     "', not a port from 1 to 65535; fix the environment or set kubernetes.api_server");
  }
  return port;
}

}  // namespace

KubeApiChoice choose_kube_api(const AgentConfig::Kubernetes& config, const EnvLookup& env) {
  using Enabled = AgentConfig::Kubernetes::Enabled;
  if (config.enabled == Enabled::kOff) return {std::nullopt, "kubernetes.enabled is off"};

  KubeApiConfig api;
  if (!config.api_server_host.empty()) {
    api.host = config.api_server_host;
    api.port = config.api_server_port;
  } else if (const auto host = non_empty(env("KUBERNETES_SERVICE_HOST"))) {
    api.host = *host;
    api.port = service_port(env);
  } else if (config.enabled == Enabled::kOn) {
    throw UsageError(
        "kubernetes.enabled is on, but there is no API server: KUBERNETES_SERVICE_HOST is not set (not in a "
        "cluster) and kubernetes.api_server is empty; set kubernetes.api_server: https://HOST:PORT");
  } else {
    return {std::nullopt, "not in a cluster (KUBERNETES_SERVICE_HOST is not set) and kubernetes.api_server is empty"};
  }
  api.token_file = config.token_file;
  api.ca_file = config.ca_file;
  api.node_name = config.node_name;
  if (api.node_name.empty()) api.node_name = non_empty(env("NODE_NAME")).value_or("");
  // Without it the agent would list every pod of the cluster and label this
  // node's traffic with other nodes' pods.
  if (api.node_name.empty()) {
    throw UsageError(
        "kubernetes: which node is this? Set NODE_NAME (the chart sets it from spec.nodeName through the downward "
        "API) or kubernetes.node_name, or set kubernetes.enabled: off");
  }
  return {std::move(api), ""};
}

}  // namespace pwru
