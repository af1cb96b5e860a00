// The fan-out coordinator over fakes: pods resolved, authorized and grouped
// by node, every node's part started at once, merged, and the summary says
// what happened to each node and pod.
#include "traces/trace_fanout.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "output/sink.h"
#include "traces/trace_request.h"

namespace pwru {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class StringSink final : public LineSink {
 public:
  void write(std::string_view text) override {
    std::lock_guard<std::mutex> lock(mutex_);
    text_.append(text);
  }
  void flush() override {}
  bool closed() const override { return closed_.load(); }
  void close() { closed_ = true; }
  std::vector<json> lines() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<json> out;
    std::istringstream in(text_);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) out.push_back(json::parse(line));
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::string text_;
  std::atomic<bool> closed_{false};
};

TraceCaller alice() {
  TraceCaller caller;
  caller.user = "alice";
  return caller;
}

class FakeAuth final : public TraceAuth {
 public:
  std::set<std::string> denied_pods;
  bool namespace_allowed = true;
  TraceCaller authenticate(const std::string&) const override { return alice(); }
  void authorize(const TraceCaller&, const TraceAction& action) const override {
    if (denied_pods.count(action.pod)) throw RequestError(403, "may not create pods/trace " + action.pod);
  }
  std::vector<std::optional<std::string>> authorize_pods(const TraceCaller&, const std::string&,
                                                         const std::vector<std::string>& pods) const override {
    std::vector<std::optional<std::string>> out;
    for (const std::string& pod : pods)
      out.push_back(denied_pods.count(pod) ? std::optional<std::string>("may not create pods/trace " + pod)
                                           : std::nullopt);
    return out;
  }
  void authorize_namespace(const TraceCaller&, const std::string& ns) const override {
    if (!namespace_allowed) throw RequestError(403, "may not create pods/trace in " + ns);
  }
};

std::uint64_t base_wall() { return 1'700'000'000'000'000'000ull; }

std::string event_line(const std::string& node, const std::string& pod, std::uint64_t wall) {
  return "{\"wall_ns\":" + std::to_string(wall) + ",\"node\":\"" + node + "\",\"namespace\":\"shop\",\"pod\":\"" + pod +
         "\",\"skb\":\"0x1\",\"func\":\"ip_rcv\"}\n";
}
std::string heartbeat(std::uint64_t wall) { return "{\"heartbeat\":{\"wall_ns\":" + std::to_string(wall) + "}}\n"; }
std::string node_summary(const std::string& node, std::uint64_t lost) {
  return "{\"summary\":{\"node\":\"" + node + "\",\"ended\":\"duration\",\"events_lost\":" + std::to_string(lost) +
         "}}\n";
}

// A node's part: the lines it sends, then (until_closed) heartbeats until
// the coordinator hangs up.
class FakePeerPart final : public FanoutPeerPart {
 public:
  FakePeerPart(int status, std::vector<std::string> lines, bool until_closed, bool clean)
      : status_(status), lines_(std::move(lines)), until_closed_(until_closed), clean_(clean) {}
  int status() const override { return status_; }
  std::string read_body() override { return R"x({"error":"too many traces (traces.max_concurrent)"})x"; }
  bool relay(LineSink& out) override {
    for (const std::string& line : lines_) {
      if (out.closed()) return false;
      out.write(line);
      std::this_thread::sleep_for(2ms);
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (until_closed_ && !out.closed() && std::chrono::steady_clock::now() < deadline) {
      out.write(heartbeat(base_wall()));
      std::this_thread::sleep_for(10ms);
    }
    return clean_;
  }

 private:
  int status_;
  std::vector<std::string> lines_;
  bool until_closed_;
  bool clean_;
};

struct Harness {
  std::shared_ptr<FakeAuth> auth = std::make_shared<FakeAuth>();
  ResolvedWorkload workload;
  std::map<std::string, PeerAgent> agents;
  std::map<std::string, std::function<std::unique_ptr<FanoutPeerPart>()>> peers;  // node -> part
  std::vector<std::string> local_lines;
  std::atomic<int> peers_opened{0};
  std::mutex mutex;
  std::map<std::string, std::string> bodies;  // node -> part body
  FanoutLimits limits;

  Harness() {
    limits.reorder_window = 50ms;
    workload.description = "service shop/web (selector app=web)";
    workload.pods = {ResolvedPod{"web-0", "u0", "n1", "Running", "10.0.0.1", false, true},
                     ResolvedPod{"web-1", "u1", "n2", "Running", "10.0.0.2", false, true},
                     ResolvedPod{"web-2", "u2", "n2", "Running", "10.0.0.3", false, true}};
    workload.skipped = {{"shop/web-9", "not scheduled"}};
    agents = {{"n1", PeerAgent{"n1", "agent-a", "127.0.0.1", 1}}, {"n2", PeerAgent{"n2", "agent-b", "127.0.0.1", 2}}};
    local_lines = {heartbeat(base_wall() + 5), event_line("n1", "web-0", base_wall() + 10),
                   event_line("n1", "web-0", base_wall() + 30), heartbeat(base_wall() + 100), node_summary("n1", 1)};
    peers["n2"] = [] {
      return std::make_unique<FakePeerPart>(
          200,
          std::vector<std::string>{heartbeat(base_wall() + 5), event_line("n2", "web-1", base_wall() + 20),
                                   event_line("n2", "web-2", base_wall() + 40), heartbeat(base_wall() + 100),
                                   node_summary("n2", 2)},
          false, true);
    };
  }

  std::unique_ptr<TraceFanout> make() {
    FanoutDeps deps;
    deps.node_name = "n1";
    deps.auth = auth;
    deps.resolve = [this](const TraceTarget&) { return workload; };
    deps.agents_by_node = [this] { return agents; };
    deps.start_local = [this](const TraceCaller&, const std::string& body, const std::string&) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        bodies["n1"] = body;
      }
      return std::function<void(LineSink&)>([lines = local_lines](LineSink& out) {
        for (const std::string& line : lines) out.write(line);
      });
    };
    deps.open_peer = [this](const PeerAgent& agent, const std::string& body, const TraceCaller&, const std::string&,
                            std::chrono::seconds) -> std::unique_ptr<FanoutPeerPart> {
      ++peers_opened;
      {
        std::lock_guard<std::mutex> lock(mutex);
        bodies[agent.node] = body;
      }
      return peers.at(agent.node)();
    };
    return std::make_unique<TraceFanout>(limits, std::move(deps));
  }
};

// As TraceService does: the target first, the rest of the body when the
// fan-out asks for it.
std::function<void(LineSink&)> start_trace(TraceFanout& fanout, const std::string& body, const std::string& remote) {
  return fanout.start(
      alice(), parse_trace_target(body), [body] { return parse_trace_request(body, TraceRequestLimits{}); }, body,
      remote);
}

constexpr const char* kBody = R"({"namespace":"shop","service":"web","filter":"tcp","duration":"5s"})";

TEST(TraceFanout, MergesEveryNodeInWallOrderAndSummarizes) {
  Harness h;
  auto fanout = h.make();
  StringSink out;
  start_trace(*fanout, kBody, "1.2.3.4")(out);
  const std::vector<json> lines = out.lines();
  ASSERT_EQ(lines.size(), 5u);
  std::vector<std::uint64_t> walls;
  for (std::size_t i = 0; i < 4; ++i) walls.push_back(lines[i].at("wall_ns").get<std::uint64_t>() - base_wall());
  EXPECT_EQ(walls, (std::vector<std::uint64_t>{10, 20, 30, 40}));
  const json& s = lines.back().at("summary");
  EXPECT_EQ(s.at("nodes"), (json{{"n1", "ok"}, {"n2", "ok"}}));
  EXPECT_EQ(s.at("pods"), (json{{"shop/web-0", "n1"}, {"shop/web-1", "n2"}, {"shop/web-2", "n2"}}));
  EXPECT_EQ(s.at("pods_skipped"), (json{{"shop/web-9", "not scheduled"}}));
  EXPECT_EQ(s.at("events_sent"), 4);
  EXPECT_EQ(s.at("events_lost"), 3);  // the nodes' losses, summed
  EXPECT_EQ(s.at("ended"), "duration");
  EXPECT_EQ(s.at("target"), "service shop/web (selector app=web)");
  EXPECT_EQ(s.at("node_summaries").size(), 2u);
  EXPECT_TRUE(s.at("id").get<std::string>().rfind("fo-", 0) == 0);
  // Each node gets its own pods, and keeps the caller's options.
  const json n2 = json::parse(h.bodies.at("n2"));
  EXPECT_EQ(n2.at("pods"), (json{"web-1", "web-2"}));
  EXPECT_EQ(n2.at("filter"), "tcp");
  EXPECT_FALSE(n2.contains("service"));
  EXPECT_EQ(json::parse(h.bodies.at("n1")).at("pods"), json{"web-0"});
}

TEST(TraceFanout, DeniedPodIsReportedAndNeverTraced) {
  Harness h;
  h.auth->denied_pods = {"web-1", "web-2"};  // every pod of n2
  h.auth->namespace_allowed = false;         // allowed web-0 by name only
  auto fanout = h.make();
  StringSink out;
  start_trace(*fanout, kBody, "")(out);
  const json s = out.lines().back().at("summary");
  EXPECT_EQ(h.peers_opened.load(), 0);  // n2 got no request at all
  EXPECT_EQ(s.at("pods_denied"), 2);    // counted, never named
  EXPECT_EQ(s.at("pods_skipped"), 1);   // also only counted for a caller without the namespace-wide right
  EXPECT_EQ(s.at("pods"), (json{{"shop/web-0", "n1"}}));
  EXPECT_FALSE(s.at("nodes").contains("n2"));
}

TEST(TraceFanout, AllDeniedIs403AndUnknownServiceIs403WithoutNamespaceRight) {
  Harness h;
  h.auth->denied_pods = {"web-0", "web-1", "web-2"};
  h.auth->namespace_allowed = false;
  auto fanout = h.make();
  try {
    start_trace(*fanout, kBody, "");
    FAIL() << "started";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 403);
    // Not one pod's name: the same answer as for a service that is not there.
    EXPECT_EQ(std::string(e.what()), "may not create pods/trace in shop");
  }
  Harness missing;
  missing.auth->namespace_allowed = false;
  // resolve says 404; the caller may not trace in shop: 403, no hint the service is missing.
  FanoutDeps d;
  d.node_name = "n1";
  d.auth = missing.auth;
  d.resolve = [](const TraceTarget&) -> ResolvedWorkload { throw RequestError(404, "no service shop/web"); };
  TraceFanout f3(missing.limits, d);
  try {
    start_trace(f3, kBody, "");
    FAIL() << "started";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 403);
  }
  missing.auth->namespace_allowed = true;
  try {
    start_trace(f3, kBody, "");
    FAIL() << "started";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 404);
  }
}

TEST(TraceFanout, NodeThatRefusesOrCannotBeReachedIsNamedAndTheRestStreams) {
  Harness h;
  h.peers["n2"] = [] { return std::make_unique<FakePeerPart>(429, std::vector<std::string>{}, false, true); };
  auto fanout = h.make();
  StringSink out;
  start_trace(*fanout, kBody, "")(out);
  json s = out.lines().back().at("summary");
  EXPECT_EQ(s.at("nodes").at("n1"), "ok");
  EXPECT_EQ(s.at("nodes").at("n2").get<std::string>().rfind("refused: 429 too many traces", 0), 0u)
      << s.at("nodes").dump();
  EXPECT_EQ(s.at("events_sent"), 2);

  h.peers["n2"] = []() -> std::unique_ptr<FanoutPeerPart> { throw RequestError(502, "cannot reach the agent"); };
  auto again = h.make();
  StringSink out2;
  start_trace(*again, kBody, "")(out2);
  s = out2.lines().back().at("summary");
  EXPECT_EQ(s.at("nodes").at("n2"), "unreachable: cannot reach the agent");

  h.agents.erase("n2");
  auto no_agent = h.make();
  StringSink out3;
  start_trace(*no_agent, kBody, "")(out3);
  s = out3.lines().back().at("summary");
  EXPECT_NE(s.at("nodes").at("n2").get<std::string>().find("no running, ready pwru-agent"), std::string::npos);
}

TEST(TraceFanout, EveryNodeFailingIs502WithEachReason) {
  Harness h;
  h.workload.pods.erase(h.workload.pods.begin());  // nothing on n1
  h.peers["n2"] = []() -> std::unique_ptr<FanoutPeerPart> { throw RequestError(504, "no answer within 30 s"); };
  auto fanout = h.make();
  try {
    start_trace(*fanout, kBody, "");
    FAIL() << "started";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 502);
    EXPECT_NE(std::string(e.what()).find("n2: unreachable: no answer within 30 s"), std::string::npos) << e.what();
  }
}

TEST(TraceFanout, NodeBreakingOffMidStreamIsStoppedAnswering) {
  Harness h;
  h.peers["n2"] = [] {
    return std::make_unique<FakePeerPart>(200, std::vector<std::string>{event_line("n2", "web-1", base_wall() + 20)},
                                          false, false);
  };
  auto fanout = h.make();
  StringSink out;
  start_trace(*fanout, kBody, "")(out);
  const json s = out.lines().back().at("summary");
  EXPECT_EQ(s.at("nodes").at("n2").get<std::string>().rfind("unreachable: stopped answering after", 0), 0u)
      << s.at("nodes").dump();
  EXPECT_EQ(s.at("nodes").at("n1"), "ok");
  EXPECT_EQ(s.at("events_sent"), 3);
}

TEST(TraceFanout, CapsSayWhichKey) {
  Harness h;
  h.limits.max_nodes = 1;
  auto fanout = h.make();
  try {
    start_trace(*fanout, kBody, "");
    FAIL();
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("traces.fanout.max_nodes (1)"), std::string::npos) << e.what();
  }
  h.limits.max_nodes = 16;
  h.limits.max_pods = 2;
  try {
    start_trace(*h.make(), kBody, "");
    FAIL();
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("traces.fanout.max_pods (2)"), std::string::npos) << e.what();
  }
  h.limits.max_pods = 256;
  h.limits.max_events_per_second = 100;
  const std::string fast = R"({"namespace":"shop","service":"web","max_events_per_second":500})";
  try {
    start_trace(*h.make(), fast, "");
    FAIL();
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("traces.fanout.max_events_per_second"), std::string::npos) << e.what();
  }
  h.limits.max_concurrent = 1;
  auto one = h.make();
  auto first = start_trace(*one, kBody, "");  // not streamed yet: holds the slot
  try {
    start_trace(*one, kBody, "");
    FAIL();
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 429);
    EXPECT_NE(std::string(e.what()).find("traces.fanout.max_concurrent"), std::string::npos) << e.what();
  }
  first = nullptr;  // dropped unsent: the slot comes back
  EXPECT_NO_THROW(start_trace(*one, kBody, ""));
}

TEST(TraceFanout, CancelStopsEveryPartAndStillSummarizes) {
  Harness h;
  h.local_lines = {heartbeat(base_wall())};
  h.peers["n2"] = [] { return std::make_unique<FakePeerPart>(200, std::vector<std::string>{}, true, true); };
  auto fanout = h.make();
  StringSink out;
  auto stream = start_trace(*fanout, kBody, "");
  const json rows = fanout->list_rows();
  ASSERT_EQ(rows.size(), 1u);
  const std::string id = rows[0].at("id");
  std::thread streaming([&] { stream(out); });
  std::this_thread::sleep_for(100ms);
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_TRUE(fanout->cancel(id));
  streaming.join();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1s);
  const json s = out.lines().back().at("summary");
  EXPECT_EQ(s.at("ended"), "cancelled");
  EXPECT_FALSE(fanout->cancel("fo-none"));
}

TEST(TraceFanout, NodePartBodyKeepsOptionsAndNamesPods) {
  const json body = json::parse(node_part_body(
      R"({"namespace":"shop","selector":"app=web","summary":true,"functions":"^ip_.*","max_events_per_second":10})",
      "shop", {"a", "b"}));
  EXPECT_EQ(body, (json{{"namespace", "shop"}, {"pods", {"a", "b"}}, {"summary", true}, {"functions", "^ip_.*"}}));
}

TEST(TraceFanout, ACallerAllowedSomePodsByNameLearnsNoCountsAndNodesGetAtMostTheirCap) {
  Harness h;
  h.auth->namespace_allowed = false;
  h.limits.max_pods = 2;
  try {
    start_trace(*h.make(), kBody, "");
    FAIL() << "started";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    // "more than", not how many: the caller may not trace the others.
    EXPECT_NE(std::string(e.what()).find("selects more than traces.fanout.max_pods (2)"), std::string::npos)
        << e.what();
  }
  Harness per_node;
  per_node.limits.max_pods_per_node = 1;  // n2 runs two pods of it
  try {
    start_trace(*per_node.make(), kBody, "");
    FAIL() << "started";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("2 pods on node n2, over traces.max_pods_per_trace (1"), std::string::npos)
        << e.what();
  }
}

// max_events ends the merge early: this node's part still sends its
// summary (its losses count); a node hung up before its own is named, so
// its unknown losses never read as 0.
TEST(TraceFanout, EndingEarlyKeepsTheLocalSummaryAndNamesNodesWhoseLossesAreUnknown) {
  Harness h;
  h.peers["n2"] = [] {
    return std::make_unique<FakePeerPart>(
        200,
        std::vector<std::string>{heartbeat(base_wall() + 5), event_line("n2", "web-1", base_wall() + 20),
                                 event_line("n2", "web-2", base_wall() + 40)},
        true, true);
  };
  auto fanout = h.make();
  const std::string body = R"({"namespace":"shop","service":"web","max_events":2})";
  StringSink out;
  start_trace(*fanout, body, "")(out);
  const json s = out.lines().back().at("summary");
  EXPECT_EQ(s.at("ended"), "max_events");
  EXPECT_EQ(s.at("events_sent"), 2);
  EXPECT_TRUE(s.at("node_summaries").contains("n1")) << s.dump();
  EXPECT_EQ(s.at("events_lost_unknown_on"), json{"n2"}) << s.dump();
}

}  // namespace
}  // namespace pwru
