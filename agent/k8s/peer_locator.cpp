#include "k8s/peer_locator.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "common/error.h"
#include "k8s/kube_client.h"

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
    throw RequestError(503, "cannot " + purpose + ": the API server's answer is not JSON (" + std::string(e.what()) +
                                ")");
  }
}

int http_port_of(const json& pod, int fallback) {
  for (const json& container : pod["spec"].value("containers", json::array()))
    for (const json& port : container.value("ports", json::array()))
      if (port.value("name", "") == "http") return port.value("containerPort", fallback);
  return fallback;
}

}  // namespace

PeerLocator::PeerLocator(KubeApiConfig api, std::string agent_namespace, std::string agent_selector, int default_port)
    : api_(std::move(api)),
      agent_namespace_(std::move(agent_namespace)),
      agent_selector_(std::move(agent_selector)),
      default_port_(default_port) {}

PeerAgent PeerLocator::locate(const std::string& namespace_name, const std::string& pod) const {
  const std::string who = namespace_name + "/" + pod;
  int status = 0;
  const json found = get_json(api_,
                              "/api/v1/namespaces/" + httplib::detail::encode_query_param(namespace_name) + "/pods/" +
                                  httplib::detail::encode_query_param(pod),
                              "find pod " + who, &status);
  if (status == 404) throw RequestError(404, "no pod " + who + " in the cluster");
  PeerAgent peer;
  try {
    peer.node = found.at("spec").value("nodeName", "");
  } catch (const json::exception&) {
  }
  if (peer.node.empty()) throw RequestError(404, "pod " + who + " is not scheduled on a node yet");

  const std::string agents_path =
      "/api/v1/namespaces/" + httplib::detail::encode_query_param(agent_namespace_) +
      "/pods?labelSelector=" + httplib::detail::encode_query_param(agent_selector_) +
      "&fieldSelector=" + httplib::detail::encode_query_param("spec.nodeName=" + peer.node);
  const json agents = get_json(api_, agents_path, "find the pwru-agent on node " + peer.node, &status);
  for (const json& agent : status == 200 ? agents.value("items", json::array()) : json::array()) {
    const json& agent_status = agent.value("status", json::object());
    if (agent_status.value("phase", "") != "Running" || agent_status.value("podIP", "").empty()) continue;
    peer.pod = agent["metadata"].value("name", "");
    peer.host = agent_status.value("podIP", "");
    peer.port = http_port_of(agent, default_port_);
    return peer;
  }
  throw RequestError(502, "pod " + who + " runs on node " + peer.node + ", where no pwru-agent (" + agent_selector_ +
                              " in namespace " + agent_namespace_ + ") is running; ask that node's agent directly");
}

std::string own_pod_namespace(const EnvLookup& env, const std::string& namespace_file) {
  if (auto ns = env("POD_NAMESPACE"); ns && !ns->empty()) return *ns;
  std::ifstream in(namespace_file);
  std::string ns;
  std::getline(in, ns);
  return ns;
}

}  // namespace pwru
