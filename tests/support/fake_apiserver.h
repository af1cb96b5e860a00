// The fake Kubernetes API server (tests/k8s/fake_kube_apiserver.py) as a
// test fixture: a CA and a server certificate for 127.0.0.1 made at test
// time, a bearer token in a file, the server process, and its control API.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "k8s/kube_api_config.h"

namespace pwru::testing {

class FakeApiServer {
 public:
  FakeApiServer();  // makes the directory, certificates and token; test failures on errors
  ~FakeApiServer();
  FakeApiServer(const FakeApiServer&) = delete;
  FakeApiServer& operator=(const FakeApiServer&) = delete;

  // Starts the server on `port` (0: any free one); false after a test failure.
  bool start(int port = 0);
  void stop();  // kills it: to a client, an API server that went away

  // POST /__control/<what> (add, delete, gone, drop, compact); a test
  // failure unless it answers 200.
  void control(const std::string& what, const std::string& json = "{}");
  void add_pod(const std::string& uid, const std::string& namespace_name, const std::string& name,
               const std::string& node = "n1", bool host_network = false);
  void delete_pod(const std::string& uid);
  // GET /__control/stats: lists, service_gets, slice_lists, access_reviews, ...
  nlohmann::json stats() const;
  int stat(const std::string& name) const;

  // Where the agent finds it, as node n1.
  KubeApiConfig config() const;
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path token_file() const { return dir_ / "token"; }
  int port() const { return port_; }

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

void write_file(const std::filesystem::path& path, const std::string& text);

}  // namespace pwru::testing
