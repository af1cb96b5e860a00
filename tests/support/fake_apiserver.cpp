#include "fake_apiserver.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace pwru::testing {

namespace fs = std::filesystem;

namespace {

bool run(const std::string& command) {
  if (std::system((command + " >/dev/null 2>&1").c_str()) == 0) return true;
  ADD_FAILURE() << "failed: " << command;
  return false;
}

}  // namespace

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

FakeApiServer::FakeApiServer() {
  static int instances = 0;
  dir_ = fs::temp_directory_path() /
         ("pwru-fake-apiserver-" + std::to_string(getpid()) + "-" + std::to_string(instances++));
  fs::create_directories(dir_);
  const std::string d = dir_.string();
  // A CA made for this test, and a server certificate it signs for 127.0.0.1.
  run("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=pwru-test-ca -keyout " + d + "/ca.key -out " + d +
      "/ca.crt") &&
      run("openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout " + d + "/server.key -out " + d +
          "/server.csr");
  write_file(dir_ / "san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  run("openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.crt -CAkey " + d +
      "/ca.key -CAcreateserial -days 1 -extfile " + d + "/san.ext -out " + d + "/server.crt");
  write_file(token_file(), "token-one\n");
}

FakeApiServer::~FakeApiServer() {
  stop();
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

bool FakeApiServer::start(int port) {
  int out[2];
  if (pipe(out) != 0) {
    ADD_FAILURE() << "pipe";
    return false;
  }
  const std::string d = dir_.string();
  const std::string port_text = std::to_string(port);
  pid_ = fork();
  if (pid_ < 0) {
    ADD_FAILURE() << "fork";
    return false;
  }
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    execl("/usr/bin/python3", "python3", PWRU_FAKE_APISERVER, (d + "/server.crt").c_str(), (d + "/server.key").c_str(),
          token_file().c_str(), port_text.c_str(), nullptr);
    _exit(127);
  }
  close(out[1]);
  FILE* from_server = fdopen(out[0], "r");
  char line[64] = {};
  const bool started = std::fgets(line, sizeof(line), from_server) != nullptr;
  std::fclose(from_server);
  if (!started || std::sscanf(line, "PORT %d", &port_) != 1) {
    ADD_FAILURE() << "the fake API server did not start: '" << line << "'";
    return false;
  }
  return true;
}

void FakeApiServer::stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void FakeApiServer::control(const std::string& what, const std::string& json) {
  httplib::SSLClient client("127.0.0.1", port_);
  client.set_ca_cert_path((dir_ / "ca.crt").c_str());
  client.enable_server_certificate_verification(true);
  auto res = client.Post(("/__control/" + what).c_str(), json, "application/json");
  ASSERT_TRUE(res) << what;
  ASSERT_EQ(res->status, 200) << what;
}

void FakeApiServer::add_pod(const std::string& uid, const std::string& namespace_name, const std::string& name,
                            const std::string& node, bool host_network) {
  control("add", R"({"uid":")" + uid + R"(","namespace":")" + namespace_name + R"(","name":")" + name +
                     R"(","node":")" + node + R"(","hostNetwork":)" + (host_network ? "true" : "false") + "}");
}

void FakeApiServer::delete_pod(const std::string& uid) { control("delete", R"({"uid":")" + uid + R"("})"); }

nlohmann::json FakeApiServer::stats() const {
  httplib::SSLClient client("127.0.0.1", port_);
  client.set_ca_cert_path((dir_ / "ca.crt").c_str());
  client.enable_server_certificate_verification(true);
  auto res = client.Get("/__control/stats");
  if (!res || res->status != 200) {
    ADD_FAILURE() << "no stats from the fake API server";
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(res->body);
}

int FakeApiServer::stat(const std::string& name) const { return stats().value(name, -1); }

KubeApiConfig FakeApiServer::config() const {
  return KubeApiConfig{"127.0.0.1", port_, token_file().string(), (dir_ / "ca.crt").string(), "n1"};
}

}  // namespace pwru::testing
