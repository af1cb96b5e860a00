// The agent's HTTP surface on a loopback port the kernel picks: what
// Kubernetes probes and Prometheus see.
#include "http/agent_http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/error.h"
#include "eventually.h"

namespace pwru {
namespace {

TEST(AgentHttp, ProbesAndMetrics) {
  std::atomic<bool> ready{false};
  std::atomic<int> scrapes{0};
  AgentHttpServer server(
      "127.0.0.1", 0,
      AgentHttpHandlers{[&] {
                          ++scrapes;
                          return std::string("pwru_build_info{version=\"x\"} 1\n");
                        },
                        [&] { return ready.load(); }, [] { return std::string("attaching hooks"); }, std::nullopt});
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
  AgentHttpServer first(
      "127.0.0.1", 0,
      AgentHttpHandlers{[] { return std::string(); }, [] { return true; }, [] { return std::string(); }, std::nullopt});
  try {
    AgentHttpServer second("127.0.0.1", first.port(),
                           AgentHttpHandlers{[] { return std::string(); }, [] { return true; },
                                             [] { return std::string(); }, std::nullopt});
    FAIL() << "bound a port already in use";
  } catch (const SystemError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())), std::string::npos) << e.what();
  }
}

TEST(AgentHttp, StopRightAfterStartReturns) {
  // An agent told to stop while still starting must not hang in stop().
  for (int i = 0; i < 20; ++i) {
    AgentHttpServer server("127.0.0.1", 0,
                           AgentHttpHandlers{[] { return std::string(); }, [] { return false; },
                                             [] { return std::string(); }, std::nullopt});
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
  AgentHttpHandlers h{[] { return std::string(); }, [&ready] { return ready.load(); },
                      [] { return std::string("starting"); }, std::nullopt};
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
  EXPECT_TRUE(pwru::testing::eventually([&] { return fake.streams_ended != 0; }, std::chrono::seconds(2)));
  EXPECT_EQ(fake.streams_ended, 1);
  EXPECT_TRUE(fake.saw_closed);
  EXPECT_LE(fake.lines_before_close, 3);
}

}  // namespace
}  // namespace pwru

namespace pwru {
namespace {

// Connection handling under abuse: slow heads, too many connections, and
// what normal clients (keep-alive, pipelining) still get.

// A client socket from `source` (any 127/8 address is this host's) to the
// server's loopback port; reads give up after 10 s.
struct RawClient {
  int fd = -1;
  RawClient(const char* source, std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, source, &src.sin_addr);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(port);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
        ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~RawClient() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  bool send(const std::string& text) const {
    return ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
  }
  // Everything until the server closes (or 10 s pass).
  std::string read_all() const {
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }
  // Reads until `count` copies of `marker` arrived (or EOF / 10 s).
  std::string read_until(const std::string& marker, int count) const {
    std::string out;
    char buf[4096];
    const auto seen = [&] {
      int n = 0;
      for (std::size_t at = out.find(marker); at != std::string::npos; at = out.find(marker, at + 1)) ++n;
      return n;
    };
    for (ssize_t n; seen() < count && (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
      out.append(buf, static_cast<std::size_t>(n));
    return out;
  }
  // The server closed its end (FIN or reset), checked without waiting.
  bool closed_by_server() const {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }
};

struct Observed {
  std::mutex mu;
  std::map<std::string, int> refused;
  int opened = 0;
  int open = 0;

  ConnectionObserver observer() {
    return ConnectionObserver{[this](const char* reason) {
                                std::lock_guard lock(mu);
                                ++refused[reason];
                              },
                              [this](int delta) {
                                std::lock_guard lock(mu);
                                open += delta;
                                if (delta > 0) ++opened;
                              }};
  }
  int refused_for(const std::string& reason) {
    std::lock_guard lock(mu);
    return refused.count(reason) ? refused[reason] : 0;
  }
};

AgentHttpHandlers probe_handlers(Observed& observed) {
  AgentHttpHandlers h{[] { return std::string("pwru_build_info 1\n"); }, [] { return true; },
                      [] { return std::string(); }, std::nullopt};
  h.connections = observed.observer();
  return h;
}

ConnectionLimits limits_with(std::chrono::milliseconds head_timeout, std::size_t total, std::size_t per_client) {
  ConnectionLimits limits;
  limits.head_timeout = head_timeout;
  limits.max_connections = total;
  limits.max_connections_per_client = per_client;
  return limits;
}

TEST(AgentHttpConnections, SlowHeadsAreCutAtTheDeadlineWhileProbesAnswer) {
  // More slow clients than the old fixed pool had workers (8 + 4), each
  // sending a header line every 100 ms: a deadline per read would never
  // fire, the one for the whole head does.
  constexpr int kSlow = 16;
  Observed observed;
  AgentHttpServer server("127.0.0.1", 0, probe_handlers(observed),
                         limits_with(std::chrono::milliseconds(1000), 64, 32));
  std::vector<std::unique_ptr<RawClient>> slow;
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(std::make_unique<RawClient>("127.0.0.1", server.port()));
    ASSERT_GE(slow.back()->fd, 0);
    ASSERT_TRUE(slow.back()->send("GET /healthz HTTP/1.1\r\n"));
  }
  httplib::Client probe("127.0.0.1", server.port());
  probe.set_read_timeout(5, 0);
  std::vector<bool> cut(kSlow, false);
  int cut_count = 0, probes_ok = 0, rounds = 0;
  for (; rounds < 100 && cut_count < kSlow; ++rounds) {  // 10 s at most, against a 1 s deadline
    for (int i = 0; i < kSlow; ++i) {
      if (cut[i]) continue;
      if (slow[i]->closed_by_server() || !slow[i]->send("X-Slow-" + std::to_string(rounds) + ": 1\r\n")) {
        cut[i] = true;
        ++cut_count;
      }
    }
    auto health = probe.Get("/healthz");
    ASSERT_TRUE(health) << "round " << rounds << ": /healthz did not answer with " << kSlow - cut_count
                        << " slow clients open";
    EXPECT_EQ(health->status, 200);
    ++probes_ok;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(cut_count, kSlow) << "after " << rounds << " rounds of header lines";
  EXPECT_EQ(probes_ok, rounds);
  EXPECT_EQ(observed.refused_for("head_timeout"), kSlow);
  for (const auto& client : slow) EXPECT_EQ(client->read_all().find("HTTP/1.1"), std::string::npos);
}

// Trace streams that hold their connection until released (or until the
// client hangs up), like traces that run for minutes.
struct HeldStreams {
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  int started = 0;

  TraceRoutes routes() {
    TraceRoutes r;
    r.start = [this](const std::string&, const std::string&, const TraceRoutes::HeaderLookup&) -> TraceRoutes::Stream {
      return [this](LineSink& out) {
        out.write("{\"started\":true}\n");
        std::unique_lock lock(mu);
        ++started;
        cv.notify_all();
        while (!released && !out.closed()) cv.wait_for(lock, std::chrono::milliseconds(20));
        lock.unlock();
        out.write("{\"summary\":{}}\n");
      };
    };
    r.list = [](const std::string&) { return std::string("{\"traces\":[]}\n"); };
    r.cancel = [](const std::string&, const std::string&) { return false; };
    return r;
  }
  bool wait_started(int count) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return started >= count; });
  }
  void release() {
    std::lock_guard lock(mu);
    released = true;
    cv.notify_all();
  }
};

// Declared after the server: releases held streams before the server's
// stop() waits for its connections, also when an assertion returns early.
struct ReleaseOnExit {
  HeldStreams& streams;
  ~ReleaseOnExit() { streams.release(); }
};

const std::string kTraceRequest = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";

TEST(AgentHttpConnections, APerClientCapRefusesTheNextConnectionWithA429) {
  Observed observed;
  AgentHttpServer server("127.0.0.1", 0, probe_handlers(observed),
                         limits_with(std::chrono::milliseconds(60000), /*total=*/64, /*per_client=*/2));
  RawClient a("127.0.0.1", server.port()), b("127.0.0.1", server.port());
  ASSERT_GE(a.fd, 0);
  ASSERT_GE(b.fd, 0);
  RawClient third("127.0.0.1", server.port());
  const std::string per_client = third.read_all();
  EXPECT_EQ(per_client.rfind("HTTP/1.1 429 ", 0), 0u) << per_client;
  EXPECT_NE(per_client.find("Content-Type: application/json"), std::string::npos) << per_client;
  EXPECT_NE(per_client.find("{\"error\":\"too many connections from your address (http.max_connections_per_client)"),
            std::string::npos)
      << per_client;
  EXPECT_EQ(observed.refused_for("max_connections_per_client"), 1);
  EXPECT_FALSE(a.closed_by_server()) << "a client over its own cap evicts nobody";
  EXPECT_FALSE(b.closed_by_server());

  // Another address is under its own cap: admitted, and served.
  RawClient other("127.0.0.2", server.port());
  ASSERT_TRUE(other.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(other.read_until("ok\n", 1).find("HTTP/1.1 200 OK"), std::string::npos);

  // A closed connection gives its place back.
  a.close();
  std::string answer;
  pwru::testing::eventually(
      [&] {
        RawClient again("127.0.0.1", server.port());
        again.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        answer = again.read_all();
        return answer.find("HTTP/1.1 200 OK") != std::string::npos;
      },
      std::chrono::seconds(2), std::chrono::milliseconds(20));
  EXPECT_NE(answer.find("HTTP/1.1 200 OK"), std::string::npos) << answer;
}

TEST(AgentHttpConnections, AtTheTotalCapTheConnectionWaitingLongestMakesRoom) {
  // Slow clients from as many addresses as it takes to fill the agent:
  // the per-client cap alone would let them lock the probes out.
  Observed observed;
  AgentHttpServer server("127.0.0.1", 0, probe_handlers(observed),
                         limits_with(std::chrono::milliseconds(60000), /*total=*/3, /*per_client=*/2));
  RawClient oldest("127.0.0.2", server.port());
  ASSERT_TRUE(oldest.send("GET /healthz HTTP/1.1\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // waiting longest by a clear margin
  RawClient younger("127.0.0.3", server.port()), youngest("127.0.0.4", server.port());
  ASSERT_GE(younger.fd, 0);
  ASSERT_GE(youngest.fd, 0);
  // All three admitted (accepted in order, on one thread).
  pwru::testing::eventually(
      [&] {
        std::lock_guard lock(observed.mu);
        return observed.opened == 3;
      },
      std::chrono::seconds(1), std::chrono::milliseconds(10));

  RawClient probe("127.0.0.9", server.port());
  ASSERT_TRUE(probe.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  const std::string answer = probe.read_all();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK", 0), 0u) << answer;
  EXPECT_EQ(oldest.read_all(), "") << "the evicted connection gets a FIN, as at a head deadline";
  EXPECT_FALSE(younger.closed_by_server());
  EXPECT_FALSE(youngest.closed_by_server());
  EXPECT_EQ(observed.refused_for("evicted"), 1);
  EXPECT_EQ(observed.refused_for("max_connections"), 0);
  EXPECT_EQ(observed.refused_for("head_timeout"), 0);
  // Lines it sends after the eviction are not read as a request.
  oldest.send("Host: x\r\n\r\n");
  EXPECT_EQ(oldest.read_all(), "");
}

TEST(AgentHttpConnections, ABodyTrickledInIsEvictedLikeAHead) {
  // A complete head followed by a body that never completes must not buy
  // a place the cap cannot take back (slow POST bodies from many addresses).
  FakeTraces fake;
  std::atomic<bool> ready{true};
  Observed observed;
  AgentHttpHandlers handlers = handlers_with(fake.routes(), ready);
  handlers.connections = observed.observer();
  AgentHttpServer server("127.0.0.1", 0, std::move(handlers),
                         limits_with(std::chrono::milliseconds(60000), /*total=*/2, /*per_client=*/2));
  RawClient slow_body("127.0.0.2", server.port());
  ASSERT_TRUE(
      slow_body.send("POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
                     "Content-Length: 40\r\n\r\n{\"filter\":"));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // its head is in; the body is being read
  RawClient idle("127.0.0.3", server.port());
  ASSERT_GE(idle.fd, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));

  RawClient probe("127.0.0.9", server.port());
  ASSERT_TRUE(probe.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  const std::string answer = probe.read_all();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK", 0), 0u) << answer;
  EXPECT_FALSE(idle.closed_by_server()) << "the idle connection waited less long than the trickled body";
  EXPECT_EQ(slow_body.read_all(), "");
  EXPECT_EQ(observed.refused_for("evicted"), 1);
  EXPECT_EQ(observed.refused_for("body_timeout"), 0);
  EXPECT_EQ(fake.streams_ended, 0);
  std::lock_guard lock(fake.mu);
  EXPECT_TRUE(fake.answers.empty()) << "no handler ran for the evicted request";
}

TEST(AgentHttpConnections, WhenEveryConnectionIsBusyTheNextIsA503) {
  HeldStreams held;
  std::atomic<bool> ready{true};
  Observed observed;
  AgentHttpHandlers handlers = handlers_with(held.routes(), ready);
  handlers.connections = observed.observer();
  AgentHttpServer server("127.0.0.1", 0, std::move(handlers),
                         limits_with(std::chrono::milliseconds(60000), /*total=*/3, /*per_client=*/2));
  ReleaseOnExit release{held};
  std::vector<std::unique_ptr<RawClient>> streams;
  for (const char* source : {"127.0.0.1", "127.0.0.1", "127.0.0.2"}) {
    streams.push_back(std::make_unique<RawClient>(source, server.port()));
    ASSERT_TRUE(streams.back()->send(kTraceRequest));
  }
  ASSERT_TRUE(held.wait_started(3));
  RawClient fourth("127.0.0.3", server.port());
  const std::string refused = fourth.read_all();
  EXPECT_EQ(refused.rfind("HTTP/1.1 503 ", 0), 0u) << refused;
  EXPECT_NE(refused.find("Retry-After: 1\r\n"), std::string::npos) << refused;
  EXPECT_NE(refused.find("{\"error\":\"every connection the agent takes (http.max_connections) is busy"),
            std::string::npos)
      << refused;
  EXPECT_EQ(observed.refused_for("max_connections"), 1);
  EXPECT_EQ(observed.refused_for("evicted"), 0) << "a connection serving a request is never evicted";
  for (const auto& stream : streams) EXPECT_FALSE(stream->closed_by_server());
}

TEST(AgentHttpConnections, ProbesAndScrapesAnswerWhileTraceStreamsHoldTheirConnections) {
  // More held streams than the old fixed pool had workers (8 + 4), and
  // slow heads besides: each connection has its own thread, so the probes
  // wait for none of them.
  constexpr int kStreams = 16;
  constexpr int kSlow = 12;
  HeldStreams held;
  std::atomic<bool> ready{true};
  Observed observed;
  AgentHttpHandlers handlers = handlers_with(held.routes(), ready);
  handlers.metrics_text = [] { return std::string("pwru_build_info 1\n"); };
  handlers.connections = observed.observer();
  AgentHttpServer server("127.0.0.1", 0, std::move(handlers), ConnectionLimits{});
  ReleaseOnExit release{held};
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.push_back(std::make_unique<RawClient>("127.0.0.1", server.port()));
    ASSERT_TRUE(clients.back()->send(kTraceRequest));
  }
  ASSERT_TRUE(held.wait_started(kStreams));
  for (int i = 0; i < kSlow; ++i) {
    clients.push_back(std::make_unique<RawClient>("127.0.0.2", server.port()));
    ASSERT_TRUE(clients.back()->send("GET /metrics HTTP/1.1\r\n"));
  }
  httplib::Client probe("127.0.0.1", server.port());
  probe.set_connection_timeout(2, 0);
  probe.set_read_timeout(2, 0);
  auto slowest = std::chrono::steady_clock::duration::zero();
  for (int round = 0; round < 10; ++round) {
    for (const auto& [path, want] : {std::pair{"/healthz", "ok\n"}, std::pair{"/readyz", "ready\n"},
                                     std::pair{"/metrics", "pwru_build_info 1\n"}}) {
      const auto start = std::chrono::steady_clock::now();
      auto res = probe.Get(path);
      slowest = std::max(slowest, std::chrono::steady_clock::now() - start);
      ASSERT_TRUE(res) << path << " in round " << round;
      EXPECT_EQ(res->status, 200) << path;
      EXPECT_EQ(res->body, want) << path;
    }
  }
  EXPECT_LT(slowest, std::chrono::seconds(1))
      << std::chrono::duration_cast<std::chrono::milliseconds>(slowest).count() << " ms";
  {
    std::lock_guard lock(held.mu);
    EXPECT_EQ(held.started, kStreams) << "every stream still held";
  }
  EXPECT_EQ(observed.refused_for("max_connections") + observed.refused_for("max_connections_per_client") +
                observed.refused_for("evicted"),
            0);
}

TEST(AgentHttpConnections, KeepAliveAndPipelinedRequestsShareOneConnection) {
  Observed observed;
  AgentHttpServer server("127.0.0.1", 0, probe_handlers(observed), limits_with(std::chrono::milliseconds(5000), 8, 4));
  {
    httplib::Client client("127.0.0.1", server.port());
    client.set_keep_alive(true);
    for (const char* path : {"/healthz", "/metrics", "/readyz"}) {
      auto res = client.Get(path);
      ASSERT_TRUE(res) << path;
      EXPECT_EQ(res->status, 200) << path;
    }
    EXPECT_EQ(client.Get("/metrics")->body, "pwru_build_info 1\n");
  }
  {
    std::lock_guard lock(observed.mu);
    EXPECT_EQ(observed.opened, 1);
  }
  // Two requests in one write: the second is already read (buffered) when
  // the first is answered, and must be answered too.
  RawClient pipelined("127.0.0.1", server.port());
  ASSERT_TRUE(pipelined.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"));
  // The second answer's body comes last.
  const std::string both = pipelined.read_until("ready\n", 1);
  EXPECT_NE(both.find("ok\n"), std::string::npos) << both;
  EXPECT_NE(both.find("ready\n"), std::string::npos) << both;
  EXPECT_EQ(observed.refused_for("head_timeout"), 0);
}

TEST(AgentHttpConnections, AnOversizedHeadIsA431) {
  Observed observed;
  ConnectionLimits limits = limits_with(std::chrono::milliseconds(5000), 8, 4);
  limits.max_head_bytes = 4096;
  AgentHttpServer server("127.0.0.1", 0, probe_handlers(observed), limits);
  RawClient client("127.0.0.1", server.port());
  ASSERT_TRUE(client.send("GET /healthz HTTP/1.1\r\nX-Big: " + std::string(5000, 'a')));
  const std::string answer = client.read_all();
  EXPECT_EQ(answer.rfind("HTTP/1.1 431 ", 0), 0u) << answer;
  EXPECT_NE(answer.find("{\"error\":\"the request head is over 4096 bytes"), std::string::npos) << answer;
  EXPECT_EQ(observed.refused_for("head_too_large"), 1);
}

TEST(AgentHttpConnections, ABodyThatStopsComingIsCutWithAJson400) {
  FakeTraces fake;
  std::atomic<bool> ready{true};
  Observed observed;
  AgentHttpHandlers handlers = handlers_with(fake.routes(), ready);
  handlers.connections = observed.observer();
  AgentHttpServer server("127.0.0.1", 0, std::move(handlers), limits_with(std::chrono::milliseconds(300), 8, 4));
  RawClient client("127.0.0.1", server.port());
  ASSERT_TRUE(
      client.send("POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
                  "Content-Length: 40\r\n\r\n{\"filter\":"));
  const std::string answer = client.read_all();
  EXPECT_EQ(answer.rfind("HTTP/1.1 400 ", 0), 0u) << answer;
  EXPECT_NE(answer.find("{\"error\":\"the request body did not arrive whole"), std::string::npos) << answer;
  EXPECT_EQ(observed.refused_for("body_timeout"), 1);
  EXPECT_EQ(fake.streams_ended, 0);
}

TEST(AgentHttpConnections, StopEndsConnectionsWaitingForARequest) {
  Observed observed;
  // Heads could take an hour: stop() must not wait for them.
  AgentHttpServer server("127.0.0.1", 0, probe_handlers(observed), limits_with(std::chrono::hours(1), 8, 4));
  RawClient idle("127.0.0.1", server.port()), partial("127.0.0.1", server.port());
  ASSERT_TRUE(partial.send("GET /healthz HTTP/1.1\r\n"));
  httplib::Client probe("127.0.0.1", server.port());
  ASSERT_TRUE(probe.Get("/healthz"));  // both are admitted by now: accepted in order
  server.stop();
  EXPECT_EQ(idle.read_all(), "");
  EXPECT_EQ(partial.read_all(), "");
  std::lock_guard lock(observed.mu);
  EXPECT_EQ(observed.open, 0);
}

}  // namespace
}  // namespace pwru
