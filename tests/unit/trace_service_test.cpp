// TraceService::start's order: who calls, then whether they may trace what
// the body names, and only then the checks that reveal this agent's caps.
// Then whole traces over fake programs (no root needed): events streamed,
// the summary before the detach, every way a trace ends, the slot cap and
// load failures.
#include "traces/trace_service.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "fake_trace_probes.h"

namespace pwru {
namespace {

// Records each call; refuses as told.
class FakeAuth final : public TraceAuth {
 public:
  int authenticate_status = 0;  // 0: accept
  int authorize_status = 0;
  mutable std::vector<std::string> calls;

  TraceCaller authenticate(const std::string& authorization) const override {
    calls.push_back("authenticate " + authorization);
    if (authenticate_status) throw RequestError(authenticate_status, "who are you");
    return TraceCaller{"alice", "uid-alice", {}, "{}"};
  }
  void authorize(const TraceCaller& caller, const TraceAction& action) const override {
    calls.push_back("authorize " + caller.user + " " + action.verb + " " + action.namespace_name + "/" + action.pod);
    if (authorize_status) throw RequestError(authorize_status, caller.user + " may not");
  }
};

struct Answer {
  int status = 0;
  std::string message;
};

Answer start(TraceService& service, const std::string& body) {
  try {
    service.start(body, "127.0.0.1:1", "Bearer t");
  } catch (const RequestError& e) {
    return {e.status(), e.what()};
  }
  ADD_FAILURE() << "started: " << body;
  return {};
}

class TraceServiceOrder : public ::testing::Test {
 protected:
  TraceServiceOrder() : auth_(std::make_shared<FakeAuth>()), service_(TraceServiceConfig{}, {}, auth_) {}
  std::shared_ptr<FakeAuth> auth_;
  TraceService service_;
};

TEST_F(TraceServiceOrder, ACallerWithoutRightsLearnsNothingOfTheCaps) {
  auth_->authorize_status = 403;
  for (const std::string body : {R"({"namespace":"shop","pod":"web-0","duration":"2h"})",
                                 R"({"namespace":"shop","pod":"web-0","max_events":99999999999})",
                                 R"({"namespace":"shop","pod":"web-0","nope":true,"duration":-1})",
                                 R"({"namespace":"shop","pod":"web-0","functions":"ip_(rcv"})"}) {
    const Answer a = start(service_, body);
    EXPECT_EQ(a.status, 403) << body << ": " << a.message;
    EXPECT_EQ(a.message.find("cap"), std::string::npos) << a.message;
  }
  EXPECT_EQ(auth_->calls.at(1), "authorize alice create shop/web-0");
  // A node or netns trace needs the node's right: no pod named.
  auth_->calls.clear();
  EXPECT_EQ(start(service_, R"({"netns":4026531840,"duration":"2h"})").status, 403);
  // The node's right, as one netns (the list above asked for its own).
  ASSERT_GE(auth_->calls.size(), 2u);
  EXPECT_EQ(auth_->calls[1], "authorize alice create /");
}

TEST_F(TraceServiceOrder, OnlyAnAuthorizedCallerHearsTheCaps) {
  const Answer a = start(service_, R"({"namespace":"shop","pod":"web-0","duration":"2h"})");
  EXPECT_EQ(a.status, 400);
  EXPECT_NE(a.message.find("over this agent's cap of 600s"), std::string::npos) << a.message;
  EXPECT_EQ(auth_->calls.size(), 2u);
}

// Syntax and the target's own shape come before authorization: they say
// nothing about this agent, and without a target there is nothing to ask.
TEST_F(TraceServiceOrder, SyntaxIsCheckedBeforeAuthorizationAndAfterAuthentication) {
  auth_->authorize_status = 403;
  EXPECT_EQ(start(service_, R"({"namespace":"shop",)").status, 400);
  EXPECT_EQ(start(service_, R"({"namespace":"shop","pod":"Web_0"})").status, 400);
  EXPECT_EQ(start(service_, R"({"namespace":"shop","pod":"web-0","duration":1e400})").status, 400);
  EXPECT_EQ(auth_->calls, std::vector<std::string>(3, "authenticate Bearer t"));
  auth_->authenticate_status = 401;
  EXPECT_EQ(start(service_, R"({"namespace":"shop",)").status, 401);
}

// Whole traces over fake programs, as the HTTP layer runs them: start,
// then the returned stream writes into the response.
class TraceServiceOverFakes : public ::testing::Test {
 protected:
  static constexpr std::uint32_t kCap = 2;

  TraceServiceOverFakes()
      : kernel_(std::make_shared<testing::FakeKernel>()),
        btf_(std::make_shared<KernelBtf>(testing::empty_btf())),
        auth_(std::make_shared<FakeAuth>()),
        service_(config(), {}, auth_) {}

  TraceServiceConfig config() {
    TraceServiceConfig c;
    c.traces.max_concurrent = kCap;
    c.load_session = [kernel = kernel_, btf = btf_](const TraceConfig& trace, LineSink& sink) {
      return std::make_unique<TraceSession>(*btf, trace, sink, kernel->loader());
    };
    return c;
  }

  TraceStream start_ok(const std::string& body) { return service_.start(body, "127.0.0.1:1", "Bearer t"); }

  // The last line, which must be the summary.
  // Runs a trace that something other than its duration must end within
  // 5 s (a hang-up, a DELETE), and returns its summary.
  nlohmann::json summary_of_a_trace_ended_early(const std::string& body) {
    TraceStream stream = start_ok(body);
    const auto started = std::chrono::steady_clock::now();
    stream(sink_);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
    return summary_of(sink_.lines());
  }

  static nlohmann::json summary_of(const std::vector<std::string>& lines) {
    if (lines.empty()) return nullptr;
    const nlohmann::json last = nlohmann::json::parse(lines.back());
    return last.contains("summary") ? last.at("summary") : nullptr;
  }

  std::string only_trace_id() const {
    const nlohmann::json list = nlohmann::json::parse(service_.list_json("Bearer t")).at("traces");
    return list.size() == 1 ? list[0].at("id").get<std::string>() : "";
  }

  std::shared_ptr<testing::FakeKernel> kernel_;
  std::shared_ptr<KernelBtf> btf_;
  std::shared_ptr<FakeAuth> auth_;
  TraceService service_;
  testing::RecordingSink sink_;
};

TEST_F(TraceServiceOverFakes, StreamsEventsAsNdjsonThenTheSummaryWhenTheDurationEnds) {
  kernel_->set_lost(3);
  kernel_->feed(testing::FakeKernel::event(0xffff888012345678, 0));
  kernel_->feed(testing::FakeKernel::event(0xffff888012345678, 1));
  TraceStream stream = start_ok(R"({"duration":"300ms"})");
  EXPECT_FALSE(only_trace_id().empty());
  stream(sink_);
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[0]).at("func"), "netif_receive_skb");
  EXPECT_EQ(nlohmann::json::parse(lines[1]).at("func"), "kfree_skb");
  // The trace API never shows a kernel address.
  for (const std::string& line : lines) EXPECT_EQ(line.find("ffff8880"), std::string::npos) << line;
  const nlohmann::json summary = summary_of(lines);
  ASSERT_TRUE(summary.is_object()) << lines.back();
  EXPECT_EQ(summary.at("ended"), "duration");
  EXPECT_EQ(summary.at("target"), "node");
  EXPECT_EQ(summary.at("events_sent"), 2);
  EXPECT_EQ(summary.at("events_lost"), 3);
  EXPECT_EQ(summary.at("backend"), "fake");
  EXPECT_EQ(summary.at("hooks_attached"), 2);
  EXPECT_GE(summary.at("seconds").get<double>(), 0.3);
  EXPECT_EQ(service_.events_lost(), 3u);
  stream = nullptr;
  EXPECT_EQ(only_trace_id(), "");
  EXPECT_EQ(kernel_->alive(), 0);
}

TEST_F(TraceServiceOverFakes, TheSummaryIsSentBeforeTheProgramsAreDetached) {
  std::vector<std::string> lines_at_detach;
  kernel_->on_detach = [&] { lines_at_detach = sink_.lines(); };
  kernel_->feed(testing::FakeKernel::event(1));
  TraceStream stream = start_ok(R"({"duration":"100ms"})");
  stream(sink_);
  // The response is complete and the links are still attached: detaching
  // (30 s for many plain kprobes) happens once the response is dropped.
  EXPECT_EQ(kernel_->calls(), (std::vector<std::string>{"load", "attach"}));
  stream = nullptr;
  EXPECT_EQ(kernel_->calls(), (std::vector<std::string>{"load", "attach", "detach", "unload"}));
  ASSERT_EQ(lines_at_detach.size(), 2u);
  EXPECT_TRUE(summary_of(lines_at_detach).is_object()) << lines_at_detach.back();
}

TEST_F(TraceServiceOverFakes, AClientThatHangsUpEndsItsTrace) {
  sink_.close_after = 1;
  kernel_->feed(testing::FakeKernel::event(1));
  const nlohmann::json summary = summary_of_a_trace_ended_early(R"({"duration":"60s"})");
  ASSERT_TRUE(summary.is_object());
  EXPECT_EQ(summary.at("ended"), "client gone");
}

TEST_F(TraceServiceOverFakes, DeleteEndsARunningTrace) {
  // DELETE /v1/traces/ID while the first event is being sent.
  sink_.on_line = [&](const std::string&) {
    if (sink_.lines().size() == 1) {
      EXPECT_TRUE(service_.cancel(only_trace_id(), "Bearer t"));
    }
  };
  kernel_->feed(testing::FakeKernel::event(1));
  const nlohmann::json summary = summary_of_a_trace_ended_early(R"({"duration":"60s"})");
  ASSERT_TRUE(summary.is_object());
  EXPECT_EQ(summary.at("ended"), "cancelled");
  EXPECT_EQ(summary.at("events_sent"), 1);
  EXPECT_FALSE(service_.cancel("tr-000000000000", "Bearer t"));
}

TEST_F(TraceServiceOverFakes, StoppingTheAgentEndsItsTracesAndRefusesNewOnes) {
  sink_.on_line = [&](const std::string&) {
    if (sink_.lines().size() == 1) service_.stop_all();
  };
  kernel_->feed(testing::FakeKernel::event(1));
  TraceStream stream = start_ok(R"({"duration":"60s"})");
  stream(sink_);
  EXPECT_EQ(summary_of(sink_.lines()).at("ended"), "agent stopping");
  const Answer refused = start(service_, R"({"duration":"1s"})");
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.message, "the agent is shutting down; try another agent or later");
}

TEST_F(TraceServiceOverFakes, MaxEventsEndsTheTrace) {
  for (std::uint64_t skb = 1; skb <= 3; ++skb) kernel_->feed(testing::FakeKernel::event(skb));
  TraceStream stream = start_ok(R"({"duration":"60s","max_events":2})");
  stream(sink_);
  const nlohmann::json summary = summary_of(sink_.lines());
  ASSERT_TRUE(summary.is_object());
  EXPECT_EQ(summary.at("ended"), "max_events");
  EXPECT_EQ(summary.at("events_sent"), 2);
}

TEST_F(TraceServiceOverFakes, ANetnsTraceFiltersOnItsNetns) {
  TraceStream stream = start_ok(R"({"netns":4026539999,"duration":"10ms"})");
  const std::optional<TraceConfig> loaded = kernel_->last_config();
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->filter.netns, 4026539999u);
  EXPECT_EQ(loaded->filter.track_skb_in_netns, 1);
  EXPECT_TRUE(loaded->hide_kernel_addresses);
  stream(sink_);
  EXPECT_EQ(summary_of(sink_.lines()).at("target"), "netns 4026539999");
}

// Several netns in one trace: the programs get the set (a map, not the
// single compare), every netns's events come out of one trace, and a task
// is named only when it lives in one of them.
TEST_F(TraceServiceOverFakes, ANetnsSetIsOneTraceOfEachOfItsNetns) {
  struct stat own {};
  ASSERT_EQ(stat("/proc/self/ns/net", &own), 0);
  const auto own_netns = static_cast<std::uint32_t>(own.st_ino);
  const std::uint32_t other = own_netns == 4026539999u ? 4026539998u : 4026539999u;
  pwru_event here = testing::FakeKernel::event(1, 0, own_netns);
  here.pid = static_cast<std::uint32_t>(getpid());
  pwru_event there = testing::FakeKernel::event(2, 0, other);
  there.pid = static_cast<std::uint32_t>(getpid());
  kernel_->feed(here);
  kernel_->feed(there);
  TraceStream stream =
      start_ok(R"({"netns":[)" + std::to_string(own_netns) + "," + std::to_string(other) + R"(],"duration":"300ms"})");
  const nlohmann::json listed = nlohmann::json::parse(service_.list_json("Bearer t")).at("traces");
  ASSERT_EQ(listed.size(), 1u);
  const std::string target = "netns " + std::to_string(own_netns) + "," + std::to_string(other);
  EXPECT_EQ(listed[0].at("target"), target);
  const std::optional<TraceConfig> loaded = kernel_->last_config();
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->netns_set, (std::vector<std::uint32_t>{own_netns, other}));
  EXPECT_EQ(kernel_->netns_filter(), (std::vector<std::uint32_t>{own_netns, other}));
  EXPECT_EQ(loaded->filter.netns, 0u);
  EXPECT_EQ(loaded->filter.netns_in_map, 1);
  EXPECT_EQ(loaded->filter.track_skb_in_netns, 1);
  stream(sink_);
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 3u);
  const nlohmann::json first = nlohmann::json::parse(lines[0]), second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(first.at("netns"), own_netns);
  EXPECT_EQ(second.at("netns"), other);
  // This process lives in the set's first netns: named, whatever the skb's netns.
  EXPECT_EQ(first.at("process"), "ping:" + std::to_string(getpid()));
  EXPECT_EQ(second.at("process"), "ping:" + std::to_string(getpid()));
  EXPECT_EQ(summary_of(lines).at("target"), target);
  EXPECT_EQ(summary_of(lines).at("events_sent"), 2);
  // The node's right, as one netns (the list above asked for its own).
  ASSERT_GE(auth_->calls.size(), 2u);
  EXPECT_EQ(auth_->calls[1], "authorize alice create /");
}

TEST_F(TraceServiceOverFakes, ANetnsSetNamesNoTaskOfANetnsOutsideIt) {
  pwru_event e = testing::FakeKernel::event(1, 0, 4026539999u);
  e.pid = static_cast<std::uint32_t>(getpid());  // in this process's netns, which the set leaves out
  kernel_->feed(e);
  TraceStream stream = start_ok(R"({"netns":[4026539999,4026539998],"duration":"100ms"})");
  stream(sink_);
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[0]).at("process"), "-:0");
  // A set of one is a single-netns trace: the compare, no map.
  stream = start_ok(R"({"netns":[4026539999],"duration":"10ms"})");
  EXPECT_TRUE(kernel_->last_config()->netns_set.empty());
  EXPECT_TRUE(kernel_->netns_filter().empty());
  EXPECT_EQ(kernel_->last_config()->filter.netns, 4026539999u);
  EXPECT_EQ(kernel_->last_config()->filter.netns_in_map, 0);
}

TEST_F(TraceServiceOverFakes, TracesOverTheCapAre429UntilOneEnds) {
  std::vector<TraceStream> running;
  for (std::uint32_t i = 0; i < kCap; ++i) running.push_back(start_ok(R"({"duration":"1s"})"));
  const Answer over = start(service_, R"({"duration":"1s"})");
  EXPECT_EQ(over.status, 429);
  EXPECT_EQ(over.message,
            "2 traces are running, this agent's cap (traces.max_concurrent); wait for one to end or "
            "cancel one (GET /v1/traces, DELETE /v1/traces/ID)");
  EXPECT_EQ(kernel_->alive(), static_cast<int>(kCap));  // the refused one loaded nothing
  running.pop_back();                                   // a response dropped unsent ends its trace
  EXPECT_NO_THROW(running.push_back(start_ok(R"({"duration":"1s"})")));
}

TEST_F(TraceServiceOverFakes, AProgramTheKernelRefusesIs500AndGivesItsSlotBack) {
  kernel_->load_failure = "the verifier said no";
  for (std::uint32_t i = 0; i < kCap + 1; ++i) {
    const Answer a = start(service_, R"({"duration":"1s"})");
    EXPECT_EQ(a.status, 500);
    EXPECT_EQ(a.message, "loading the trace's programs failed: the verifier said no");
  }
  kernel_->load_failure.clear();
  kernel_->usage_failure = "this node cannot";
  const Answer usage = start(service_, R"({"duration":"1s"})");
  EXPECT_EQ(usage.status, 400);
  EXPECT_EQ(usage.message, "this node cannot");
  kernel_->usage_failure.clear();
  EXPECT_EQ(only_trace_id(), "");
  std::vector<TraceStream> running;
  for (std::uint32_t i = 0; i < kCap; ++i) EXPECT_NO_THROW(running.push_back(start_ok(R"({"duration":"1s"})")));
}

TEST_F(TraceServiceOverFakes, AFailureAfterTheProgramsLoadedLeavesNothingBehind) {
  kernel_->read_failure = "no ring buffer";
  const Answer a = start(service_, R"({"duration":"1s"})");
  EXPECT_EQ(a.status, 500);
  EXPECT_EQ(a.message, "loading the trace's programs failed: no ring buffer");
  EXPECT_EQ(kernel_->alive(), 0);
  EXPECT_EQ(kernel_->calls(), (std::vector<std::string>{"load", "unload"}));
  EXPECT_EQ(only_trace_id(), "");
  kernel_->read_failure.clear();
  std::vector<TraceStream> running;
  for (std::uint32_t i = 0; i < kCap; ++i) EXPECT_NO_THROW(running.push_back(start_ok(R"({"duration":"1s"})")));
}

}  // namespace
}  // namespace pwru
