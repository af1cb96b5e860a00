// The agent's HTTP surface on a loopback port the kernel picks: what
// Kubernetes probes and Prometheus see.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>
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
                                           [] { return std::string("attaching hooks"); }, std::nullopt});
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
                                           [] { return true; }, [] { return std::string(); }, std::nullopt});
  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_NE(res->body.find("map read failed"), std::string::npos);
}

TEST(AgentHttp, APortInUseNamesTheAddress) {
  AgentHttpServer first("127.0.0.1", 0, AgentHttpHandlers{[] { return std::string(); }, [] { return true; }, [] { return std::string(); }, std::nullopt});
  try {
    AgentHttpServer second("127.0.0.1", first.port(), AgentHttpHandlers{[] { return std::string(); }, [] { return true; }, [] { return std::string(); }, std::nullopt});
    FAIL() << "bound a port already in use";
  } catch (const SystemError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())), std::string::npos) << e.what();
  }
}

TEST(AgentHttp, StopRightAfterStartReturns) {
  // An agent told to stop while still starting must not hang in stop().
  for (int i = 0; i < 20; ++i) {
    AgentHttpServer server("127.0.0.1", 0, AgentHttpHandlers{[] { return std::string(); }, [] { return false; }, [] { return std::string(); }, std::nullopt});
    server.stop();
  }
}

}  // namespace
}  // namespace pwru

namespace pwru {
namespace {

// The trace routes over fake callbacks: status codes, JSON errors, the
// stream, and what a hung-up client does to it.
struct FakeTraces {
  static void check_auth(const std::string& header) {
    if (header.empty()) throw RequestError(401, "send a token");
    if (header != "Bearer good") throw RequestError(403, "wrong token");
  }

  std::atomic<int> streams_ended{0};
  std::atomic<bool> saw_closed{false};
  std::atomic<int> lines_before_close{0};
  std::vector<int> answers;
  std::mutex mu;

  TraceRoutes routes(bool endless = false) {
    TraceRoutes r;
    r.start = [this, endless](const std::string& body, const std::string&,
                              const TraceRoutes::HeaderLookup& header) -> TraceRoutes::Stream {
      check_auth(header("Authorization"));
      if (body == "busy") throw RequestError(429, "too many");
      if (body == "nope") throw RequestError(404, "no such pod");
      return [this, endless](LineSink& out) {
        // Endless: two lines, then silence (a quiet trace), so only the
        // connection check can tell that the client left.
        for (int i = 0; i < (endless ? 600 : 3) && !out.closed(); ++i) {
          if (i < 3) {
            out.write("{\"n\":" + std::to_string(i) + "}\n");
            out.flush();
            ++lines_before_close;
          }
          if (endless) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        saw_closed = out.closed();
        if (!out.closed()) out.write("{\"summary\":{}}\n");
        ++streams_ended;
      };
    };
    r.list = [](const std::string& authorization) {
      check_auth(authorization);
      return std::string("{\"traces\":[]}\n");
    };
    r.cancel = [](const std::string& id, const std::string& authorization) {
      check_auth(authorization);
      return id == "tr-1";
    };
    r.answered = [this](int status) {
      std::lock_guard lock(mu);
      answers.push_back(status);
    };
    r.max_body_bytes = 64;
    return r;
  }
};

AgentHttpHandlers handlers_with(TraceRoutes routes, std::atomic<bool>& ready) {
  AgentHttpHandlers h{[] { return std::string(); }, [&ready] { return ready.load(); }, [] { return std::string("starting"); },
                      std::nullopt};
  h.traces = std::move(routes);
  return h;
}

TEST(AgentHttpTraces, StatusCodesAndJsonErrors) {
  FakeTraces fake;
  std::atomic<bool> ready{false};
  AgentHttpServer server("127.0.0.1", 0, handlers_with(fake.routes(), ready));
  httplib::Client client("127.0.0.1", server.port());
  const httplib::Headers good = {{"Authorization", "Bearer good"}};

  struct Case {
    std::string body;
    httplib::Headers headers;
    int status;
    std::string message;
  };
  auto check = [&](const Case& c) {
    auto res = client.Post("/v1/traces", c.headers, c.body, "application/json");
    ASSERT_TRUE(res) << c.body;
    EXPECT_EQ(res->status, c.status) << c.body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json") << c.body;
    EXPECT_NE(res->body.find("{\"error\":"), std::string::npos) << res->body;
    EXPECT_NE(res->body.find(c.message), std::string::npos) << res->body;
    EXPECT_EQ(client.Get("/healthz")->status, 200) << "after " << c.body;
  };
  check({"{}", good, 503, "not ready"});
  ready = true;
  check({"{}", {}, 401, "send a token"});
  check({"{}", {{"Authorization", "Bearer bad"}}, 403, "wrong token"});
  check({"busy", good, 429, "too many"});
  check({"nope", good, 404, "no such pod"});
  check({std::string(200, 'x'), good, 413, "over 64 bytes"});
  EXPECT_EQ(client.Get("/v1/traces", good)->body, "{\"traces\":[]}\n");
  EXPECT_EQ(client.Get("/v1/traces")->status, 401);
  EXPECT_EQ(client.Delete("/v1/traces/tr-1", good)->status, 200);
  auto missing = client.Delete("/v1/traces/tr-2", good);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("no running trace tr-2"), std::string::npos);

  auto ok = client.Post("/v1/traces", good, "{}", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->get_header_value("Content-Type"), "application/x-ndjson");
  EXPECT_EQ(ok->body, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n{\"summary\":{}}\n");
  std::lock_guard lock(fake.mu);
  EXPECT_EQ(fake.answers, (std::vector<int>{503, 401, 403, 429, 404, 413, 401, 404, 200}));
}

TEST(AgentHttpTraces, AClientThatHangsUpEndsItsStreamWithinAPollRound) {
  FakeTraces fake;
  std::atomic<bool> ready{true};
  AgentHttpServer server("127.0.0.1", 0, handlers_with(fake.routes(/*endless=*/true), ready));
  {
    // A client that reads the start of the stream, then closes its socket.
    const int sock = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string request =
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nContent-Length: 2\r\n\r\n{}";
    ASSERT_EQ(::write(sock, request.data(), request.size()), static_cast<ssize_t>(request.size()));
    std::string seen;
    char buf[512];
    while (seen.find("{\"n\":1}") == std::string::npos) {
      const ssize_t n = ::read(sock, buf, sizeof buf);
      ASSERT_GT(n, 0);
      seen.append(buf, static_cast<std::size_t>(n));
    }
    ::close(sock);
  }
  // The stream writes every 50 ms: it must notice within a few rounds.
  for (int i = 0; i < 40 && fake.streams_ended == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(fake.streams_ended, 1);
  EXPECT_TRUE(fake.saw_closed);
  EXPECT_LE(fake.lines_before_close, 3);
}

}  // namespace
}  // namespace pwru
