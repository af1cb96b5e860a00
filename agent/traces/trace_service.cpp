#include "traces/trace_service.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <malloc.h>

#include <random>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "filter/pcap_compiler.h"
#include "output/sink.h"
#include "session/trace_session.h"
#include "traces/trace_forward.h"

namespace pwru {

namespace {

std::string new_trace_id() {
  static std::mt19937_64 random(std::random_device{}());
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "tr-";
  for (int i = 0; i < 12; ++i) id += kHex[random() % 16];
  return id;
}

std::string iso_time(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// One NDJSON line. Strings may quote what a client sent (filters, pod
// names), which need not be valid UTF-8: replaced, never a throw mid-stream.
std::string json_line(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

// Counts the lines (events) a trace sends and passes them on to the
// response, which only exists once streaming starts.
class RunningTrace::ForwardingSink final : public LineSink {
 public:
  explicit ForwardingSink(std::atomic<std::uint64_t>& lines) : lines_(lines) {}
  void attach(LineSink* to) { to_ = to; }
  void write(std::string_view text) override {
    if (!to_ || text.empty()) return;
    std::uint64_t n = 0;
    for (char c : text) n += c == '\n';
    to_->write(text);
    lines_ += n;
  }
  void flush() override {
    if (to_) to_->flush();
  }
  bool closed() const override { return to_ && to_->closed(); }

 private:
  std::atomic<std::uint64_t>& lines_;
  LineSink* to_ = nullptr;
};

TraceService::TraceService(TraceServiceConfig config, PodNetnsLookup pods, std::shared_ptr<const TraceAuth> auth)
    : config_(std::move(config)), pods_(std::move(pods)), auth_(std::move(auth)) {}

TraceService::~TraceService() { stop_all(); }

TraceStream TraceService::start(std::string_view body, const std::string& remote, const std::string& authorization,
                                const std::string& forwarded_by) {
  const AgentConfig::Traces& limits = config_.traces;
  // Who asks comes first: strangers learn nothing, not even what their
  // request got wrong.
  const TraceCaller caller = auth_->authenticate(authorization);
  TraceRequest request = parse_trace_request(
      body, TraceRequestLimits{std::chrono::seconds(limits.default_duration_seconds),
                               std::chrono::seconds(limits.max_duration_seconds), limits.default_max_events,
                               limits.max_events});
  auth_->authorize(caller, TraceAction{"create", request.namespace_name, request.pod});
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw RequestError(503, "the agent is shutting down; try another agent or later");
    if (traces_.size() + reserved_ + relays_ >= limits.max_concurrent)
      throw RequestError(429, std::to_string(limits.max_concurrent) +
                                  " traces are running, this agent's cap (traces.max_concurrent); wait for one to "
                                  "end or cancel one (GET /v1/traces, DELETE /v1/traces/ID)");
    ++reserved_;
  }
  struct Unreserve {
    TraceService& s;
    ~Unreserve() {
      std::lock_guard<std::mutex> lock(s.mutex_);
      --s.reserved_;
    }
  } unreserve{*this};

  TraceConfig trace;
  std::string target = "node";
  if (request.names_pod()) {
    const std::string who = request.namespace_name + "/" + request.pod;
    if (!pods_)
      throw RequestError(404, "this agent does not know pods (Kubernetes is off: see its log); trace by "
                              "\"netns\" instead");
    const PodNetns pod = pods_(request.namespace_name, request.pod);
    if (!pod.error.empty()) {
      if (!forwarded_by.empty())
        throw RequestError(404, pod.error + " (the agent on node " + forwarded_by + " sent the request here)");
      if (!config_.peers) throw RequestError(404, pod.error);
      const PeerAgent peer = config_.peers->locate(request.namespace_name, request.pod);
      // The API server places it here, but its processes are not up yet.
      if (peer.node == config_.peers->node_name()) throw RequestError(404, pod.error);
      return relay(peer, body, authorization, request);
    }
    if (pod.host_network)
      throw RequestError(400, "pod " + who + " uses the host's network: its packets cannot be told apart from "
                              "the node's. Trace the node (leave out namespace/pod) with a filter for its ports");
    trace.filter.netns = pod.netns;
    target = "pod " + who + " (netns " + std::to_string(pod.netns) + ")";
  } else if (request.netns) {
    trace.filter.netns = *request.netns;
    target = "netns " + std::to_string(*request.netns);
  }
  if (!request.filter.empty()) {
    try {
      trace.pcap = std::make_shared<const CompiledPcap>(compile_pcap(request.filter));
    } catch (const UsageError& e) {
      throw RequestError(400, std::string("\"filter\": ") + e.what());
    }
  }
  trace.output = request.output;
  trace.limit = request.max_events;
  trace.ring_bytes = limits.ring_buffer_bytes;
  trace.backend = config_.backend;
  trace.filter_func = request.functions;
  trace.filter.track_skb = request.track_skb ? 1 : 0;
  trace.summary = request.summary;

  auto running = std::shared_ptr<RunningTrace>(
      new RunningTrace(*this, new_trace_id(), std::move(request), std::move(target), remote, caller.user));
  try {
    {
      const KernelBtf btf = KernelBtf::load();
      running->session_ = std::make_unique<TraceSession>(btf, trace, *running->sink_);
    }
    // The parsed BTF was tens of MiB: give it back now, or every trace
    // would leave the agent that much bigger.
    malloc_trim(0);
  } catch (const UsageError& e) {
    throw RequestError(400, e.what());
  } catch (const std::exception& e) {
    throw RequestError(500, std::string("loading the trace's programs failed: ") + e.what());
  }
  if (!running->request_.functions.empty() && running->session_->backend_name() == "tracepoint")
    throw RequestError(400, "\"functions\" selects kprobes, and this node has no kprobe backend (" +
                                running->session_->backend_reason() + "); leave it out to trace the skb tracepoints");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw RequestError(503, "the agent is shutting down; try another agent or later");
    traces_[running->id_] = running.get();
  }
  spdlog::info("trace {}: {} for {}{}, filter '{}', up to {} ms / {} events", running->id_, running->target_, remote,
               caller.user.empty() ? "" : " (" + caller.user + ")",
               running->request_.filter, running->request_.duration.count(), running->request_.max_events);
  return [running](LineSink& out) { running->stream(out); };
}

TraceStream TraceService::relay(const PeerAgent& peer, std::string_view body, const std::string& authorization,
                                const TraceRequest& request) {
  auto answer = std::make_shared<PeerTrace>(peer, body, authorization, config_.peers->node_name());
  if (answer->status() != 200) {
    const std::string text = answer->read_body();
    std::string message = text;
    try {
      message = nlohmann::json::parse(text).at("error").get<std::string>();
    } catch (const nlohmann::json::exception&) {
    }
    throw RequestError(answer->status(), "the pwru-agent on node " + peer.node + " answered: " + message);
  }
  // Holds a slot for as long as the relay runs (or until the response is
  // dropped unsent), like a local trace.
  struct RelaySlot {
    TraceService& service;
    explicit RelaySlot(TraceService& s) : service(s) {
      std::lock_guard<std::mutex> lock(service.mutex_);
      ++service.relays_;
    }
    ~RelaySlot() {
      std::lock_guard<std::mutex> lock(service.mutex_);
      --service.relays_;
    }
  };
  auto slot = std::make_shared<RelaySlot>(*this);
  spdlog::info("trace of pod {}/{} relayed to the agent on node {} ({}:{})", request.namespace_name, request.pod,
               peer.node, peer.host, peer.port);
  return [answer, slot, node = peer.node](LineSink& out) {
    if (answer->relay(out) || out.closed()) return;
    // The peer died or the network broke: the caller still gets a last
    // line saying so, not a stream that just stops.
    spdlog::warn("trace relayed to the agent on node {}: its stream broke off", node);
    const nlohmann::json summary = {
        {"summary", {{"ended", "the pwru-agent on node " + node + " stopped answering"}, {"node", node}}}};
    out.write(json_line(summary));
    out.flush();
  };
}

void TraceService::release(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  traces_.erase(id);
}

std::string TraceService::list_json(const std::string& authorization) const {
  auth_->authorize(auth_->authenticate(authorization), TraceAction{"list", "", ""});
  nlohmann::json list = nlohmann::json::array();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [id, t] : traces_) {
    list.push_back({{"id", id},
                    {"target", t->target_},
                    {"filter", t->request_.filter},
                    {"remote", t->remote_},
                    {"user", t->user_},
                    {"started", iso_time(t->started_)},
                    {"duration_s", t->request_.duration.count() / 1000.0},
                    {"max_events", t->request_.max_events},
                    {"events_sent", t->events_sent_.load()}});
  }
  return json_line({{"traces", list}});
}

bool TraceService::cancel(const std::string& id, const std::string& authorization) {
  auth_->authorize(auth_->authenticate(authorization), TraceAction{"delete", "", ""});
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = traces_.find(id);
  if (it == traces_.end()) return false;
  it->second->cancel("cancelled");
  return true;
}

void TraceService::stop_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
  for (auto& [id, t] : traces_) t->cancel("agent stopping");
}

RunningTrace::RunningTrace(TraceService& service, std::string id, TraceRequest request, std::string target,
                           std::string remote, std::string user)
    : service_(service),
      id_(std::move(id)),
      request_(std::move(request)),
      target_(std::move(target)),
      remote_(std::move(remote)),
      user_(std::move(user)),
      started_(std::chrono::system_clock::now()),
      sink_(std::make_unique<ForwardingSink>(events_sent_)) {}

RunningTrace::~RunningTrace() {
  session_.reset();  // detaches whatever is still attached
  service_.release(id_);
}

void RunningTrace::cancel(const char* why) {
  const char* none = nullptr;
  stop_reason_.compare_exchange_strong(none, why);
}

void RunningTrace::stream(LineSink& out) {
  sink_->attach(&out);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + request_.duration;
  const auto stop = [&] { return stop_reason_.load() != nullptr || std::chrono::steady_clock::now() >= deadline; };
  const AttachReport report = session_->attach([&] { return stop() || out.closed(); });
  session_->run(stop);
  const TraceStats stats = session_->finish();
  std::string ended = "duration";
  if (stats.limit_reached) ended = "max_events";
  else if (out.closed()) ended = "client gone";
  else if (const char* why = stop_reason_.load()) ended = why;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("trace {}: ended ({}) after {:.1f} s: {} events sent, {} lost", id_, ended, seconds,
               stats.events_written, stats.events_lost);
  nlohmann::json summary = {{"summary",
                                   {{"id", id_},
                                    {"target", target_},
                                    {"events_sent", stats.events_written},
                                    {"events_lost", stats.events_lost},
                                    {"ended", ended},
                                    {"seconds", seconds},
                                    {"backend", session_->backend_name()},
                                    {"hooks_attached", report.attached},
                                    {"hooks_skipped", report.skipped.size()}}}};
  if (request_.summary) {
    nlohmann::json journeys = nlohmann::json::array();
    for (const Journey& j : session_->journeys()) journeys.push_back(journey_json(j));
    summary["summary"]["journeys"] = std::move(journeys);
    summary["summary"]["journeys_not_followed"] = session_->skbs_not_followed();
  }
  out.write(json_line(summary));
  out.flush();
  sink_->attach(nullptr);
}

}  // namespace pwru
