// Who may start, list and cancel traces (traces.auth):
//   none        anyone who reaches the port (the configuration only allows
//               it on loopback);
//   token       the holder of a static bearer token (traces.token_file);
//   kubernetes  a bearer token the API server vouches for (TokenReview)
//               whose user may act on the trace (SubjectAccessReview):
//                 a pod's trace:   create pods/trace, in its namespace, by name
//                 many pods:       one review for the namespace, and only if
//                                  that is refused, one per pod (8 at once)
//                 node or netns:   create nodes/trace, this node by name
//                 GET /v1/traces:  list nodes/trace;  DELETE: delete nodes/trace
// Failures are RequestErrors: 401 (no or bad credentials), 403 (not
// allowed), 429 (too many new tokens to review), 503 (the API server could
// not be asked).
#pragma once

#include <chrono>
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
  // May the caller trace each of `pods` (names in `namespace_name`)? Per
  // pod: nullopt when allowed, else why not (the text of authorize()'s
  // 403). 401, 429 and 503 still throw: they are about the caller or the
  // API server, not a pod. This default asks authorize() pod by pod.
  virtual std::vector<std::optional<std::string>> authorize_pods(const TraceCaller& caller,
                                                                 const std::string& namespace_name,
                                                                 const std::vector<std::string>& pods) const;
  // May the caller trace every pod of the namespace? RequestError 403 if
  // not. Asked before telling a caller that a service does not exist: one
  // allowed only some pods by name learns nothing else of the namespace.
  // Allowed by this default (auth none and token allow everything).
  virtual void authorize_namespace(const TraceCaller& caller, const std::string& namespace_name) const;
};

// Throws UsageError for a configuration that cannot work: token with an
// unreadable token file, kubernetes without an API server (`api` empty).
std::unique_ptr<TraceAuth> make_trace_auth(const AgentConfig::Traces& config, const std::optional<KubeApiConfig>& api);

// Allows `per_second` events a second on average, `burst` at once. The
// caller passes the time, so tests need no clock.
class TokenBucket {
 public:
  TokenBucket(double per_second, double burst) : per_second_(per_second), burst_(burst), tokens_(burst) {}
  bool take(std::chrono::steady_clock::time_point now);

 private:
  double per_second_;
  double burst_;
  double tokens_;
  std::optional<std::chrono::steady_clock::time_point> last_;
};

// How traces.auth kubernetes spares the API server. Tokens are remembered
// by their SHA-256 only: the cache holds no credential.
struct TokenReviewLimits {
  // A token the API server accepted is trusted this long without asking
  // again (the API server's own webhook token cache defaults to 2 minutes).
  std::chrono::milliseconds accepted_for{10000};
  // One it refused is refused this long without asking: a client retrying
  // a bad token costs no review.
  std::chrono::milliseconds rejected_for{5000};
  std::size_t cache_max = 1024;
  // TokenReviews for tokens not in the cache; beyond them a 429: a flood of
  // made-up tokens must not become a flood of reviews.
  double reviews_per_second = 20;
  double review_burst = 40;
};

// traces.token_review, in the units above.
TokenReviewLimits token_review_limits(const AgentConfig::Traces::TokenReview& config);

std::unique_ptr<TraceAuth> make_kubernetes_auth(const KubeApiConfig& api, const TokenReviewLimits& limits = {});

}  // namespace pwru
