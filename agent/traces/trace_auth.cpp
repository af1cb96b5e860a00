#include "traces/trace_auth.h"

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "common/error.h"
#include "k8s/kube_client.h"

namespace pwru {

namespace {

using json = nlohmann::json;
constexpr std::string_view kBearer = "Bearer ";
constexpr int kReviewTimeoutSeconds = 5;

// The cache key: a copy of the token in memory would be one more place to
// steal it from (a core dump, a heap read).
std::string token_digest(const std::string& token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(token.data(), token.size(), digest, &size, EVP_sha256(), nullptr) != 1)
    throw RequestError(503, "cannot hash the bearer token (OpenSSL failed); tell the agent's operator");
  return std::string(reinterpret_cast<const char*>(digest), size);
}

std::string bearer_of(const std::string& authorization, const std::string& how) {
  if (authorization.rfind(kBearer, 0) != 0 || authorization.size() == kBearer.size())
    throw RequestError(401, "send " + how + ": -H 'Authorization: Bearer <token>'");
  return authorization.substr(kBearer.size());
}

// A review's answer, read without trusting its types: what is not a true
// boolean is no, what is not a string is the default.
bool true_in(const json& status, const char* key) {
  const auto it = status.find(key);
  return it != status.end() && it->is_boolean() && it->get<bool>();
}

std::string string_in(const json& status, const char* key, const char* otherwise) {
  const auto it = status.find(key);
  return it != status.end() && it->is_string() ? it->get<std::string>() : otherwise;
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
  KubernetesAuth(KubeApiConfig api, const TokenReviewLimits& limits)
      : api_(std::move(api)), limits_(limits), reviews_(limits.reviews_per_second, limits.review_burst) {}

  TraceCaller authenticate(const std::string& authorization) const override {
    const std::string token = bearer_of(authorization, "a Kubernetes token (e.g. $(kubectl create token NAME))");
    const std::string key = token_digest(token);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = std::chrono::steady_clock::now();
      auto it = cache_.find(key);
      if (it != cache_.end() && it->second.until > now) {
        if (!it->second.accepted) throw not_accepted(it->second.why);
        return it->second.caller;
      }
      if (!reviews_.take(now))
        throw RequestError(429, "this agent asks the API server about at most " +
                                    std::to_string(static_cast<int>(limits_.reviews_per_second)) +
                                    " new bearer tokens a second, and more are arriving; retry in a second");
    }
    const json review = {
        {"apiVersion", "authentication.k8s.io/v1"}, {"kind", "TokenReview"}, {"spec", {{"token", token}}}};
    const json status = post("/apis/authentication.k8s.io/v1/tokenreviews", review, "check the caller's token");
    if (!true_in(status, "authenticated")) {
      const std::string why = string_in(status, "error", "not authenticated");
      remember(key, Cached{false, {}, why, std::chrono::steady_clock::now() + limits_.rejected_for});
      throw not_accepted(why);
    }
    TraceCaller caller;
    try {
      const json& user = status.at("user");
      caller.user = user.value("username", "");
      caller.uid = user.value("uid", "");
      if (user.contains("groups")) caller.groups = user.at("groups").get<std::vector<std::string>>();
      if (user.contains("extra")) caller.extra_json = user.at("extra").dump();
    } catch (const json::exception&) {
      // An accepted token whose user we cannot read is no identity to
      // authorize; and the library's text is no answer for the caller.
      throw RequestError(503,
                         "cannot check the caller's token: the API server accepted it, but its TokenReview "
                         "names no readable user (status.user with username, groups as strings); tell the "
                         "agent's operator");
    }
    remember(key, Cached{true, caller, "", std::chrono::steady_clock::now() + limits_.accepted_for});
    return caller;
  }

  void authorize(const TraceCaller& caller, const TraceAction& action) const override {
    json attributes = {{"verb", action.verb}, {"subresource", "trace"}, {"group", ""}};
    std::string what;
    if (!action.pod.empty()) {
      attributes = pod_trace_attributes(action.verb, action.namespace_name, action.pod);
      what = action.verb + " pods/trace in namespace " + action.namespace_name + " (pod " + action.pod + ")";
    } else {
      attributes["resource"] = "nodes";
      attributes["name"] = api_.node_name;
      what = action.verb + " nodes/trace (node " + api_.node_name + ")";
    }
    if (std::optional<std::string> denied = review(caller, attributes, what)) throw RequestError(403, *denied);
  }

  // A caller allowed the whole namespace costs one review whatever the
  // number of pods; one allowed pod by pod (RBAC resourceNames) costs one
  // more per distinct pod. Nothing is remembered past this call: a revoked
  // RoleBinding must stop the next request.
  std::vector<std::optional<std::string>> authorize_pods(const TraceCaller& caller, const std::string& namespace_name,
                                                         const std::vector<std::string>& pods) const override {
    std::vector<std::optional<std::string>> answers(pods.size());
    if (pods.empty()) return answers;
    if (!review(caller, pod_trace_attributes("create", namespace_name, ""),
                "create pods/trace in namespace " + namespace_name))
      return answers;

    std::vector<std::string> distinct(pods);
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    std::vector<std::optional<std::string>> verdicts(distinct.size());
    std::vector<std::exception_ptr> failures(distinct.size());
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    const auto work = [&] {
      for (std::size_t i = next++; i < distinct.size() && !failed; i = next++) {
        try {
          verdicts[i] = review(caller, pod_trace_attributes("create", namespace_name, distinct[i]),
                               "create pods/trace in namespace " + namespace_name + " (pod " + distinct[i] + ")");
        } catch (...) {
          failures[i] = std::current_exception();
          failed = true;  // the answer is an error now: spare the API server the rest
        }
      }
    };
    {
      std::vector<std::jthread> workers;
      const std::size_t helpers = std::min(kParallelReviews, distinct.size()) - 1;
      try {
        for (std::size_t i = 0; i < helpers; ++i) workers.emplace_back(work);
      } catch (const std::system_error&) {
        // No thread to spare: fewer reviews at once, the same answers.
      }
      work();
    }  // joins
    for (const std::exception_ptr& failure : failures)
      if (failure) std::rethrow_exception(failure);
    for (std::size_t i = 0; i < pods.size(); ++i)
      answers[i] = verdicts[std::lower_bound(distinct.begin(), distinct.end(), pods[i]) - distinct.begin()];
    return answers;
  }

  void authorize_namespace(const TraceCaller& caller, const std::string& namespace_name) const override {
    if (std::optional<std::string> denied = review(caller, pod_trace_attributes("create", namespace_name, ""),
                                                   "create pods/trace in namespace " + namespace_name + " (every pod)"))
      throw RequestError(403, *denied);
  }

 private:
  static constexpr std::size_t kParallelReviews = 8;

  // An empty `pod` asks about every pod of the namespace.
  static json pod_trace_attributes(const std::string& verb, const std::string& namespace_name, const std::string& pod) {
    json attributes = {
        {"verb", verb}, {"subresource", "trace"}, {"group", ""}, {"resource", "pods"}, {"namespace", namespace_name}};
    if (!pod.empty()) attributes["name"] = pod;
    return attributes;
  }

  // One SubjectAccessReview: nullopt when allowed, else the 403's text.
  std::optional<std::string> review(const TraceCaller& caller, const json& attributes, const std::string& what) const {
    const json review = {{"apiVersion", "authorization.k8s.io/v1"},
                         {"kind", "SubjectAccessReview"},
                         {"spec",
                          {{"user", caller.user},
                           {"uid", caller.uid},
                           {"groups", caller.groups},
                           {"extra", json::parse(caller.extra_json)},
                           {"resourceAttributes", attributes}}}};
    const json status = post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review, "check permissions");
    if (true_in(status, "allowed")) return std::nullopt;
    const std::string reason = string_in(status, "reason", "");
    return caller.user + " may not " + what + (reason.empty() ? "" : " (" + reason + ")") +
           "; an RBAC rule granting it is needed";
  }

  struct Cached {
    bool accepted = false;
    TraceCaller caller;  // when accepted
    std::string why;     // when not: the API server's reason
    std::chrono::steady_clock::time_point until;
  };

  static RequestError not_accepted(const std::string& why) {
    return RequestError(401, "the API server did not accept the bearer token (" + why + ")");
  }

  // A full cache drops what has expired, then what would expire first:
  // never every live entry at once, which would send each caller back to
  // the API server together.
  void remember(const std::string& key, Cached entry) const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cache_.size() >= limits_.cache_max && !cache_.count(key)) {
      const auto now = std::chrono::steady_clock::now();
      std::erase_if(cache_, [&](const auto& kv) { return kv.second.until <= now; });
      while (!cache_.empty() && cache_.size() >= limits_.cache_max) {
        auto first = cache_.begin();
        for (auto it = cache_.begin(); it != cache_.end(); ++it)
          if (it->second.until < first->second.until) first = it;
        cache_.erase(first);
      }
    }
    if (limits_.cache_max > 0) cache_[key] = std::move(entry);
  }

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
      json status = json::parse(res->body).at("status");
      if (status.is_object()) return status;
    } catch (const json::exception&) {
    }
    throw RequestError(503, "cannot " + purpose + ": the API server's answer (HTTP " + std::to_string(res->status) +
                                ") is not a review with a \"status\" object; tell the agent's operator");
  }

  KubeApiConfig api_;
  TokenReviewLimits limits_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, Cached> cache_;  // by token_digest()
  mutable TokenBucket reviews_;
};

}  // namespace

std::vector<std::optional<std::string>> TraceAuth::authorize_pods(const TraceCaller& caller,
                                                                  const std::string& namespace_name,
                                                                  const std::vector<std::string>& pods) const {
  std::vector<std::optional<std::string>> answers;
  answers.reserve(pods.size());
  for (const std::string& pod : pods) {
    try {
      authorize(caller, TraceAction{"create", namespace_name, pod});
      answers.emplace_back(std::nullopt);
    } catch (const RequestError& e) {
      if (e.status() != 403) throw;
      answers.emplace_back(e.what());
    }
  }
  return answers;
}

void TraceAuth::authorize_namespace(const TraceCaller&, const std::string&) const {}

bool TokenBucket::take(std::chrono::steady_clock::time_point now) {
  if (last_ && now > *last_)
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - *last_).count() * per_second_);
  if (!last_ || now > *last_) last_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

std::unique_ptr<TraceAuth> make_kubernetes_auth(const KubeApiConfig& api, const TokenReviewLimits& limits) {
  return std::make_unique<KubernetesAuth>(api, limits);
}

TokenReviewLimits token_review_limits(const AgentConfig::Traces::TokenReview& config) {
  TokenReviewLimits limits;
  limits.accepted_for = std::chrono::seconds(config.cache_seconds);
  limits.rejected_for = std::chrono::seconds(config.negative_cache_seconds);
  limits.reviews_per_second = config.reviews_per_second;
  limits.review_burst = config.burst;
  return limits;
}

std::unique_ptr<TraceAuth> make_trace_auth(const AgentConfig::Traces& config, const std::optional<KubeApiConfig>& api) {
  switch (config.auth) {
    case AgentConfig::Traces::Auth::kNone:
      return std::make_unique<NoAuth>();
    case AgentConfig::Traces::Auth::kToken:
      return std::make_unique<StaticTokenAuth>(config.token_file);
    case AgentConfig::Traces::Auth::kKubernetes:
      if (!api)
        throw UsageError(
            "traces.auth is kubernetes, but pod identity is off (no API server): set "
            "kubernetes.api_server or run in a cluster");
      return make_kubernetes_auth(*api, token_review_limits(config.token_review));
  }
  return std::make_unique<NoAuth>();
}

}  // namespace pwru
