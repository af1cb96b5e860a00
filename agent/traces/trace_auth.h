// Who may start, list and cancel traces (traces.auth):
//   none        anyone who reaches the port (the configuration only allows
//               it on loopback);
//   token       the holder of a static bearer token (traces.token_file);
//   kubernetes  a bearer token the API server vouches for (TokenReview)
//               whose user may act on the trace (SubjectAccessReview):
//                 a pod's trace:   create pods/trace, in its namespace, by name
//                 node or netns:   create nodes/trace, this node by name
//                 GET /v1/traces:  list nodes/trace;  DELETE: delete nodes/trace
// Failures are RequestErrors: 401 (no or bad credentials), 403 (not
// allowed), 503 (the API server could not be asked).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/agent_config.h"
#include "k8s/kube_api_config.h"

namespace pwru {

struct TraceCaller {
  std::string user;  // "" when auth is none or token
  std::string uid;
  std::vector<std::string> groups;
  std::string extra_json = "{}";  // TokenReview's user.extra, passed on to SubjectAccessReview
};

struct TraceAction {
  std::string verb;            // create | list | delete
  std::string namespace_name;  // with pod: a pod's trace
  std::string pod;
};

class TraceAuth {
 public:
  virtual ~TraceAuth() = default;
  // From the Authorization header value ("" when absent).
  virtual TraceCaller authenticate(const std::string& authorization) const = 0;
  virtual void authorize(const TraceCaller& caller, const TraceAction& action) const = 0;
};

// Throws UsageError for a configuration that cannot work: token with an
// unreadable token file, kubernetes without an API server (`api` empty).
std::unique_ptr<TraceAuth> make_trace_auth(const AgentConfig::Traces& config, const std::optional<KubeApiConfig>& api);

}  // namespace pwru
