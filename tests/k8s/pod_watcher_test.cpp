// PodWatcher against a fake API server the test starts: TLS with a CA made
// here, bearer tokens that rotate, the real LIST/WATCH protocol, 410 Gone
// mid-stream and dropped connections.
#include "k8s/pod_watcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include "eventually.h"
#include "fake_apiserver.h"

namespace pwru {
namespace {

namespace fs = std::filesystem;
using testing::write_file;

bool eventually(const std::function<bool()>& condition, std::chrono::seconds limit = std::chrono::seconds(15)) {
  return testing::eventually(condition, limit);
}

class FakeApiServer : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(api_.start());
    dir_ = api_.dir();
    config_ = api_.config();
  }

  void control(const std::string& what, const std::string& json = "{}") { api_.control(what, json); }
  void add_pod(const std::string& uid, const std::string& ns, const std::string& name, const std::string& node = "n1") {
    api_.add_pod(uid, ns, name, node);
  }

  testing::FakeApiServer api_;
  fs::path dir_;
  KubeApiConfig config_;
};

TEST_F(FakeApiServer, ListsThenFollowsTheWatchOfThisNodesPods) {
  add_pod("u1", "shop", "web-0");
  add_pod("u-other", "shop", "web-9", "n2");  // another node's pod: never seen
  PodCache cache;
  PodWatcher watcher(config_, cache);
  watcher.start();
  ASSERT_TRUE(eventually([&] { return watcher.synced(); })) << watcher.stats().last_error;
  EXPECT_EQ(cache.by_uid("u1")->name, "web-0");
  EXPECT_FALSE(cache.by_uid("u-other"));

  add_pod("u2", "shop", "web-1");
  ASSERT_TRUE(eventually([&] { return cache.by_uid("u2").has_value(); }));
  control("delete", R"({"uid":"u1"})");
  ASSERT_TRUE(eventually([&] { return !cache.by_uid("u1").has_value(); }));
  // Bookmarks keep the resourceVersion moving while nothing happens.
  const std::string rv = cache.resource_version();
  EXPECT_FALSE(rv.empty());
  watcher.stop();
  EXPECT_EQ(watcher.stats().relists_after_gone, 0u);
}

TEST_F(FakeApiServer, GoneMidStreamRelistsAndDroppedConnectionsReconnect) {
  add_pod("u1", "shop", "web-0");
  PodCache cache;
  PodWatcher watcher(config_, cache);
  watcher.start();
  ASSERT_TRUE(eventually([&] { return watcher.synced(); }));

  control("gone");
  ASSERT_TRUE(eventually([&] { return watcher.stats().relists_after_gone >= 1 && watcher.stats().lists >= 2; }));
  add_pod("u2", "shop", "web-1");
  ASSERT_TRUE(eventually([&] { return cache.by_uid("u2").has_value(); }));

  control("drop");
  add_pod("u3", "shop", "web-2");
  ASSERT_TRUE(eventually([&] { return cache.by_uid("u3").has_value(); })) << watcher.stats().last_error;
  EXPECT_EQ(cache.pods().size(), 3u);
  watcher.stop();
}

TEST_F(FakeApiServer, AnOutageAfterTheFirstListIsNotCurrentUntilTheWatchReconnects) {
  add_pod("u1", "shop", "web-0");
  PodCache cache;
  PodWatcher watcher(config_, cache);
  watcher.start();
  ASSERT_TRUE(eventually([&] { return watcher.current(); })) << watcher.stats().last_error;
  EXPECT_TRUE(watcher.synced());

  control("outage", R"({"down":true})");
  ASSERT_TRUE(eventually([&] { return !watcher.current(); })) << "the watch broke and retries fail";
  EXPECT_TRUE(watcher.synced()) << "what was listed stays: labels of known pods keep working";
  EXPECT_EQ(cache.by_uid("u1")->name, "web-0");
  // The broken watch first, then the retries the API server refuses.
  EXPECT_TRUE(eventually([&] { return watcher.stats().last_error.find("503") != std::string::npos; }))
      << watcher.stats().last_error;
  EXPECT_FALSE(watcher.current());

  control("outage", R"({"down":false})");
  add_pod("u2", "shop", "web-1");  // created during the reconnect: the resumed watch brings it
  ASSERT_TRUE(eventually([&] { return watcher.current(); }, std::chrono::seconds(25)))
      << "current again once the retry succeeds; " << watcher.stats().last_error;
  ASSERT_TRUE(eventually([&] { return cache.by_uid("u2").has_value(); }));
  watcher.stop();
}

TEST_F(FakeApiServer, ARotatedTokenIsPickedUpAndAWrongOneIsRetried) {
  PodCache cache;
  write_file(dir_ / "token", "token-two\n");  // the server and our file agree on the new token
  PodWatcher watcher(config_, cache);
  watcher.start();
  ASSERT_TRUE(eventually([&] { return watcher.synced(); })) << watcher.stats().last_error;
  watcher.stop();

  // Our file says one thing, the server now expects another: 401, retried with backoff.
  KubeApiConfig wrong = config_;
  write_file(dir_ / "wrong-token", "nope\n");
  wrong.token_file = (dir_ / "wrong-token").string();
  PodCache other;
  PodWatcher refused(wrong, other);
  refused.start();
  ASSERT_TRUE(eventually([&] { return refused.stats().failures >= 2; })) << "no retry after a 401";
  EXPECT_FALSE(refused.synced());
  EXPECT_FALSE(refused.current());
  EXPECT_NE(refused.stats().last_error.find("401"), std::string::npos) << refused.stats().last_error;
  // The token is fixed in place (as kubelet rewrites it): the next retry succeeds.
  write_file(dir_ / "wrong-token", "token-two\n");
  ASSERT_TRUE(eventually([&] { return refused.synced(); }, std::chrono::seconds(20)));
  refused.stop();
}

TEST_F(FakeApiServer, AnApiServerThatIsDownDoesNotBlockStop) {
  KubeApiConfig down = config_;
  down.port = 1;  // nothing listens there
  PodCache cache;
  PodWatcher watcher(down, cache);
  watcher.start();
  ASSERT_TRUE(eventually([&] { return watcher.stats().failures >= 1; }));
  const auto start = std::chrono::steady_clock::now();
  watcher.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(6));
  EXPECT_FALSE(watcher.synced());
}

}  // namespace
}  // namespace pwru
