// The agent's HTTP surface on a loopback port the kernel picks: what
// Kubernetes probes and Prometheus see.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <stdexcept>

#include "common/error.h"
#include "http/agent_http.h"

namespace pwru {
namespace {

TEST(AgentHttp, ProbesAndMetrics) {
  std::atomic<bool> ready{false};
  std::atomic<int> scrapes{0};
  AgentHttpServer server("127.0.0.1", 0,
                         AgentHttpHandlers{[&] {
                                             ++scrapes;
                                             return std::string("pwru_build_info{version=\"x\"} 1\n");
                                           },
                                           [&] { return ready.load(); },
                                           [] { return std::string("attaching hooks"); }});
  ASSERT_NE(server.port(), 0);
  httplib::Client client("127.0.0.1", server.port());

  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto not_ready = client.Get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_NE(not_ready->body.find("attaching hooks"), std::string::npos);
  ready = true;
  EXPECT_EQ(client.Get("/readyz")->status, 200);

  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->body, "pwru_build_info{version=\"x\"} 1\n");
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(scrapes.load(), 1);
  EXPECT_EQ(client.Get("/nope")->status, 404);

  server.stop();
  EXPECT_FALSE(client.Get("/healthz"));  // the port is closed
}

TEST(AgentHttp, AFailedScrapeIsA500NotAnEmptyPage) {
  AgentHttpServer server("127.0.0.1", 0,
                         AgentHttpHandlers{[]() -> std::string { throw std::runtime_error("map read failed"); },
                                           [] { return true; }});
  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_NE(res->body.find("map read failed"), std::string::npos);
}

TEST(AgentHttp, APortInUseNamesTheAddress) {
  AgentHttpServer first("127.0.0.1", 0, AgentHttpHandlers{[] { return std::string(); }, [] { return true; }});
  try {
    AgentHttpServer second("127.0.0.1", first.port(), AgentHttpHandlers{[] { return std::string(); }, [] { return true; }});
    FAIL() << "bound a port already in use";
  } catch (const SystemError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())), std::string::npos) << e.what();
  }
}

TEST(AgentHttp, StopRightAfterStartReturns) {
  // An agent told to stop while still starting must not hang in stop().
  for (int i = 0; i < 20; ++i) {
    AgentHttpServer server("127.0.0.1", 0, AgentHttpHandlers{[] { return std::string(); }, [] { return false; }});
    server.stop();
  }
}

}  // namespace
}  // namespace pwru
