#include "k8s/workload_resolver.h"

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "k8s/json_fields.h"
#include "k8s/kube_client.h"
#include "k8s/url_encode.h"

namespace pwru {

namespace {

using json = nlohmann::json;
// The API server's own default page size bound; a page of 500 pods is a few
// MB at most.
constexpr int kPageLimit = 500;
// 50000 pods or 100 pages of EndpointSlices: beyond any one Service, and
// the fan-out traces far fewer (traces.fanout.max_pods). A bound on the
// requests one trace request can cost.
constexpr int kMaxPages = 100;

// The message of a Status the API server answered with, else the start of
// the body: what it said is what the caller needs to fix a selector.
std::string status_message(const std::string& body) {
  try {
    const json status = json::parse(body);
    const std::string message = string_field(status, "message");
    if (!message.empty()) return message;
  } catch (const json::exception&) {
  }
  return body.substr(0, 300);
}

struct Answer {
  int status = 0;
  json body;
};

// One GET. 200, 400 and 404 are answers for the caller to judge; anything
// else means the API server could not be asked, a 503 saying whether to
// retry or to fix the agent's RBAC.
Answer get(const KubeApiConfig& api, std::chrono::milliseconds timeout, const std::string& path,
           const std::string& purpose) {
  auto client = make_kube_client(api, 1);
  client->set_connection_timeout(timeout);
  client->set_read_timeout(timeout);
  auto res = client->Get(path.c_str());
  if (!res)
    throw RequestError(503, "cannot " + purpose + ": the API server did not answer (" +
                                httplib::to_string(res.error()) + "); try again");
  if (res->status == 401 || res->status == 403)
    throw RequestError(503, "cannot " + purpose + ": the API server refused the agent (" + describe_kube_result(res) +
                                "); tell the agent's operator: its ClusterRole needs get on services and list on "
                                "pods and discovery.k8s.io endpointslices");
  if (res->status == 429)
    throw RequestError(503, "cannot " + purpose + ": the API server is too busy to answer (HTTP 429); try again");
  if (res->status != 200 && res->status != 400 && res->status != 404)
    throw RequestError(503,
                       "cannot " + purpose + ": the API server answered " + describe_kube_result(res) + "; try again");
  Answer answer{res->status, json()};
  if (res->status != 200) {
    answer.body = status_message(res->body);
    return answer;
  }
  try {
    answer.body = json::parse(res->body);
  } catch (const json::exception& e) {
    throw RequestError(503,
                       "cannot " + purpose + ": the API server's answer is not JSON (" + std::string(e.what()) + ")");
  }
  return answer;
}

// Every item of a paged list (limit/continue). `query` is what precedes
// the paging parameters, already encoded; a 400 goes to `refused` with the
// API server's message.
std::vector<json> list_all(const KubeApiConfig& api, std::chrono::milliseconds timeout, const std::string& path,
                           const std::string& query, const std::string& purpose,
                           const std::function<void(const std::string&)>& refused) {
  std::vector<json> items;
  std::string next;
  for (int page = 0; page < kMaxPages; ++page) {
    std::string url = path + "?" + (query.empty() ? "" : query + "&") + "limit=" + std::to_string(kPageLimit);
    if (!next.empty()) url += "&continue=" + url_encode_component(next);
    const Answer answer = get(api, timeout, url, purpose);
    if (answer.status == 400) refused(answer.body.get<std::string>());
    if (answer.status == 404) return items;  // a namespace that does not exist has nothing in it
    const json& page_items = field(answer.body, "items");
    if (page_items.is_array())
      for (const json& item : page_items) items.push_back(item);
    next = string_field(field(answer.body, "metadata"), "continue");
    if (next.empty()) return items;
  }
  throw RequestError(400, "cannot " + purpose + ": more than " + std::to_string(kMaxPages * kPageLimit) +
                              " objects; narrow the selector");
}

// Into `pods`, or into `skipped` with why it cannot be traced: a pod with
// no node has no network namespace yet, one that ended has none any more,
// and one on the host's network would trace the whole node.
void classify(const json& pod, const std::string& ns, ResolvedWorkload& out) {
  const json& metadata = field(pod, "metadata");
  const json& spec = field(pod, "spec");
  const json& status = field(pod, "status");
  ResolvedPod resolved;
  resolved.name = string_field(metadata, "name");
  resolved.uid = string_field(metadata, "uid");
  resolved.node = string_field(spec, "nodeName");
  resolved.phase = string_field(status, "phase");
  resolved.pod_ip = string_field(status, "podIP");
  resolved.host_network = field(spec, "hostNetwork") == true;
  resolved.ready = pod_ready(pod);
  const std::string key = ns + "/" + resolved.name;
  if (resolved.name.empty()) return;
  if (resolved.phase == "Succeeded" || resolved.phase == "Failed")
    out.skipped[key] = resolved.phase;
  else if (resolved.node.empty())
    out.skipped[key] = "not scheduled";
  else if (resolved.host_network)
    out.skipped[key] = "uses the host's network";
  else
    out.pods.push_back(std::move(resolved));
}

void sort_pods(ResolvedWorkload& workload) {
  std::sort(workload.pods.begin(), workload.pods.end(),
            [](const ResolvedPod& a, const ResolvedPod& b) { return a.name < b.name; });
}

std::string pods_path(const std::string& ns) { return "/api/v1/namespaces/" + url_encode_component(ns) + "/pods"; }

// A Service's spec.selector as a label selector; nlohmann's objects iterate
// in key order, so the same Service gives the same string.
std::string selector_of(const json& selector) {
  std::string out;
  for (const auto& [key, value] : selector.items()) {
    if (!out.empty()) out += ",";
    out += key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out;
}

}  // namespace

WorkloadResolver::WorkloadResolver(KubeApiConfig api, std::chrono::milliseconds timeout)
    : api_(std::move(api)), timeout_(timeout) {}

ResolvedWorkload WorkloadResolver::pods_of_selector(const std::string& ns, const std::string& selector) const {
  if (selector.find_first_not_of(" \t") == std::string::npos)
    throw RequestError(400, "\"selector\" is empty, which would select every pod of namespace " + ns +
                                "; give labels, e.g. \"selector\":\"app=web\"");
  ResolvedWorkload workload;
  workload.description = "selector " + selector + " in " + ns;
  const auto refused = [&selector](const std::string& message) {
    throw RequestError(400, "\"selector\" " + selector + " was refused by the API server (" + message +
                                "); use label selector syntax, e.g. app=web,tier!=db or env in (prod,staging)");
  };
  for (const json& pod : list_all(api_, timeout_, pods_path(ns), "labelSelector=" + url_encode_component(selector),
                                  "list the pods of namespace " + ns + " matching " + selector, refused))
    classify(pod, ns, workload);
  sort_pods(workload);
  return workload;
}

ResolvedWorkload WorkloadResolver::pods_of_service(const std::string& ns, const std::string& name) const {
  const std::string who = ns + "/" + name;
  const Answer service =
      get(api_, timeout_, "/api/v1/namespaces/" + url_encode_component(ns) + "/services/" + url_encode_component(name),
          "find service " + who);
  if (service.status == 404)
    throw RequestError(404, "no service " + who + " in the cluster; kubectl get services -n " + ns + " lists them");
  if (service.status == 400)
    throw RequestError(
        400, "\"service\" " + who + " was refused by the API server (" + service.body.get<std::string>() + ")");

  const json& selector = field(field(service.body, "spec"), "selector");
  if (selector.is_object() && !selector.empty()) {
    ResolvedWorkload workload = pods_of_selector(ns, selector_of(selector));
    workload.description = "service " + who + " (selector " + selector_of(selector) + ")";
    return workload;
  }

  // No selector: someone else (a controller, a person) keeps its endpoints,
  // and the EndpointSlices say which pods they are.
  ResolvedWorkload workload;
  workload.description = "service " + who + " (no selector: the pods its EndpointSlices name)";
  const auto refused = [&who](const std::string& message) {
    throw RequestError(503, "cannot list the EndpointSlices of service " + who + ": the API server answered 400 (" +
                                message + "); try again");
  };
  std::set<std::string> names;
  for (const json& slice :
       list_all(api_, timeout_, "/apis/discovery.k8s.io/v1/namespaces/" + url_encode_component(ns) + "/endpointslices",
                "labelSelector=" + url_encode_component("kubernetes.io/service-name=" + name),
                "list the EndpointSlices of service " + who, refused)) {
    const json& endpoints = field(slice, "endpoints");
    if (!endpoints.is_array()) continue;
    for (const json& endpoint : endpoints) {
      const json& target = field(endpoint, "targetRef");
      const std::string target_ns = string_field(target, "namespace");
      if (string_field(target, "kind") == "Pod" && !string_field(target, "name").empty() &&
          (target_ns.empty() || target_ns == ns)) {
        names.insert(string_field(target, "name"));
        continue;
      }
      const json& addresses = field(endpoint, "addresses");
      const std::string address = addresses.is_array() && !addresses.empty() && addresses[0].is_string()
                                      ? addresses[0].get<std::string>()
                                      : "(no address)";
      workload.skipped["endpoint " + address] = "no pod of namespace " + ns + " behind it (no Pod targetRef)";
    }
  }
  if (names.empty()) return workload;
  const auto pods_refused = [&ns](const std::string& message) {
    throw RequestError(
        503, "cannot list the pods of namespace " + ns + ": the API server answered 400 (" + message + "); try again");
  };
  for (const json& pod :
       list_all(api_, timeout_, pods_path(ns), "", "list the pods of namespace " + ns, pods_refused)) {
    const auto it = names.find(string_field(field(pod, "metadata"), "name"));
    if (it == names.end()) continue;
    names.erase(it);
    classify(pod, ns, workload);
  }
  for (const std::string& gone : names)
    workload.skipped[ns + "/" + gone] = "named by an EndpointSlice, but there is no such pod (any more)";
  sort_pods(workload);
  return workload;
}

}  // namespace pwru
