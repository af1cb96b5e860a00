#include "k8s/peer_locator.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "k8s/json_fields.h"
#include "k8s/kube_client.h"
#include "k8s/url_encode.h"

namespace pwru {

namespace {

using json = nlohmann::json;
constexpr int kLookupTimeoutSeconds = 5;

json get_json(const KubeApiConfig& api, const std::string& path, const std::string& purpose, int* status) {
  auto client = make_kube_client(api, kLookupTimeoutSeconds);
  auto res = client->Get(path.c_str());
  if (!res || (res->status != 200 && res->status != 404))
    throw RequestError(503, "cannot " + purpose + ": the API server answered " + describe_kube_result(res));
  *status = res->status;
  if (res->status == 404) return json();
  try {
    return json::parse(res->body);
  } catch (const json::exception& e) {
    throw RequestError(503,
                       "cannot " + purpose + ": the API server's answer is not JSON (" + std::string(e.what()) + ")");
  }
}

int peer_port_of(const json& pod, int fallback) {
  const json& containers = field(field(pod, "spec"), "containers");
  if (!containers.is_array()) return fallback;
  for (const json& container : containers) {
    const json& ports = field(container, "ports");
    if (!ports.is_array()) continue;
    for (const json& port : ports)
      if (string_field(port, "name") == "peer" && field(port, "containerPort").is_number_integer())
        return field(port, "containerPort").get<int>();
  }
  return fallback;
}

bool owned_by_daemonset(const json& pod, const std::string& daemonset) {
  const json& owners = field(field(pod, "metadata"), "ownerReferences");
  if (!owners.is_array()) return false;
  for (const json& owner : owners) {
    if (string_field(owner, "kind") == "DaemonSet" && string_field(owner, "apiVersion") == "apps/v1" &&
        string_field(owner, "name") == daemonset && field(owner, "controller") == true)
      return true;
  }
  return false;
}

}  // namespace

std::optional<PeerAgent> pick_peer_agent(const json& pod_list, const std::string& daemonset, int default_port,
                                         std::vector<std::string>& passed_over) {
  const json& items = field(pod_list, "items");
  if (!items.is_array()) return std::nullopt;
  for (const json& pod : items) {
    const std::string name = string_field(field(pod, "metadata"), "name");
    const json& status = field(pod, "status");
    if (!owned_by_daemonset(pod, daemonset)) {
      passed_over.push_back(name + ": not a pod of DaemonSet " + daemonset + " (no such controller ownerReference)");
      continue;
    }
    if (string_field(status, "phase") != "Running" || !pod_ready(pod)) {
      passed_over.push_back(name + ": not Running and Ready");
      continue;
    }
    PeerAgent peer;
    peer.node = string_field(field(pod, "spec"), "nodeName");
    peer.pod = name;
    peer.host = string_field(status, "podIP");
    if (peer.host.empty()) {
      passed_over.push_back(name + ": no pod IP");
      continue;
    }
    peer.port = peer_port_of(pod, default_port);
    return peer;
  }
  return std::nullopt;
}

PeerLocator::PeerLocator(KubeApiConfig api, std::string agent_namespace, std::string agent_selector,
                         std::string agent_daemonset, int default_port)
    : api_(std::move(api)),
      agent_namespace_(std::move(agent_namespace)),
      agent_selector_(std::move(agent_selector)),
      agent_daemonset_(std::move(agent_daemonset)),
      default_port_(default_port) {}

PeerAgent PeerLocator::locate(const std::string& namespace_name, const std::string& pod) const {
  const std::string who = namespace_name + "/" + pod;
  int status = 0;
  const json found = get_json(
      api_, "/api/v1/namespaces/" + url_encode_component(namespace_name) + "/pods/" + url_encode_component(pod),
      "find pod " + who, &status);
  if (status == 404) throw RequestError(404, "no pod " + who + " in the cluster");
  PeerAgent peer;
  try {
    peer.node = found.at("spec").value("nodeName", "");
  } catch (const json::exception&) {
  }
  if (peer.node.empty()) throw RequestError(404, "pod " + who + " is not scheduled on a node yet");

  const std::string agents_path = "/api/v1/namespaces/" + url_encode_component(agent_namespace_) +
                                  "/pods?labelSelector=" + url_encode_component(agent_selector_) +
                                  "&fieldSelector=" + url_encode_component("spec.nodeName=" + peer.node);
  const json agents = get_json(api_, agents_path, "find the pwru-agent on node " + peer.node, &status);
  std::vector<std::string> passed_over;
  if (status == 200) {
    if (std::optional<PeerAgent> agent = pick_peer_agent(agents, agent_daemonset_, default_port_, passed_over)) {
      agent->node = peer.node;
      return *agent;
    }
  }
  // Only in the log: which pods carry the agents' labels is the operator's
  // business, not the caller's. One of them not being an agent may be an
  // attempt to receive relayed requests.
  for (const std::string& why : passed_over) spdlog::warn("traces: not relaying to pod {}/{}", agent_namespace_, why);
  throw RequestError(502, "pod " + who + " runs on node " + peer.node + ", where no pwru-agent of DaemonSet " +
                              agent_namespace_ + "/" + agent_daemonset_ +
                              " is running and ready; ask that node's agent directly");
}

std::map<std::string, PeerAgent> PeerLocator::agents_by_node() const {
  // Kept in the API server's order within a node, as locate() sees them.
  std::map<std::string, json> by_node;
  std::string next;
  constexpr int kPageLimit = 500;
  constexpr int kMaxPages = 100;  // 50000 nodes: beyond any cluster
  for (int page = 0; page < kMaxPages; ++page) {
    std::string path = "/api/v1/namespaces/" + url_encode_component(agent_namespace_) +
                       "/pods?labelSelector=" + url_encode_component(agent_selector_) +
                       "&limit=" + std::to_string(kPageLimit);
    if (!next.empty()) path += "&continue=" + url_encode_component(next);
    int status = 0;
    const json agents = get_json(api_, path, "list the pwru-agents of namespace " + agent_namespace_, &status);
    if (status != 200) break;
    const json& items = field(agents, "items");
    if (items.is_array()) {
      for (const json& pod : items) {
        const std::string node = string_field(field(pod, "spec"), "nodeName");
        if (node.empty()) continue;
        json& list = by_node[node];
        if (list.is_null()) list = json{{"items", json::array()}};
        list["items"].push_back(pod);
      }
    }
    next = string_field(field(agents, "metadata"), "continue");
    if (next.empty()) break;
  }
  std::map<std::string, PeerAgent> agents;
  for (const auto& [node, pods] : by_node) {
    std::vector<std::string> passed_over;
    if (std::optional<PeerAgent> agent = pick_peer_agent(pods, agent_daemonset_, default_port_, passed_over)) {
      agent->node = node;
      agents.emplace(node, std::move(*agent));
    } else {
      // As in locate(): the log only.
      for (const std::string& why : passed_over)
        spdlog::warn("traces: not relaying to pod {}/{} on node {}", agent_namespace_, why, node);
    }
  }
  return agents;
}

std::string own_pod_namespace(const EnvLookup& env, const std::string& namespace_file) {
  if (auto ns = env("POD_NAMESPACE"); ns && !ns->empty()) return *ns;
  std::ifstream in(namespace_file);
  std::string ns;
  std::getline(in, ns);
  return ns;
}

}  // namespace pwru
