#include "traces/trace_auth.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <mutex>

#include "common/error.h"
#include "k8s/kube_client.h"

namespace pwru {

namespace {

using json = nlohmann::json;
constexpr std::string_view kBearer = "Bearer ";
constexpr int kReviewTimeoutSeconds = 5;
// A token the API server accepted is trusted this long without asking
// again (the API server's own webhook token cache defaults to 2 minutes).
constexpr auto kTokenCacheFor = std::chrono::seconds(10);
constexpr std::size_t kTokenCacheMax = 1024;

std::string bearer_of(const std::string& authorization, const std::string& how) {
  if (authorization.rfind(kBearer, 0) != 0 || authorization.size() == kBearer.size())
    throw RequestError(401, "send " + how + ": -H 'Authorization: Bearer <token>'");
  return authorization.substr(kBearer.size());
}

// Compares in time independent of where the first difference is.
bool same_secret(const std::string& given, const std::string& secret) {
  unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (std::size_t i = 0; i < given.size(); ++i)
    diff |= static_cast<unsigned char>(given[i] ^ secret[i % secret.size()]);
  return diff == 0;
}

class NoAuth final : public TraceAuth {
 public:
  TraceCaller authenticate(const std::string&) const override { return {}; }
  void authorize(const TraceCaller&, const TraceAction&) const override {}
};

class StaticTokenAuth final : public TraceAuth {
 public:
  explicit StaticTokenAuth(std::string path) : path_(std::move(path)) {
    if (read_bearer_token(path_).empty())
      throw UsageError("traces.token_file " + path_ + " is missing, unreadable or empty; put the bearer token there");
  }
  TraceCaller authenticate(const std::string& authorization) const override {
    const std::string given = bearer_of(authorization, "the agent's trace token");
    // Read at every request, so rotating the file needs no restart.
    const std::string token = read_bearer_token(path_);
    if (token.empty()) throw RequestError(503, "the agent's token file is unreadable; tell its operator");
    if (!same_secret(given, token)) throw RequestError(403, "the bearer token is not this agent's trace token");
    return {};
  }
  void authorize(const TraceCaller&, const TraceAction&) const override {}

 private:
  std::string path_;
};

class KubernetesAuth final : public TraceAuth {
 public:
  explicit KubernetesAuth(KubeApiConfig api) : api_(std::move(api)) {}

  TraceCaller authenticate(const std::string& authorization) const override {
    const std::string token = bearer_of(authorization, "a Kubernetes token (e.g. $(kubectl create token NAME))");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = cache_.find(token);
      if (it != cache_.end() && it->second.until > std::chrono::steady_clock::now()) return it->second.caller;
    }
    const json review = {{"apiVersion", "authentication.k8s.io/v1"},
                         {"kind", "TokenReview"},
                         {"spec", {{"token", token}}}};
    const json status = post("/apis/authentication.k8s.io/v1/tokenreviews", review, "check the caller's token");
    if (!status.value("authenticated", false)) {
      const std::string why = status.value("error", std::string("not authenticated"));
      throw RequestError(401, "the API server did not accept the bearer token (" + why + ")");
    }
    const json& user = status.at("user");
    TraceCaller caller;
    caller.user = user.value("username", "");
    caller.uid = user.value("uid", "");
    if (user.contains("groups")) caller.groups = user.at("groups").get<std::vector<std::string>>();
    if (user.contains("extra")) caller.extra_json = user.at("extra").dump();
    std::lock_guard<std::mutex> lock(mutex_);
    if (cache_.size() >= kTokenCacheMax) cache_.clear();
    cache_[token] = Cached{caller, std::chrono::steady_clock::now() + kTokenCacheFor};
    return caller;
  }

  void authorize(const TraceCaller& caller, const TraceAction& action) const override {
    json attributes = {{"verb", action.verb}, {"subresource", "trace"}, {"group", ""}};
    std::string what;
    if (!action.pod.empty()) {
      attributes["resource"] = "pods";
      attributes["namespace"] = action.namespace_name;
      attributes["name"] = action.pod;
      what = action.verb + " pods/trace in namespace " + action.namespace_name + " (pod " + action.pod + ")";
    } else {
      attributes["resource"] = "nodes";
      attributes["name"] = api_.node_name;
      what = action.verb + " nodes/trace (node " + api_.node_name + ")";
    }
    const json review = {{"apiVersion", "authorization.k8s.io/v1"},
                         {"kind", "SubjectAccessReview"},
                         {"spec",
                          {{"user", caller.user},
                           {"uid", caller.uid},
                           {"groups", caller.groups},
                           {"extra", json::parse(caller.extra_json)},
                           {"resourceAttributes", attributes}}}};
    const json status = post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review, "check permissions");
    if (!status.value("allowed", false)) {
      const std::string reason = status.value("reason", std::string());
      throw RequestError(403, caller.user + " may not " + what + (reason.empty() ? "" : " (" + reason + ")") +
                                  "; an RBAC rule granting it is needed");
    }
  }

 private:
  struct Cached {
    TraceCaller caller;
    std::chrono::steady_clock::time_point until;
  };

  json post(const std::string& path, const json& body, const std::string& purpose) const {
    auto client = make_kube_client(api_, kReviewTimeoutSeconds);
    auto res = client->Post(path.c_str(), body.dump(), "application/json");
    if (!res || res->status != 201) {
      // 200 is what some API servers answer too.
      if (!(res && res->status == 200))
        throw RequestError(503, "cannot " + purpose + ": the API server answered " + describe_kube_result(res) +
                                    "; retry, or tell the agent's operator (it needs create on tokenreviews and "
                                    "subjectaccessreviews)");
    }
    try {
      return json::parse(res->body).at("status");
    } catch (const json::exception& e) {
      throw RequestError(503, "cannot " + purpose + ": the API server's answer is not a review (" +
                                  std::string(e.what()) + ")");
    }
  }

  KubeApiConfig api_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, Cached> cache_;
};

}  // namespace

std::unique_ptr<TraceAuth> make_trace_auth(const AgentConfig::Traces& config,
                                           const std::optional<KubeApiConfig>& api) {
  switch (config.auth) {
    case AgentConfig::Traces::Auth::kNone:
      return std::make_unique<NoAuth>();
    case AgentConfig::Traces::Auth::kToken:
      return std::make_unique<StaticTokenAuth>(config.token_file);
    case AgentConfig::Traces::Auth::kKubernetes:
      if (!api)
        throw UsageError("traces.auth is kubernetes, but pod identity is off (no API server): set "
                         "kubernetes.api_server or run in a cluster");
      return std::make_unique<KubernetesAuth>(*api);
  }
  return std::make_unique<NoAuth>();
}

}  // namespace pwru
