// PodWatcher against a fake API server the test starts: TLS with a CA made
// here, bearer tokens that rotate, the real LIST/WATCH protocol, 410 Gone
// mid-stream and dropped connections.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "k8s/pod_watcher.h"

namespace pwru {
namespace {

namespace fs = std::filesystem;

void run(const std::string& command) {
  ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0) << command;
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

bool eventually(const std::function<bool()>& condition, std::chrono::seconds limit = std::chrono::seconds(15)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

class FakeApiServer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pwru-fake-apiserver-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    const std::string d = dir_.string();
    // A CA made for this test, and a server certificate it signs for 127.0.0.1.
    run("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=pwru-test-ca -keyout " + d + "/ca.key -out " +
        d + "/ca.crt");
    run("openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout " + d + "/server.key -out " + d +
        "/server.csr");
    write_file(dir_ / "san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    run("openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.crt -CAkey " + d + "/ca.key -CAcreateserial -days 1 -extfile " +
        d + "/san.ext -out " + d + "/server.crt");
    write_file(dir_ / "token", "token-one\n");

    int out[2];
    ASSERT_EQ(pipe(out), 0);
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      execl("/usr/bin/python3", "python3", PWRU_FAKE_APISERVER, (d + "/server.crt").c_str(),
            (d + "/server.key").c_str(), (d + "/token").c_str(), nullptr);
      _exit(127);
    }
    close(out[1]);
    FILE* from_server = fdopen(out[0], "r");
    char line[64] = {};
    ASSERT_NE(std::fgets(line, sizeof(line), from_server), nullptr) << "the fake API server did not start";
    ASSERT_EQ(std::sscanf(line, "PORT %d", &port_), 1) << line;
    std::fclose(from_server);
    config_ = KubeApiConfig{"127.0.0.1", port_, (dir_ / "token").string(), (dir_ / "ca.crt").string(), "n1"};
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }

  void control(const std::string& what, const std::string& json = "{}") {
    httplib::SSLClient client("127.0.0.1", port_);
    client.set_ca_cert_path((dir_ / "ca.crt").c_str());
    client.enable_server_certificate_verification(true);
    auto res = client.Post(("/__control/" + what).c_str(), json, "application/json");
    ASSERT_TRUE(res) << what;
    ASSERT_EQ(res->status, 200) << what;
  }
  void add_pod(const std::string& uid, const std::string& ns, const std::string& name, const std::string& node = "n1") {
    control("add", R"({"uid":")" + uid + R"(","namespace":")" + ns + R"(","name":")" + name + R"(","node":")" + node +
                       R"("})");
  }

  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
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
