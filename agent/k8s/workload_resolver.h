// Which pods a Service or a label selector names, for tracing all of them
// with one request (issue 20). Asks the API server each time: the answer is
// a snapshot at the start of a trace, and a stale one would trace pods that
// are gone and miss new ones.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "k8s/kube_api_config.h"

namespace pwru {

struct ResolvedPod {
  std::string name, uid, node, phase, pod_ip;
  bool host_network = false;
  bool ready = false;
};

struct ResolvedWorkload {
  std::string description;  // "service shop/web (selector app=web)", "selector app=web in shop"
  // Traceable: scheduled, not hostNetwork, not Succeeded/Failed; by name.
  std::vector<ResolvedPod> pods;
  // "shop/web-3" -> "not scheduled" | "uses the host's network" | "Succeeded" | ...; an EndpointSlice
  // endpoint with no pod behind it is keyed "endpoint <address>".
  std::map<std::string, std::string> skipped;
};

class WorkloadResolver {
 public:
  explicit WorkloadResolver(KubeApiConfig api, std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Throw RequestError: 404 no such service, 400 a selector the API server
  // refused (the message names "selector"), 503 the API server could not be
  // asked (no answer in time, 5xx, 429: "try again"; 401/403: the agent's
  // own rights).
  //
  // A Service with a selector resolves to the pods it selects (ready or
  // not: you trace what you debug); one without (hand-made endpoints)
  // to the pods its EndpointSlices name.
  ResolvedWorkload pods_of_service(const std::string& ns, const std::string& name) const;
  ResolvedWorkload pods_of_selector(const std::string& ns, const std::string& selector) const;

 private:
  KubeApiConfig api_;
  std::chrono::milliseconds timeout_;
};

}  // namespace pwru
