#include "k8s/kube_client.h"

#include <fstream>
#include <sstream>

namespace pwru {

namespace {

constexpr int kConnectTimeoutSeconds = 5;

}  // namespace

std::string read_bearer_token(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::unique_ptr<httplib::SSLClient> make_kube_client(const KubeApiConfig& config, int read_timeout_seconds) {
  auto client = std::make_unique<httplib::SSLClient>(config.host, config.port);
  client->set_ca_cert_path(config.ca_file.c_str());
  client->enable_server_certificate_verification(true);
  client->set_connection_timeout(kConnectTimeoutSeconds, 0);
  client->set_read_timeout(read_timeout_seconds, 0);
  // Re-read every time: kubelet rotates projected service-account tokens.
  client->set_bearer_token_auth(read_bearer_token(config.token_file).c_str());
  return client;
}

std::string describe_kube_result(const httplib::Result& res) {
  if (!res) return "no answer (" + httplib::to_string(res.error()) + ")";
  return "HTTP " + std::to_string(res->status) + ": " + res->body.substr(0, 300);
}

}  // namespace pwru
