// traces.auth kubernetes against the fake API server: what the token cache
// and the review rate limit spare it, counted by the server itself.
#include "traces/trace_auth.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/error.h"
#include "fake_apiserver.h"

namespace pwru {
namespace {

using std::chrono::milliseconds;

class KubernetesTraceAuth : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(api_.start());
    api_.control("user", R"({"token":"alice-token","username":"alice"})");
    api_.control("user", R"({"token":"bob-token","username":"bob"})");
  }

  int token_reviews() {
    httplib::SSLClient client("127.0.0.1", api_.port());
    client.set_ca_cert_path((api_.dir() / "ca.crt").c_str());
    auto res = client.Get("/__control/stats");
    if (!res || res->status != 200) {
      ADD_FAILURE() << "no stats from the fake API server";
      return -1;
    }
    return nlohmann::json::parse(res->body).at("token_reviews").get<int>();
  }

  // The status of authenticating with `token`, 200 when accepted.
  static int status(const TraceAuth& auth, const std::string& token) {
    try {
      auth.authenticate("Bearer " + token);
      return 200;
    } catch (const RequestError& e) {
      return e.status();
    }
  }

  testing::FakeApiServer api_;
};

TEST_F(KubernetesTraceAuth, AcceptedAndRejectedTokensAreEachReviewedOnce) {
  const auto auth = make_kubernetes_auth(api_.config());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(status(*auth, "alice-token"), 200);
    EXPECT_EQ(status(*auth, "mallory-token"), 401);
  }
  EXPECT_EQ(auth->authenticate("Bearer alice-token").user, "alice");
  EXPECT_EQ(token_reviews(), 2);
  try {
    auth->authenticate("Bearer mallory-token");
    ADD_FAILURE() << "a rejected token was accepted from the cache";
  } catch (const RequestError& e) {
    EXPECT_NE(std::string(e.what()).find("did not accept the bearer token (invalid bearer token)"), std::string::npos)
        << e.what();
  }
}

TEST_F(KubernetesTraceAuth, ExpiredEntriesAreReviewedAgain) {
  TokenReviewLimits limits;
  limits.accepted_for = milliseconds(0);
  limits.rejected_for = milliseconds(0);
  const auto auth = make_kubernetes_auth(api_.config(), limits);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(status(*auth, "alice-token"), 200);
    EXPECT_EQ(status(*auth, "mallory-token"), 401);
  }
  EXPECT_EQ(token_reviews(), 6);
}

// A rate of one review an hour: the burst is all this test gets, with no
// clock to race.
TEST_F(KubernetesTraceAuth, NewTokensBeyondTheRateAre429WithoutAReview) {
  TokenReviewLimits limits;
  limits.reviews_per_second = 1.0 / 3600;
  limits.review_burst = 3;
  const auto auth = make_kubernetes_auth(api_.config(), limits);
  EXPECT_EQ(status(*auth, "alice-token"), 200);
  EXPECT_EQ(status(*auth, "made-up-1"), 401);
  EXPECT_EQ(status(*auth, "made-up-2"), 401);
  for (int i = 3; i < 50; ++i) EXPECT_EQ(status(*auth, "made-up-" + std::to_string(i)), 429) << i;
  EXPECT_EQ(token_reviews(), 3);
  // Cached answers need no review, so the flood does not lock out alice.
  EXPECT_EQ(status(*auth, "alice-token"), 200);
  EXPECT_EQ(status(*auth, "made-up-1"), 401);
  try {
    auth->authenticate("Bearer bob-token");
    ADD_FAILURE() << "reviewed beyond the rate";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 429);
    EXPECT_NE(std::string(e.what()).find("new bearer tokens a second"), std::string::npos) << e.what();
  }
}

// A full cache drops the entry that expires first, not everything.
TEST_F(KubernetesTraceAuth, AFullCacheEvictsOneEntryNotAll) {
  TokenReviewLimits limits;
  limits.cache_max = 2;
  const auto auth = make_kubernetes_auth(api_.config(), limits);
  EXPECT_EQ(status(*auth, "alice-token"), 200);    // review 1
  EXPECT_EQ(status(*auth, "mallory-token"), 401);  // review 2, rejected_for is shorter: expires first
  EXPECT_EQ(status(*auth, "bob-token"), 200);      // review 3, evicts mallory's
  EXPECT_EQ(token_reviews(), 3);
  EXPECT_EQ(status(*auth, "alice-token"), 200);
  EXPECT_EQ(status(*auth, "bob-token"), 200);
  EXPECT_EQ(token_reviews(), 3);
  EXPECT_EQ(status(*auth, "mallory-token"), 401);  // review 4, evicts alice's (older than bob's)
  EXPECT_EQ(token_reviews(), 4);
  EXPECT_EQ(status(*auth, "bob-token"), 200);
  EXPECT_EQ(token_reviews(), 4);
}

// Authorization per pod (a Service's pods, issue 20): one review when the
// namespace is allowed, else one per distinct pod, each answer its own.
class KubernetesPodsAuth : public KubernetesTraceAuth {
 protected:
  int access_reviews() { return api_.stat("access_reviews"); }
  // RBAC's resourceNames: bob may trace this one pod of shop.
  void allow_bob(const std::string& pod) {
    api_.control("allow", nlohmann::json{{"username", "bob"},
                                         {"verb", "create"},
                                         {"resource", "pods"},
                                         {"subresource", "trace"},
                                         {"namespace", "shop"},
                                         {"name", pod}}
                              .dump());
  }
};

TEST_F(KubernetesPodsAuth, ANamespaceAllowedIsOneReviewForAllPods) {
  api_.control("allow", R"({"username":"alice","verb":"create","resource":"pods","subresource":"trace",
                            "namespace":"shop"})");
  const auto auth = make_kubernetes_auth(api_.config());
  const TraceCaller alice = auth->authenticate("Bearer alice-token");
  const std::vector<std::string> pods = {"web-0", "web-1", "web-2", "web-3", "web-4"};
  const auto answers = auth->authorize_pods(alice, "shop", pods);
  ASSERT_EQ(answers.size(), pods.size());
  for (const auto& answer : answers) EXPECT_FALSE(answer) << *answer;
  EXPECT_EQ(access_reviews(), 1);
  // Nothing remembered: the next request asks again.
  auth->authorize_pods(alice, "shop", pods);
  EXPECT_EQ(access_reviews(), 2);
  EXPECT_TRUE(auth->authorize_pods(alice, "shop", {}).empty());
  EXPECT_EQ(access_reviews(), 2);
}

TEST_F(KubernetesPodsAuth, PerNameRulesAreOneReviewPerPodAndDenialsSayWhy) {
  for (const char* pod : {"web-0", "web-2"}) allow_bob(pod);
  const auto auth = make_kubernetes_auth(api_.config());
  const TraceCaller bob = auth->authenticate("Bearer bob-token");
  const auto answers = auth->authorize_pods(bob, "shop", {"web-0", "web-1", "web-2"});
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_FALSE(answers[0]);
  ASSERT_TRUE(answers[1]);
  EXPECT_EQ(*answers[1],
            "bob may not create pods/trace in namespace shop (pod web-1) (no RBAC rule allows it); an RBAC rule "
            "granting it is needed");
  EXPECT_FALSE(answers[2]);
  EXPECT_EQ(access_reviews(), 1 + 3);
  // The same answer as authorize() for the one pod.
  try {
    auth->authorize(bob, TraceAction{"create", "shop", "web-1"});
    ADD_FAILURE() << "web-1 authorized";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 403);
    EXPECT_EQ(*answers[1], e.what());
  }
}

// Asked before a fan-out tells a caller that a service does not exist: one
// allowed only some pods by name gets 403, one allowed the namespace passes.
TEST_F(KubernetesPodsAuth, NamespaceRightIsOneReviewAndPerNameRulesAreNotIt) {
  allow_bob("web-0");
  api_.control("allow", R"({"username":"alice","verb":"create","resource":"pods","subresource":"trace",
                            "namespace":"shop"})");
  const auto auth = make_kubernetes_auth(api_.config());
  EXPECT_NO_THROW(auth->authorize_namespace(auth->authenticate("Bearer alice-token"), "shop"));
  EXPECT_EQ(access_reviews(), 1);
  try {
    auth->authorize_namespace(auth->authenticate("Bearer bob-token"), "shop");
    ADD_FAILURE() << "bob allowed the whole namespace";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 403);
    EXPECT_NE(std::string(e.what()).find("every pod"), std::string::npos) << e.what();
  }
  EXPECT_EQ(access_reviews(), 2);
}

TEST_F(KubernetesPodsAuth, ManyPodsInParallelEachDistinctPodOnce) {
  for (int i = 0; i < 40; i += 2) allow_bob("web-" + std::to_string(i));
  const auto auth = make_kubernetes_auth(api_.config());
  const TraceCaller bob = auth->authenticate("Bearer bob-token");
  std::vector<std::string> pods;
  for (int i = 0; i < 40; ++i) pods.push_back("web-" + std::to_string(i));
  pods.push_back("web-0");  // twice: one review
  pods.push_back("web-1");
  const auto answers = auth->authorize_pods(bob, "shop", pods);
  ASSERT_EQ(answers.size(), pods.size());
  for (std::size_t i = 0; i < pods.size(); ++i) {
    const bool allowed = std::stoi(pods[i].substr(4)) % 2 == 0;
    EXPECT_EQ(!answers[i].has_value(), allowed) << pods[i];
    if (answers[i]) {
      EXPECT_NE(answers[i]->find("(pod " + pods[i] + ")"), std::string::npos) << *answers[i];
    }
  }
  EXPECT_EQ(access_reviews(), 1 + 40);
}

TEST_F(KubernetesPodsAuth, AnApiServerThatCannotBeAskedStill503) {
  const auto auth = make_kubernetes_auth(api_.config());
  const TraceCaller bob = auth->authenticate("Bearer bob-token");
  api_.control("outage", R"({"down":true})");
  try {
    auth->authorize_pods(bob, "shop", {"web-0", "web-1"});
    ADD_FAILURE() << "answered with the API server down";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 503) << e.what();
  }
}

// none and token: every pod allowed, nothing asked.
TEST(TraceAuthPods, NoneAndTokenAllowEveryPod) {
  AgentConfig::Traces config;
  config.auth = AgentConfig::Traces::Auth::kNone;
  const auto none = make_trace_auth(config, std::nullopt);
  const auto answers = none->authorize_pods({}, "shop", {"a", "b", "c"});
  ASSERT_EQ(answers.size(), 3u);
  for (const auto& answer : answers) EXPECT_FALSE(answer);
}

// An API server (or something in its place) whose TokenReview answers are
// not what Kubernetes sends: a 503 in our words, never the JSON library's
// exception text (which the HTTP layer would pass on as a 500).
TEST(KubernetesTraceAuthAnswers, AnAnswerThatIsNoReviewIs503OrARefusal) {
  testing::FakeApiServer certificates;  // not started: its CA and server certificate only
  httplib::SSLServer server((certificates.dir() / "server.crt").c_str(), (certificates.dir() / "server.key").c_str());
  ASSERT_TRUE(server.is_valid());
  std::string answer;
  server.Post("/apis/authentication.k8s.io/v1/tokenreviews",
              [&answer](const httplib::Request&, httplib::Response& res) {
                res.status = 201;
                res.set_content(answer, "application/json");
              });
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread serving([&server] { server.listen_after_bind(); });
  // Debian 12's httplib has no wait_until_ready(): the socket is bound and
  // listening already, so a client connecting now waits in its backlog.
  KubeApiConfig api = certificates.config();
  api.port = port;
  TokenReviewLimits limits;
  limits.rejected_for = milliseconds(0);  // every attempt asks
  const auto auth = make_kubernetes_auth(api, limits);
  const std::pair<std::string, std::string> no_review[] = {
      {"not json", "is not a review with a \"status\" object"},
      {R"({"status":"yes"})", "is not a review"},
      {R"({"kind":"TokenReview"})", "is not a review"},
      {R"({"status":{"authenticated":true}})", "names no readable user"},
      {R"({"status":{"authenticated":true,"user":{"username":7}}})", "names no readable user"},
      {R"({"status":{"authenticated":true,"user":{"username":"u","groups":[1]}}})", "names no readable user"},
  };
  int i = 0;
  for (const auto& [body, part] : no_review) {
    answer = body;
    try {
      auth->authenticate("Bearer token-" + std::to_string(i++));
      ADD_FAILURE() << "accepted with " << body;
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 503) << body;
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << body << ": " << e.what();
      EXPECT_EQ(std::string(e.what()).find("json.exception"), std::string::npos) << e.what();
    }
  }
  // Only a JSON true authenticates; an "error" that is no string is no reason.
  for (const std::string body : {R"({"status":{"authenticated":"true","user":{"username":"u"}}})",
                                 R"({"status":{"authenticated":1,"error":{"x":1}}})"}) {
    answer = body;
    try {
      auth->authenticate("Bearer token-" + std::to_string(i++));
      ADD_FAILURE() << "accepted with " << body;
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 401) << body << ": " << e.what();
    }
  }
  server.stop();
  serving.join();
}

}  // namespace
}  // namespace pwru
