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
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
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

// "pods": several pods of this node in one trace. Their netns are files in
// a fake /proc (a pod's process: its cgroup names the pod, ns/net is a file
// whose inode stands for the netns), so the pins work without root.
class TraceServicePods : public ::testing::Test {
 protected:
  struct FakePod {
    std::string uid;
    std::uint32_t netns = 0;
  };

  TraceServicePods()
      : proc_root_(std::filesystem::temp_directory_path() /
                   ("pwru-pods-" + std::to_string(getpid()) + "-" + std::to_string(std::rand()))),
        kernel_(std::make_shared<testing::FakeKernel>()),
        btf_(std::make_shared<KernelBtf>(testing::empty_btf())),
        auth_(std::make_shared<FakeAuth>()) {
    add_pod("web-0", "a5c1f8d5-1919-434d-add7-4afaafdaef89", 100);
    add_pod("web-1", "4eede96e-e976-4573-bc90-68dfe2516d3b", 200);
    service_ = std::make_unique<TraceService>(config(), directory(), auth_);
  }
  ~TraceServicePods() override {
    service_.reset();
    std::filesystem::remove_all(proc_root_);
  }

  void add_pod(const std::string& name, const std::string& uid, int pid) {
    const std::filesystem::path dir = proc_root_ / std::to_string(pid);
    std::filesystem::create_directories(dir / "ns");
    std::ofstream(dir / "ns" / "net") << name;
    std::string slice = uid;
    for (char& c : slice)
      if (c == '-') c = '_';
    std::ofstream(dir / "cgroup") << "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" << slice
                                  << ".slice/cri-containerd-0123456789abcdef.scope\n";
    struct stat st {};
    EXPECT_EQ(stat((dir / "ns" / "net").c_str(), &st), 0);
    pods_[name] = FakePod{uid, static_cast<std::uint32_t>(st.st_ino)};
    present_.insert(uid);
  }

  TraceServiceConfig config() {
    TraceServiceConfig c;
    c.node_name = "n1";
    c.proc_root = proc_root_.string();
    c.load_session = [kernel = kernel_, btf = btf_](const TraceConfig& trace, LineSink& sink) {
      return std::make_unique<TraceSession>(*btf, trace, sink, kernel->loader());
    };
    c.start_fanout = [this](const TraceCaller& caller, const TraceTarget& target,
                            const std::function<TraceRequest()>& parse_request, std::string_view,
                            const std::string&) -> TraceStream {
      if (!fanout_enabled_) throw RequestError(500, "start_fanout called while it should be null");
      fanouts_.push_back(caller.user + " " + target.namespace_name + " " + target.service + target.selector);
      parse_request();  // as the fan-out does once it knows the caller may trace a pod
      return [](LineSink& out) { out.write("{\"fanned\":true}\n"); };
    };
    return c;
  }

  PodDirectory directory() {
    PodDirectory d;
    d.netns_of = [this](const std::string& ns, const std::string& name) {
      PodNetns out;
      const auto it = pods_.find(name);
      if (ns != "shop" || it == pods_.end()) {
        out.error = "pod " + ns + "/" + name + " is not on this node (or the API server has not listed it yet)";
        out.not_here = true;
        return out;
      }
      out.netns = it->second.netns;
      out.pod_uid = it->second.uid;
      return out;
    };
    d.present = [this](const std::string& uid) {
      std::lock_guard lock(mu_);
      return present_.count(uid) != 0;
    };
    return d;
  }

  void remove(const std::string& name) {
    std::lock_guard lock(mu_);
    present_.erase(pods_.at(name).uid);
  }

  TraceStream start_ok(const std::string& body) { return service_->start(body, "127.0.0.1:1", "Bearer t"); }

  static nlohmann::json summary_of(const std::vector<std::string>& lines) {
    if (lines.empty()) return nullptr;
    const nlohmann::json last = nlohmann::json::parse(lines.back());
    return last.contains("summary") ? last.at("summary") : nullptr;
  }

  static std::uint64_t clock_ns(clockid_t clock) {
    timespec t{};
    clock_gettime(clock, &t);
    return static_cast<std::uint64_t>(t.tv_sec) * 1000000000u + static_cast<std::uint64_t>(t.tv_nsec);
  }

  std::uint32_t netns_of(const std::string& name) const { return pods_.at(name).netns; }

  std::filesystem::path proc_root_;
  std::shared_ptr<testing::FakeKernel> kernel_;
  std::shared_ptr<KernelBtf> btf_;
  std::shared_ptr<FakeAuth> auth_;
  std::map<std::string, FakePod> pods_;
  std::mutex mu_;
  std::set<std::string> present_;
  bool fanout_enabled_ = true;
  std::vector<std::string> fanouts_;
  std::unique_ptr<TraceService> service_;
  testing::RecordingSink sink_;
};

TEST_F(TraceServicePods, APodsTraceIsOneTraceWhoseEventsNameTheirPod) {
  kernel_->feed(testing::FakeKernel::event(1, 0, netns_of("web-0")));
  kernel_->feed(testing::FakeKernel::event(2, 0, netns_of("web-1")));
  kernel_->feed(testing::FakeKernel::event(3, 0, 4026539999u));  // no pod of the set's
  TraceStream stream = start_ok(R"({"namespace":"shop","pods":["web-0","web-1","web-9"],"duration":"300ms"})");
  // Each pod authorized, the one of another node too (its name is reported).
  EXPECT_EQ(auth_->calls,
            (std::vector<std::string>{"authenticate Bearer t", "authorize alice create shop/web-0",
                                      "authorize alice create shop/web-1", "authorize alice create shop/web-9"}));
  const nlohmann::json listed = nlohmann::json::parse(service_->list_json("Bearer t")).at("traces");
  ASSERT_EQ(listed.size(), 1u);
  const std::optional<TraceConfig> loaded = kernel_->last_config();
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->netns_set, (std::vector<std::uint32_t>{netns_of("web-0"), netns_of("web-1")}));
  EXPECT_EQ(loaded->filter.netns_in_map, 1);
  EXPECT_EQ(loaded->filter.track_skb_in_netns, 1);
  EXPECT_EQ(loaded->node_name, "n1");
  EXPECT_EQ(loaded->pod_labels.size(), 2u);
  EXPECT_FALSE(loaded->wall_clock);
  stream(sink_);
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 4u);
  const nlohmann::json first = nlohmann::json::parse(lines[0]), second = nlohmann::json::parse(lines[1]),
                       third = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(lines[0].rfind("{\"skb\":", 0), 0u) << lines[0];
  EXPECT_EQ(first.at("node"), "n1");
  EXPECT_EQ(first.at("namespace"), "shop");
  EXPECT_EQ(first.at("pod"), "web-0");
  EXPECT_EQ(second.at("pod"), "web-1");
  EXPECT_FALSE(third.contains("pod"));
  const nlohmann::json summary = summary_of(lines);
  ASSERT_TRUE(summary.is_object()) << lines.back();
  EXPECT_EQ(summary.at("ended"), "duration");
  EXPECT_EQ(summary.at("node"), "n1");
  EXPECT_EQ(summary.at("pods"),
            (nlohmann::json{{"shop/web-0", "traced"}, {"shop/web-1", "traced"}, {"shop/web-9", "not on node n1"}}));
}

TEST_F(TraceServicePods, ASinglePodOfASetIsTheNetnsCompareAndStillLabelled) {
  kernel_->feed(testing::FakeKernel::event(1, 0, netns_of("web-1")));
  TraceStream stream = start_ok(R"({"namespace":"shop","pods":["web-1","web-7"],"duration":"100ms"})");
  EXPECT_TRUE(kernel_->last_config()->netns_set.empty());
  EXPECT_EQ(kernel_->last_config()->filter.netns, netns_of("web-1"));
  stream(sink_);
  EXPECT_EQ(nlohmann::json::parse(sink_.lines().at(0)).at("pod"), "web-1");
}

TEST_F(TraceServicePods, NoPodOfTheListOnThisNodeIs404SayingWhyForEach) {
  try {
    start_ok(R"({"namespace":"shop","pods":["web-8","web-9"]})");
    ADD_FAILURE() << "started";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 404);
    EXPECT_NE(std::string(e.what()).find("shop/web-8: not on node n1; shop/web-9: not on node n1"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(kernel_->alive(), 0);
}

TEST_F(TraceServicePods, OnePodGoneDoesNotEndTheTraceAllGoneDo) {
  remove("web-0");
  TraceStream stream = start_ok(R"({"namespace":"shop","pods":["web-0","web-1"],"duration":"600ms"})");
  stream(sink_);
  nlohmann::json summary = summary_of(sink_.lines());
  ASSERT_TRUE(summary.is_object());
  EXPECT_EQ(summary.at("ended"), "duration");
  EXPECT_EQ(summary.at("pods").at("shop/web-0").get<std::string>().rfind("gone after 0.", 0), 0u) << summary;
  EXPECT_EQ(summary.at("pods").at("shop/web-1"), "traced");
  stream = nullptr;

  testing::RecordingSink second;
  stream = start_ok(R"({"namespace":"shop","pods":["web-0","web-1"],"duration":"60s"})");
  remove("web-1");
  const auto started = std::chrono::steady_clock::now();
  stream(second);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  summary = summary_of(second.lines());
  ASSERT_TRUE(summary.is_object());
  EXPECT_EQ(summary.at("ended"), "pods gone");
  EXPECT_EQ(summary.at("pods").at("shop/web-1").get<std::string>().rfind("gone after", 0), 0u) << summary;
}

// A fan-out's part: every event line begins with its wall-clock time, the
// merger's watermark comes as heartbeats, and journeys as lines of their own.
TEST_F(TraceServicePods, MergeModeLinesStartWithWallClockBetweenHeartbeats) {
  const std::uint64_t wall_before = clock_ns(CLOCK_REALTIME);
  pwru_event a = testing::FakeKernel::event(1, 0, netns_of("web-0"));
  a.ts_ns = clock_ns(CLOCK_MONOTONIC);
  pwru_event b = testing::FakeKernel::event(2, 1, netns_of("web-1"));
  b.ts_ns = a.ts_ns + 1000;
  kernel_->feed(a);
  kernel_->feed(b);
  TraceStream stream = service_->start_merged_part(TraceCaller{"alice", "uid-alice", {}, "{}"},
                                                   R"({"namespace":"shop","pods":["web-0","web-1"],)"
                                                   R"("duration":"450ms","summary":true})",
                                                   "coordinator");
  EXPECT_EQ(auth_->calls,
            (std::vector<std::string>{"authorize alice create shop/web-0", "authorize alice create shop/web-1"}));
  EXPECT_TRUE(kernel_->last_config()->wall_clock);
  stream(sink_);
  const std::uint64_t wall_after = clock_ns(CLOCK_REALTIME);
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_GE(lines.size(), 6u);
  EXPECT_EQ(lines[0].rfind("{\"heartbeat\":{\"wall_ns\":", 0), 0u) << lines[0];
  int events = 0, heartbeats = 0, journeys = 0;
  std::uint64_t last_heartbeat = 0;
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    const nlohmann::json line = nlohmann::json::parse(lines[i]);
    if (lines[i].rfind("{\"wall_ns\":", 0) == 0) {
      ++events;
      const std::uint64_t wall = std::strtoull(lines[i].c_str() + 11, nullptr, 10);
      EXPECT_EQ(wall, line.at("wall_ns").get<std::uint64_t>());
      EXPECT_GE(wall + 1000000000, wall_before);
      EXPECT_LE(wall, wall_after + 1000000000);
      EXPECT_EQ(line.at("pod"), events == 1 ? "web-0" : "web-1");
      EXPECT_EQ(line.at("node"), "n1");
    } else if (line.contains("heartbeat")) {
      ++heartbeats;
      const std::uint64_t wall = line.at("heartbeat").at("wall_ns").get<std::uint64_t>();
      EXPECT_GE(wall, last_heartbeat);
      EXPECT_GE(wall + 1000000, wall_before);  // a heartbeat claims 1 ms less than it read
      EXPECT_LE(wall, wall_after);
      last_heartbeat = wall;
    } else if (line.contains("journey")) {
      ++journeys;
      const nlohmann::json& j = line.at("journey");
      EXPECT_EQ(j.at("node"), "n1");
      EXPECT_EQ(j.at("namespace"), "shop");
      EXPECT_TRUE(j.at("pod") == "web-0" || j.at("pod") == "web-1") << j;
      EXPECT_LE(j.at("first_wall_ns").get<std::uint64_t>(), j.at("last_wall_ns").get<std::uint64_t>());
    } else {
      ADD_FAILURE() << lines[i];
    }
  }
  EXPECT_EQ(events, 2);
  EXPECT_GE(heartbeats, 3);  // one at attach, then one each 100 ms of the 450
  EXPECT_EQ(journeys, 2);
  const nlohmann::json summary = summary_of(lines);
  ASSERT_TRUE(summary.is_object()) << lines.back();
  EXPECT_FALSE(summary.contains("journeys"));
  EXPECT_EQ(summary.at("node"), "n1");
  EXPECT_EQ(summary.at("events_sent"), 2);
}

TEST_F(TraceServicePods, MergeModeLeavesAnythingButAPodSetAsItIs) {
  kernel_->feed(testing::FakeKernel::event(1, 0, netns_of("web-0")));
  TraceStream stream = service_->start_merged_part(TraceCaller{"alice", "uid-alice", {}, "{}"},
                                                   R"({"namespace":"shop","pod":"web-0","duration":"100ms"})", "c");
  EXPECT_FALSE(kernel_->last_config()->wall_clock);
  stream(sink_);
  ASSERT_EQ(sink_.lines().size(), 2u);
  EXPECT_EQ(sink_.lines()[0].rfind("{\"skb\":", 0), 0u);
  EXPECT_FALSE(summary_of(sink_.lines()).contains("node"));
}

// "service" and "selector" go to start_fanout, which authorizes per pod
// itself: no single-pod review here, but the whole request is checked.
TEST_F(TraceServicePods, AServiceRequestGoesToTheFanOutWithoutASinglePodReview) {
  TraceStream stream = start_ok(R"({"namespace":"shop","service":"web","duration":"5s"})");
  EXPECT_EQ(fanouts_, (std::vector<std::string>{"alice shop web"}));
  stream(sink_);
  EXPECT_EQ(sink_.lines(), (std::vector<std::string>{R"({"fanned":true})"}));
  start_ok(R"({"namespace":"shop","selector":"app=web"})");
  EXPECT_EQ(fanouts_.back(), "alice shop app=web");
  EXPECT_EQ(auth_->calls, std::vector<std::string>(2, "authenticate Bearer t"));
  try {
    start_ok(R"({"namespace":"shop","service":"web","duration":"2h"})");
    ADD_FAILURE() << "started";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("cap of 600s"), std::string::npos) << e.what();
  }
  // A node's part never fans out again.
  try {
    service_->start_merged_part(TraceCaller{"alice", "uid-alice", {}, "{}"}, R"({"namespace":"shop","service":"web"})",
                                "c");
    ADD_FAILURE() << "fanned out again";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("never fans out again"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fanouts_.size(), 3u);  // the 2h one reached the fan-out, which read the caps after its checks
}

TEST(TraceServiceFanout, WithoutAFanOutAServiceRequestIs400NamingKubernetes) {
  auto auth = std::make_shared<FakeAuth>();
  TraceService service(TraceServiceConfig{}, {}, auth);
  const Answer a = start(service, R"({"namespace":"shop","service":"web"})");
  EXPECT_EQ(a.status, 400);
  EXPECT_NE(a.message.find("needs Kubernetes (the API server)"), std::string::npos) << a.message;
  EXPECT_EQ(auth->calls, std::vector<std::string>{"authenticate Bearer t"});
}

}  // namespace
}  // namespace pwru
