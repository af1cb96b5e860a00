// WorkloadResolver against the fake API server: which pods a Service (by
// selector or, without one, by its EndpointSlices) or a label selector
// names, which of them cannot be traced and why, and the API server's
// refusals and failures as the caller's 400, 404 and 503.
#include "k8s/workload_resolver.h"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "common/error.h"
#include "fake_apiserver.h"

namespace pwru {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

class WorkloadResolverTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(api_.start()); }

  // A pod with labels app=<app> (and `extra` fields of the control body).
  void pod(const std::string& name, const json& labels, json extra = json::object(), const std::string& ns = "shop") {
    extra["uid"] = "uid-" + ns + "-" + name;
    extra["namespace"] = ns;
    extra["name"] = name;
    extra["labels"] = labels;
    if (!extra.contains("podIP")) extra["podIP"] = "10.1.0." + std::to_string(++ips_);
    api_.control("add", extra.dump());
  }

  void service(const std::string& name, const json& spec) {
    json body = spec;
    body["namespace"] = "shop";
    body["name"] = name;
    api_.control("service", body.dump());
  }

  // The status of the RequestError `resolve` throws, and its message.
  template <typename F>
  static std::pair<int, std::string> failure(F resolve) {
    try {
      resolve();
    } catch (const RequestError& e) {
      return {e.status(), e.what()};
    }
    return {200, ""};
  }

  static std::vector<std::string> names(const ResolvedWorkload& w) {
    std::vector<std::string> out;
    for (const ResolvedPod& p : w.pods) out.push_back(p.name);
    return out;
  }

  testing::FakeApiServer api_;
  int ips_ = 0;
};

using Names = std::vector<std::string>;
using Skipped = std::map<std::string, std::string>;

TEST_F(WorkloadResolverTest, AServiceWithASelectorIsTheTraceablePodsItSelects) {
  pod("web-0", {{"app", "web"}}, {{"node", "n1"}});
  pod("web-1", {{"app", "web"}, {"tier", "front"}}, {{"node", "n2"}, {"ready", false}});
  pod("web-pending", {{"app", "web"}}, {{"node", ""}, {"phase", "Pending"}, {"podIP", ""}});
  pod("web-host", {{"app", "web"}}, {{"hostNetwork", true}});
  pod("web-done", {{"app", "web"}}, {{"phase", "Succeeded"}});
  pod("web-crashed", {{"app", "web"}}, {{"phase", "Failed"}});
  pod("db-0", {{"app", "db"}});
  pod("web-0", {{"app", "web"}}, {}, "other");  // another namespace's
  service("web", {{"selector", {{"app", "web"}}}});

  const WorkloadResolver resolver(api_.config());
  const ResolvedWorkload w = resolver.pods_of_service("shop", "web");
  EXPECT_EQ(w.description, "service shop/web (selector app=web)");
  EXPECT_EQ(names(w), (Names{"web-0", "web-1"}));
  ASSERT_EQ(w.pods.size(), 2u);
  EXPECT_EQ(w.pods[0].uid, "uid-shop-web-0");
  EXPECT_EQ(w.pods[0].node, "n1");
  EXPECT_EQ(w.pods[0].phase, "Running");
  EXPECT_EQ(w.pods[0].pod_ip, "10.1.0.1");
  EXPECT_TRUE(w.pods[0].ready);
  EXPECT_FALSE(w.pods[0].host_network);
  EXPECT_EQ(w.pods[1].node, "n2");
  EXPECT_FALSE(w.pods[1].ready);  // not ready is still traced: it is what one debugs
  EXPECT_EQ(w.skipped, (Skipped{{"shop/web-pending", "not scheduled"},
                                {"shop/web-host", "uses the host's network"},
                                {"shop/web-done", "Succeeded"},
                                {"shop/web-crashed", "Failed"}}));
  EXPECT_EQ(api_.stat("service_gets"), 1);
  EXPECT_EQ(api_.stat("slice_lists"), 0);
}

TEST_F(WorkloadResolverTest, AServiceWithTwoSelectorLabelsMatchesBoth) {
  pod("web-0", {{"app", "web"}, {"tier", "front"}});
  pod("web-1", {{"app", "web"}, {"tier", "back"}});
  service("front", {{"selector", {{"tier", "front"}, {"app", "web"}}}});
  const ResolvedWorkload w = WorkloadResolver(api_.config()).pods_of_service("shop", "front");
  EXPECT_EQ(w.description, "service shop/front (selector app=web,tier=front)");  // keys sorted
  EXPECT_EQ(names(w), (Names{"web-0"}));
}

TEST_F(WorkloadResolverTest, AServiceWithoutASelectorIsThePodsOfItsEndpointSlices) {
  pod("db-0", {{"app", "db"}});
  pod("db-1", {{"app", "db"}}, {{"node", "n2"}});
  pod("db-2", {{"app", "db"}}, {{"hostNetwork", true}});
  pod("db-3", {{"app", "db"}});  // in no slice
  api_.control("max_per_slice", R"({"max_per_slice":2})");
  service("legacy", {{"endpoints", {"db-1", "db-0", "db-2", json{{"ip", "10.9.9.9"}}, "db-gone"}}});
  service("other", {{"endpoints", json::array({"db-3"})}});

  const ResolvedWorkload w = WorkloadResolver(api_.config()).pods_of_service("shop", "legacy");
  EXPECT_EQ(w.description, "service shop/legacy (no selector: the pods its EndpointSlices name)");
  EXPECT_EQ(names(w), (Names{"db-0", "db-1"}));
  ASSERT_EQ(w.pods.size(), 2u);
  EXPECT_EQ(w.pods[1].node, "n2");
  ASSERT_EQ(w.skipped.size(), 3u);
  EXPECT_EQ(w.skipped.at("shop/db-2"), "uses the host's network");
  EXPECT_NE(w.skipped.at("endpoint 10.9.9.9").find("no Pod targetRef"), std::string::npos);
  EXPECT_NE(w.skipped.at("shop/db-gone").find("no such pod"), std::string::npos);
  EXPECT_EQ(api_.stat("slice_lists"), 1);  // three slices, one page
}

TEST_F(WorkloadResolverTest, EndpointSlicesAndPodsArePaged) {
  pod("db-0", {{"app", "db"}});
  pod("db-1", {{"app", "db"}});
  pod("db-2", {{"app", "db"}});
  for (int i = 0; i < 4; ++i) pod("noise-" + std::to_string(i), {{"app", "noise"}});
  api_.control("max_per_slice", R"({"max_per_slice":1})");
  api_.control("page_cap", R"({"page_cap":2})");
  service("legacy", {{"endpoints", {"db-0", "db-1", "db-2"}}});
  const int lists_before = api_.stat("lists");

  const WorkloadResolver resolver(api_.config());
  const ResolvedWorkload w = resolver.pods_of_service("shop", "legacy");
  EXPECT_EQ(names(w), (Names{"db-0", "db-1", "db-2"}));
  EXPECT_TRUE(w.skipped.empty());
  EXPECT_EQ(api_.stat("slice_lists"), 2);           // 3 slices, 2 a page
  EXPECT_EQ(api_.stat("lists") - lists_before, 4);  // 7 pods, 2 a page

  EXPECT_EQ(names(resolver.pods_of_selector("shop", "app=noise")), (Names{"noise-0", "noise-1", "noise-2", "noise-3"}));
}

TEST_F(WorkloadResolverTest, SetBasedSelectors) {
  pod("web-0", {{"app", "web"}, {"env", "prod"}});
  pod("web-1", {{"app", "web"}, {"env", "staging"}, {"canary", "yes"}});
  pod("api-0", {{"app", "api"}, {"env", "prod"}});
  pod("db-0", {{"app", "db"}, {"env", "prod"}});
  const WorkloadResolver resolver(api_.config());
  EXPECT_EQ(names(resolver.pods_of_selector("shop", "app in (web,api),env=prod")), (Names{"api-0", "web-0"}));
  EXPECT_EQ(names(resolver.pods_of_selector("shop", "app notin (db),!canary")), (Names{"api-0", "web-0"}));
  EXPECT_EQ(names(resolver.pods_of_selector("shop", "canary")), (Names{"web-1"}));
  EXPECT_EQ(names(resolver.pods_of_selector("shop", "app!=web")), (Names{"api-0", "db-0"}));
  const ResolvedWorkload none = resolver.pods_of_selector("shop", "app=nothing");
  EXPECT_TRUE(none.pods.empty());
  EXPECT_EQ(none.description, "selector app=nothing in shop");
}

TEST_F(WorkloadResolverTest, ASelectorTheApiServerRefusesIs400NamingSelector) {
  const WorkloadResolver resolver(api_.config());
  for (const std::string bad : {"app=web!", "app in web", "a b"}) {
    const auto [status, message] = failure([&] { resolver.pods_of_selector("shop", bad); });
    EXPECT_EQ(status, 400) << bad;
    EXPECT_NE(message.find("\"selector\""), std::string::npos) << message;
    EXPECT_NE(message.find("unable to parse requirement"), std::string::npos) << message;  // the API server's words
  }
  const auto [status, message] = failure([&] { resolver.pods_of_selector("shop", " "); });
  EXPECT_EQ(status, 400);
  EXPECT_NE(message.find("\"selector\" is empty"), std::string::npos) << message;
}

TEST_F(WorkloadResolverTest, AMissingServiceIs404) {
  service("web", {{"selector", {{"app", "web"}}}});
  api_.control("delete_service", R"({"namespace":"shop","name":"web"})");
  const auto [status, message] = failure([&] { WorkloadResolver(api_.config()).pods_of_service("shop", "web"); });
  EXPECT_EQ(status, 404);
  EXPECT_NE(message.find("no service shop/web"), std::string::npos) << message;
}

TEST_F(WorkloadResolverTest, AnApiServerThatCannotBeAskedIs503) {
  service("web", {{"selector", {{"app", "web"}}}});
  const WorkloadResolver resolver(api_.config(), milliseconds(500));
  api_.control("outage", R"({"down":true})");
  for (const auto& [status, message] : {failure([&] { resolver.pods_of_service("shop", "web"); }),
                                        failure([&] { resolver.pods_of_selector("shop", "app=web"); })}) {
    EXPECT_EQ(status, 503) << message;
    EXPECT_NE(message.find("try again"), std::string::npos) << message;
  }
  api_.control("outage", R"({"down":false})");

  // Slow: 503 in about the timeout, not the API server's time.
  api_.control("latency", R"({"path_prefix":"/api/v1/namespaces/shop/pods","ms":3000})");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(failure([&] { resolver.pods_of_service("shop", "web"); }).first, 503);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
  api_.control("latency", R"({"path_prefix":"/api/v1/namespaces/shop/pods","ms":0})");

  // A token the API server does not accept: the agent's problem, said so.
  KubeApiConfig stale = api_.config();
  stale.token_file = (api_.dir() / "stale-token").string();
  testing::write_file(stale.token_file, "rotated-away\n");
  const auto [status, message] = failure([&] { WorkloadResolver(stale).pods_of_selector("shop", "app=web"); });
  EXPECT_EQ(status, 503);
  EXPECT_NE(message.find("agent's operator"), std::string::npos) << message;

  api_.stop();
  EXPECT_EQ(failure([&] { resolver.pods_of_service("shop", "web"); }).first, 503);
}

}  // namespace
}  // namespace pwru
