// PeerLocator::agents_by_node against the fake API server: every node's
// agent from one (paged) list, impostors and unready pods passed over as
// locate() passes them over.
#include "k8s/peer_locator.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/error.h"
#include "fake_apiserver.h"

namespace pwru {
namespace {

using json = nlohmann::json;

class AgentsByNode : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(api_.start()); }

  // An agent pod as the DaemonSet makes it; `changes` override the fields.
  void agent(const std::string& uid, const std::string& node, const std::string& ip, json changes = json::object()) {
    json body = {{"uid", uid},
                 {"namespace", "pwru"},
                 {"name", "pwru-agent-" + uid},
                 {"node", node},
                 {"labels", {{"app.kubernetes.io/name", "pwru-agent"}}},
                 {"podIP", ip},
                 {"owner", {{"kind", "DaemonSet"}, {"name", "pwru-agent"}}},
                 {"ports", {{"peer", 9465}}}};
    body.merge_patch(changes);
    api_.control("add", body.dump());
  }

  PeerLocator locator() const {
    return PeerLocator(api_.config(), "pwru", "app.kubernetes.io/name=pwru-agent", "pwru-agent", 9464);
  }

  testing::FakeApiServer api_;
};

TEST_F(AgentsByNode, EveryNodesAgentFromOneList) {
  agent("a1", "n1", "10.0.0.1");
  // The fake lists by uid: the impostor (no DaemonSet owner) comes first on n2.
  agent("a2-0", "n2", "10.0.0.66", {{"owner", nullptr}});
  agent("a2-1", "n2", "10.0.0.2", {{"ports", nullptr}});  // no peer port: the default
  agent("a3", "n3", "10.0.0.3", {{"ready", false}});
  agent("a4", "n4", "");  // no pod IP yet
  agent("a5", "", "");    // not scheduled
  agent("a6", "n6", "10.0.0.6", {{"owner", {{"name", "other-release"}}}});
  agent("x7", "n7", "10.0.0.7", {{"labels", {{"app.kubernetes.io/name", "something-else"}}}});
  api_.add_pod("shop-uid", "shop", "web-0", "n1");  // not an agent at all

  const int lists_before = api_.stat("lists");
  const std::map<std::string, PeerAgent> agents = locator().agents_by_node();
  EXPECT_EQ(api_.stat("lists") - lists_before, 1);
  ASSERT_EQ(agents.size(), 2u);
  const PeerAgent& n1 = agents.at("n1");
  EXPECT_EQ(n1.node, "n1");
  EXPECT_EQ(n1.pod, "pwru-agent-a1");
  EXPECT_EQ(n1.host, "10.0.0.1");
  EXPECT_EQ(n1.port, 9465);
  const PeerAgent& n2 = agents.at("n2");
  EXPECT_EQ(n2.pod, "pwru-agent-a2-1");
  EXPECT_EQ(n2.host, "10.0.0.2");
  EXPECT_EQ(n2.port, 9464);
}

TEST_F(AgentsByNode, ManyPagesOfAgents) {
  for (int i = 0; i < 7; ++i)
    agent("a" + std::to_string(i), "n" + std::to_string(i), "10.0.0." + std::to_string(i + 1));
  api_.control("page_cap", R"({"page_cap":3})");
  const int lists_before = api_.stat("lists");
  const std::map<std::string, PeerAgent> agents = locator().agents_by_node();
  EXPECT_EQ(api_.stat("lists") - lists_before, 3);
  ASSERT_EQ(agents.size(), 7u);
  EXPECT_EQ(agents.at("n6").host, "10.0.0.7");
}

TEST_F(AgentsByNode, NoAgentsIsAnEmptyMap) { EXPECT_TRUE(locator().agents_by_node().empty()); }

TEST_F(AgentsByNode, AnApiServerThatCannotBeAskedIs503) {
  agent("a1", "n1", "10.0.0.1");
  api_.control("outage", R"({"down":true})");
  try {
    locator().agents_by_node();
    ADD_FAILURE() << "no error with the API server down";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 503) << e.what();
  }
}

}  // namespace
}  // namespace pwru
