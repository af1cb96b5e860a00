// Which API server the agent watches, from its configuration and the
// environment a pod gets: in-cluster, an explicit server, or off (and why).
#include "k8s/kube_api_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "common/error.h"

namespace pwru {
namespace {

using ::testing::HasSubstr;
using Enabled = AgentConfig::Kubernetes::Enabled;

EnvLookup env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const AgentConfig::Kubernetes& config, const EnvLookup& lookup) {
  try {
    choose_kube_api(config, lookup);
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

const std::map<std::string, std::string> kInCluster = {
    {"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}, {"NODE_NAME", "worker-1"}};

TEST(KubeApiConfig, InAClusterUsesTheServiceAndTheServiceAccount) {
  const KubeApiChoice choice = choose_kube_api(AgentConfig::Kubernetes{}, env(kInCluster));
  ASSERT_TRUE(choice.api);
  EXPECT_EQ(choice.api->host, "10.96.0.1");
  EXPECT_EQ(choice.api->port, 443);
  EXPECT_EQ(choice.api->token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ(choice.api->ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
  EXPECT_EQ(choice.api->node_name, "worker-1");
  EXPECT_EQ(choice.api->url(), "https://10.96.0.1:443");
}

TEST(KubeApiConfig, OutsideAClusterAutoIsOffAndSaysWhy) {
  const KubeApiChoice choice = choose_kube_api(AgentConfig::Kubernetes{}, env({}));
  EXPECT_FALSE(choice.api);
  EXPECT_THAT(choice.off_reason, HasSubstr("KUBERNETES_SERVICE_HOST is not set"));

  AgentConfig::Kubernetes off;
  off.enabled = Enabled::kOff;
  EXPECT_FALSE(choose_kube_api(off, env(kInCluster)).api) << "off wins over the environment";
}

TEST(KubeApiConfig, AnExplicitServerAndNodeWinOverTheEnvironment) {
  AgentConfig::Kubernetes config;
  config.api_server_host = "fd00::1";
  config.api_server_port = 6443;
  config.node_name = "laptop";
  const KubeApiChoice choice = choose_kube_api(config, env(kInCluster));
  ASSERT_TRUE(choice.api);
  EXPECT_EQ(choice.api->url(), "https://[fd00::1]:6443");
  EXPECT_EQ(choice.api->node_name, "laptop");
}

TEST(KubeApiConfig, MistakesStopStartUpWithWhatToDo) {
  AgentConfig::Kubernetes on;
  on.enabled = Enabled::kOn;
  EXPECT_THAT(error_of(on, env({})), HasSubstr("set kubernetes.api_server"));
  EXPECT_THAT(error_of(AgentConfig::Kubernetes{}, env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}})),
              HasSubstr("Set NODE_NAME"));
  auto bad_port = kInCluster;
  bad_port["KUBERNETES_SERVICE_PORT"] = "https";
  EXPECT_THAT(error_of(AgentConfig::Kubernetes{}, env(bad_port)), HasSubstr("KUBERNETES_SERVICE_PORT is 'https'"));
}

}  // namespace
}  // namespace pwru
