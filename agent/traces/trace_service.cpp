#include "traces/trace_service.h"

#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "common/function_name_filter.h"
#include "filter/pcap_compiler.h"
#include "k8s/proc_scan.h"
#include "output/sink.h"
#include "probe/backend_select.h"
#include "probe/kprobe_plan.h"
#include "session/trace_session.h"
#include "traces/trace_forward.h"
#include "traces/trace_lines.h"

namespace pwru {

namespace {

// How often a pod-scoped trace asks whether its pod is still there: the
// answer comes from the watch cache, a map lookup.
constexpr auto kPodCheckEvery = std::chrono::milliseconds(250);
// Merge mode: how often a node's part tells the merger how far it has read.
constexpr auto kHeartbeatEvery = std::chrono::milliseconds(100);

// How much earlier than a poll a heartbeat claims: an event's time is
// taken before its ring slot is reserved, so an event on another CPU may
// be that much older than a poll that did not see it yet.
constexpr std::int64_t kHeartbeatMarginNs = 1000000;

std::int64_t monotonic_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// What a request traces, resolved: a pod's netns (held open), a netns, the
// node, or a pod on another node whose agent gets the request.
struct TracedTarget {
  std::string description = "node";                    // "pod shop/web-0 (netns 4026532...)", "netns ...", "node"
  std::vector<UniqueFd> netns_pins;                    // one per traced netns with a process in it
  std::uint32_t netns = 0;                             // 0: every netns, or the netns_set's
  std::vector<std::uint32_t> netns_set;                // "netns" as an array: several netns in one trace
  std::vector<TracedPod> pods;                         // pod-scoped traces: ended when the pods leave
  bool pod_set = false;                                // "pods": every event labelled with its pod
  std::map<std::string, std::string> pods_not_traced;  // "ns/name" -> why
  std::optional<PeerAgent> peer;
};

TracedTarget resolve_pod(const TraceRequest& request, const PodDirectory& pods, const TraceServiceConfig& config,
                         const std::string& forwarded_by) {
  const std::string who = request.namespace_name + "/" + request.pod;
  if (!pods.netns_of)
    throw RequestError(404,
                       "this agent does not know pods (Kubernetes is off: see its log); trace by "
                       "\"netns\" instead");
  const PodNetns pod = pods.netns_of(request.namespace_name, request.pod);
  TracedTarget target;
  if (!pod.error.empty()) {
    if (!forwarded_by.empty())
      throw RequestError(404, pod.error + " (the agent on node " + forwarded_by + " sent the request here)");
    if (!config.peers) throw RequestError(404, pod.error);
    target.peer = config.peers->locate(request.namespace_name, request.pod);
    // The API server places it here, but its processes are not up yet.
    if (target.peer->node == config.peers->node_name()) throw RequestError(404, pod.error);
    return target;
  }
  if (pod.host_network)
    throw RequestError(400, "pod " + who +
                                " uses the host's network: its packets cannot be told apart from "
                                "the node's. Trace the node (leave out namespace/pod) with a filter for its ports");
  target.netns_pins.push_back(pin_netns(config.proc_root, pod.netns, pod.pod_uid));
  if (!target.netns_pins.back())
    throw RequestError(404, "pod " + who + " has no process in its network namespace " + std::to_string(pod.netns) +
                                " any more (restarting, or being deleted); try "
                                "again in a few seconds");
  target.pods.push_back(TracedPod{request.namespace_name, request.pod, pod.pod_uid, pod.netns, ""});
  target.netns = pod.netns;
  target.description = "pod " + who + " (netns " + std::to_string(pod.netns) + ")";
  return target;
}

// "pods": those on this node, each netns held open; the others are
// reported in the summary, never relayed (a fan-out sends each node its own).
TracedTarget resolve_pod_set(const TraceRequest& request, const PodDirectory& pods, const TraceServiceConfig& config,
                             const std::string& node) {
  if (!pods.netns_of)
    throw RequestError(404,
                       "this agent does not know pods (Kubernetes is off: see its log); trace by "
                       "\"netns\" instead");
  const std::string where = node.empty() ? "this node" : "node " + node;
  TracedTarget target;
  target.pod_set = true;
  std::string names, inodes;
  for (const std::string& name : request.pods) {
    const std::string who = request.namespace_name + "/" + name;
    const PodNetns pod = pods.netns_of(request.namespace_name, name);
    if (!pod.error.empty()) {
      target.pods_not_traced[who] = pod.not_here ? "not on " + where : pod.error;
      continue;
    }
    if (pod.host_network) {
      target.pods_not_traced[who] = "uses the host's network: its packets cannot be told apart from the node's";
      continue;
    }
    UniqueFd pin = pin_netns(config.proc_root, pod.netns, pod.pod_uid);
    if (!pin) {
      target.pods_not_traced[who] = "has no process in its network namespace " + std::to_string(pod.netns) +
                                    " any more (restarting, or being deleted)";
      continue;
    }
    target.netns_pins.push_back(std::move(pin));
    target.pods.push_back(TracedPod{request.namespace_name, name, pod.pod_uid, pod.netns, ""});
    // Pods sharing a netns (never in Kubernetes) would be one set entry.
    if (std::find(target.netns_set.begin(), target.netns_set.end(), pod.netns) == target.netns_set.end())
      target.netns_set.push_back(pod.netns);
    names += (names.empty() ? "" : ",") + name;
    inodes += (inodes.empty() ? "" : ",") + std::to_string(pod.netns);
  }
  if (target.pods.empty()) {
    std::string why;
    for (const auto& [who, reason] : target.pods_not_traced) why += (why.empty() ? "" : "; ") + who + ": " + reason;
    throw RequestError(
        404, "none of the pods can be traced on " + where + " (" + why + "); send each node's agent the pods it runs");
  }
  // One netns is the programs' plain compare; the labels stay.
  if (target.netns_set.size() == 1) {
    target.netns = target.netns_set.front();
    target.netns_set.clear();
  }
  target.description = "pods " + request.namespace_name + "/" + names + " (netns " + inodes + ")";
  return target;
}

TracedTarget resolve_target(const TraceRequest& request, const PodDirectory& pods, const TraceServiceConfig& config,
                            const std::string& forwarded_by, const std::string& node) {
  if (request.names_pod()) return resolve_pod(request, pods, config, forwarded_by);
  if (!request.pods.empty()) return resolve_pod_set(request, pods, config, node);
  TracedTarget target;
  if (request.netns) {
    // A node-level caller may trace any netns; held open when a process
    // lives in it, so the number keeps naming the same netns.
    target.netns_pins.push_back(pin_netns(config.proc_root, *request.netns));
    target.netns = *request.netns;
    target.description = "netns " + std::to_string(*request.netns);
  }
  if (!request.netns_set.empty()) {
    // The same right (the node's) and the same pins as one netns, each.
    target.description = "netns ";
    for (std::uint32_t inode : request.netns_set) {
      target.netns_pins.push_back(pin_netns(config.proc_root, inode));
      target.description += (target.netns_set.empty() ? "" : ",") + std::to_string(inode);
      target.netns_set.push_back(inode);
    }
  }
  return target;
}

// The session's settings: what the request asks, within this agent's
// limits, in the netns resolved for it. 400 for a filter that does not compile.
TraceConfig trace_config(const TraceRequest& request, const TracedTarget& target, const TraceServiceConfig& config,
                         const std::shared_ptr<JourneyBudget>& summary_budget, const std::string& node, bool merge) {
  TraceConfig trace;
  if (target.pod_set) {
    trace.node_name = node;
    for (const TracedPod& pod : target.pods)
      trace.pod_labels.emplace(pod.netns, PodLabel{pod.namespace_name, pod.name});
    trace.wall_clock = merge;
  }
  trace.filter.netns = target.netns;
  // A tracked skb is reported outside the traced netns by pwru; a scoped
  // trace (one netns or a set) must never see another netns's packets
  // through it.
  trace.filter.track_skb_in_netns = target.netns != 0 || !target.netns_set.empty() ? 1 : 0;
  trace.netns_set = target.netns_set;
  if (!request.filter.empty()) {
    try {
      trace.pcap = std::make_shared<const CompiledPcap>(compile_pcap(request.filter));
    } catch (const UsageError& e) {
      throw RequestError(400, std::string("\"filter\": ") + e.what());
    }
  }
  trace.output = request.output;
  trace.limit = request.max_events;
  trace.ring_bytes = config.traces.ring_buffer_bytes;
  trace.backend = config.backend;
  trace.filter_func = request.functions;
  trace.filter.track_skb = request.track_skb ? 1 : 0;
  trace.summary = request.summary;
  trace.summary_budget = summary_budget;
  trace.hide_kernel_addresses = true;
  return trace;
}

// Loads the trace's programs, nothing attached: 400 for what the request
// asks that this node cannot do, 500 when loading fails.
std::unique_ptr<TraceSession> load_programs(const TraceSessionLoader& load, const TraceConfig& trace, LineSink& sink) {
  try {
    // The parsed BTF was tens of MiB: give it back once it is freed, also
    // when the request fails after it (a bad filter), or every trace would
    // leave the agent that much bigger.
    struct TrimWhenDone {
      ~TrimWhenDone() { malloc_trim(0); }
    } trim_when_done;
    return load(trace, sink);
  } catch (const UsageError& e) {
    throw RequestError(400, e.what());
  } catch (const std::exception& e) {
    throw RequestError(500, std::string("loading the trace's programs failed: ") + e.what());
  }
}

// pwru's rule, on every backend and before any program loads: a pattern
// that names none of this kernel's skb functions is a mistake, and proves
// the pattern was really run (RE2, linear time).
void check_functions_pattern(const KernelBtf& btf, const TraceConfig& trace) {
  if (trace.filter_func.empty()) return;
  const std::vector<SkbFunction> candidates = btf.skb_functions();
  if (count_matching(candidates, FunctionNameFilter(trace.filter_func)) == 0)
    throw UsageError("\"functions\": '" + trace.filter_func + "' matches no kernel function among " + "the " +
                     std::to_string(candidates.size()) + " of this node that take an skb; the " +
                     "whole name must match (pwru's rule): '^ip_.*', not '^ip_'");
  // Before tens of programs load only to be thrown away.
  const BackendChoice backend = choose_backend(trace.backend);
  if (!backend.kprobe)
    throw UsageError("\"functions\" selects kprobes, and this node has no kprobe backend (" + backend.reason +
                     "); leave it out to trace the skb tracepoints");
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

TraceService::TraceService(TraceServiceConfig config, PodDirectory pods, std::shared_ptr<const TraceAuth> auth)
    : config_(std::move(config)),
      pods_(std::move(pods)),
      auth_(std::move(auth)),
      summary_budget_(std::make_shared<JourneyBudget>(
          config_.traces.summary_memory_bytes,
          "traces.summary_memory_bytes = " + format_bytes(config_.traces.summary_memory_bytes) +
              ", shared by all traces",
          "narrow the trace (a filter, a pod, a shorter duration), run fewer summary traces at once, or raise "
          "traces.summary_memory_bytes with the pod's memory limit")) {}

TraceService::~TraceService() { stop_all(); }

TraceStream TraceService::start(std::string_view body, const std::string& remote, const std::string& authorization) {
  return start_as(auth_->authenticate(authorization), body, remote, "");
}

TraceStream TraceService::start_relayed(std::string_view body, const std::string& remote,
                                        const std::string& caller_header, const std::string& from_node, bool merge) {
  if (from_node.empty())
    throw RequestError(400, std::string("a relayed trace request names the relaying node in ") + kForwardedByHeader);
  const RelayedCaller relayed = decode_caller(caller_header);
  // The relaying agent vouches for its caller, but a user this agent
  // cannot check again would be trusted on that agent's word alone.
  if (config_.traces.auth == AgentConfig::Traces::Auth::kKubernetes && relayed.caller.user.empty())
    throw RequestError(403, "the pwru-agent on node " + from_node +
                                " relayed a request without the caller's "
                                "Kubernetes user (its traces.auth is not kubernetes, this agent's is); ask this "
                                "node's agent directly");
  return start_as(relayed.caller, body, remote + " (node " + from_node + ", for " + relayed.remote + ")", from_node,
                  merge);
}

TraceStream TraceService::start_merged_part(const TraceCaller& caller, std::string_view body,
                                            const std::string& remote) {
  const std::string node = node_name();
  return start_as(caller, body, remote, node.empty() ? "this node" : node, true);
}

std::string TraceService::node_name() const {
  if (!config_.node_name.empty()) return config_.node_name;
  return config_.peers ? config_.peers->node_name() : "";
}

TraceStream TraceService::start_as(const TraceCaller& caller, std::string_view body, const std::string& remote,
                                   const std::string& forwarded_by, bool merge) {
  const TraceTarget wanted = parse_trace_target(body);
  if (wanted.fans_out()) {
    const char* what = wanted.service.empty() ? "selector" : "service";
    // Each node's part names its pods: a node that fanned out again could
    // bounce requests between agents.
    if (!forwarded_by.empty())
      throw RequestError(400, std::string("a relayed trace request may not name a \"") + what +
                                  "\" (the pwru-agent on node " + forwarded_by +
                                  " sent it here): a node never fans out again; send this node its pods as \"pods\"");
    if (!config_.start_fanout)
      throw RequestError(400, std::string("tracing a \"") + what +
                                  "\" needs Kubernetes (the API server) to find its pods, and this agent does not "
                                  "use it (kubernetes is off: see its log); trace the pods with \"pods\" on each node");
    // Authorized per pod by the fan-out, which reads the rest of the body
    // only then.
    return config_.start_fanout(
        caller, wanted, [this, body] { return parse_request(body); }, body, remote);
  }
  TraceRequest request = authorized_request(caller, body, wanted);
  const Reservation slot(*this);
  const std::string node = node_name();
  TracedTarget target = resolve_target(request, pods_, config_, forwarded_by, node);
  if (target.peer) return relay(*target.peer, body, caller, remote, request);
  const TraceConfig trace = trace_config(request, target, config_, summary_budget_, node, merge);
  auto running = std::shared_ptr<RunningTrace>(new RunningTrace(*this, new_trace_id("tr-"), std::move(request),
                                                                std::move(target.description), remote, caller.user));
  running->netns_pins_ = std::move(target.netns_pins);
  running->pods_ = std::move(target.pods);
  running->pod_set_ = target.pod_set;
  running->merge_ = merge && target.pod_set;
  running->node_ = node;
  running->pods_not_traced_ = std::move(target.pods_not_traced);
  running->pod_labels_ = trace.pod_labels;
  running->session_ = load_programs(config_.load_session, trace, *running->sink_);
  register_trace(running);
  spdlog::info("trace {}: {} for {}{}, filter '{}', up to {} ms / {} events", running->id_, running->target_, remote,
               caller.user.empty() ? "" : " (" + caller.user + ")", running->request_.filter,
               running->request_.duration.count(), running->request_.max_events);
  return [running](LineSink& out) { running->stream(out); };
}

// Who asks came first (start, start_relayed): strangers learn nothing, not
// even what their request got wrong. Then whether they may trace what they
// name, read alone from the body: only then the rest of it, whose checks
// reveal this agent's caps. A relayed caller is authorized here again: with
// auth kubernetes, by this agent's own SubjectAccessReview, so a relaying
// agent cannot grant more than the API server does.
TraceRequest TraceService::authorized_request(const TraceCaller& caller, std::string_view body,
                                              const TraceTarget& wanted) const {
  if (!wanted.pods.empty()) {
    // All of them, or the request is refused: a node's part of a fan-out
    // only names pods the coordinator found allowed.
    const std::vector<std::optional<std::string>> denials =
        auth_->authorize_pods(caller, wanted.namespace_name, wanted.pods);
    for (const std::optional<std::string>& denial : denials)
      if (denial) throw RequestError(403, *denial);
  } else {
    auth_->authorize(caller, TraceAction{"create", wanted.namespace_name, wanted.pod});
  }
  return parse_request(body);
}

TraceRequest TraceService::parse_request(std::string_view body) const {
  const AgentConfig::Traces& limits = config_.traces;
  return parse_trace_request(
      body, TraceRequestLimits{std::chrono::seconds(limits.default_duration_seconds),
                               std::chrono::seconds(limits.max_duration_seconds), limits.default_max_events,
                               limits.max_events, limits.max_pods_per_trace});
}

TraceService::Reservation::Reservation(TraceService& service) : service_(service) {
  std::lock_guard<std::mutex> lock(service_.mutex_);
  const std::size_t cap = service_.config_.traces.max_concurrent;
  if (service_.stopping_) throw RequestError(503, "the agent is shutting down; try another agent or later");
  if (service_.traces_.size() + service_.reserved_ + service_.relays_ >= cap)
    throw RequestError(429, std::to_string(cap) +
                                " traces are running, this agent's cap (traces.max_concurrent); wait for one to "
                                "end or cancel one (GET /v1/traces, DELETE /v1/traces/ID)");
  ++service_.reserved_;
}

TraceService::Reservation::~Reservation() {
  std::lock_guard<std::mutex> lock(service_.mutex_);
  --service_.reserved_;
}

void TraceService::register_trace(const std::shared_ptr<RunningTrace>& running) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) throw RequestError(503, "the agent is shutting down; try another agent or later");
  traces_[running->id_] = running.get();
}

std::unique_ptr<TraceSession> load_kernel_trace_session(const TraceConfig& trace, LineSink& sink) {
  const KernelBtf btf = KernelBtf::load();
  check_functions_pattern(btf, trace);
  return std::make_unique<TraceSession>(btf, trace, sink);
}

TraceStream TraceService::relay(const PeerAgent& peer, std::string_view body, const TraceCaller& caller,
                                const std::string& remote, const TraceRequest& request) {
  const AgentConfig::Traces::PeerTls& tls = config_.traces.peer_tls;
  // Never in clear: the request names the caller, and its answer is the
  // pod's packets.
  if (!tls.enabled())
    throw RequestError(503, "pod " + request.namespace_name + "/" + request.pod + " runs on node " + peer.node +
                                ", and this agent has no TLS files to relay the request there (traces.peer_tls; "
                                "the Helm chart sets it); ask that node's agent directly");
  // Quiet traces send nothing until their summary; the peer may take a
  // while to attach before its duration even starts.
  const auto quiet_for = std::chrono::duration_cast<std::chrono::seconds>(request.duration) + std::chrono::seconds(120);
  auto answer = std::make_shared<PeerTrace>(peer, tls, std::string(body), encode_caller(caller, remote),
                                            config_.peers->node_name(), quiet_for);
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
  spdlog::info("trace of pod {}/{} for {}{} relayed to the agent on node {} ({}:{}) over TLS", request.namespace_name,
               request.pod, remote, caller.user.empty() ? "" : " (" + caller.user + ")", peer.node, peer.host,
               peer.port);
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
  if (fanout_)
    for (nlohmann::json& row : fanout_->list_rows()) list.push_back(std::move(row));
  return json_line({{"traces", list}});
}

bool TraceService::cancel(const std::string& id, const std::string& authorization) {
  auth_->authorize(auth_->authenticate(authorization), TraceAction{"delete", "", ""});
  if (fanout_ && fanout_->cancel(id)) return true;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = traces_.find(id);
  if (it == traces_.end()) return false;
  it->second->cancel("cancelled");
  return true;
}

void TraceService::set_fanout(std::shared_ptr<TraceFanout> fanout) {
  fanout_ = std::move(fanout);
  config_.start_fanout = [fanout = fanout_.get()](const TraceCaller& caller, const TraceTarget& target,
                                                  const std::function<TraceRequest()>& parse_request,
                                                  std::string_view body, const std::string& remote) {
    return fanout->start(caller, target, parse_request, body, remote);
  };
}

void TraceService::stop_all() {
  if (fanout_) fanout_->stop_all();
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
  malloc_trim(0);    // its programs, ring and journeys were several MiB
  service_.release(id_);
}

void RunningTrace::cancel(const char* why) {
  const char* none = nullptr;
  stop_reason_.compare_exchange_strong(none, why);
}

const char* RunningTrace::pod_ended() {
  const PodDirectory& pods = service_.pods_;
  // "gone" or "netns replaced" when the pod is no longer the one traced.
  const auto left = [&](const TracedPod& pod) -> const char* {
    if (pods.present && !pods.present(pod.uid)) return "gone";
    // Same name and UID, another netns: the sandbox was recreated; the held
    // one carries no more of the pod's packets.
    if (pods.netns_of) {
      const PodNetns now = pods.netns_of(pod.namespace_name, pod.name);
      if (now.error.empty() && now.pod_uid == pod.uid && now.netns != pod.netns) return "netns replaced";
    }
    return nullptr;
  };
  if (!pod_set_) {
    if (pods_.empty() || pods_.front().uid.empty()) return nullptr;
    const char* why = left(pods_.front());
    if (!why) return nullptr;
    return why[0] == 'g' ? "pod gone" : "pod netns replaced";
  }
  bool all_gone = true;
  for (TracedPod& pod : pods_) {
    if (pod.gone.empty()) {
      if (const char* why = left(pod)) {
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - stream_started_).count();
        pod.gone = fmt::format("{} after {:.1f} s", why, seconds);
        spdlog::info("trace {}: pod {}/{} {}", id_, pod.namespace_name, pod.name, pod.gone);
      }
    }
    all_gone = all_gone && !pod.gone.empty();
  }
  return all_gone ? "pods gone" : nullptr;
}

void RunningTrace::write_heartbeat(LineSink& out, std::uint64_t wall_ns) {
  out.write(fmt::format("{{\"heartbeat\":{{\"wall_ns\":{}}}}}\n", wall_ns));
  out.flush();
}

void RunningTrace::write_journey_lines(LineSink& out, const JourneyTracker& tracker) {
  const std::int64_t offset = session_->wall_offset_ns();
  const auto wall = [offset](std::uint64_t ts) {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(ts) + offset);
  };
  std::string lines;
  tracker.for_each([&](const Journey& j) {
    nlohmann::json fields = journey_json(j);
    fields["node"] = node_;
    auto label = pod_labels_.find(j.netns);
    if (label == pod_labels_.end() && !j.steps.empty()) label = pod_labels_.find(j.steps.front().netns);
    if (label != pod_labels_.end()) {
      fields["namespace"] = label->second.namespace_name;
      fields["pod"] = label->second.pod;
    }
    if (!j.steps.empty()) {
      fields["first_wall_ns"] = wall(j.steps.front().ts_ns);
      fields["last_wall_ns"] = wall(j.steps.back().ts_ns);
    }
    lines += json_line(nlohmann::json{{"journey", std::move(fields)}});
    if (lines.size() >= 64 * 1024) {
      out.write(lines);
      lines.clear();
    }
  });
  out.write(lines);
}

void RunningTrace::publish_losses(std::uint64_t lost_so_far) {
  if (lost_so_far <= losses_published_) return;
  service_.events_lost_ += lost_so_far - losses_published_;
  losses_published_ = lost_so_far;
}

void RunningTrace::stream(LineSink& out) {
  sink_->attach(&out);
  const auto start = std::chrono::steady_clock::now();
  stream_started_ = start;
  const auto deadline = start + request_.duration;
  auto next_pod_check = start;
  const auto stop = [&] {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_pod_check) {
      next_pod_check = now + kPodCheckEvery;
      if (const char* why = pod_ended()) cancel(why);
      // Live, so that a long trace's losses reach pwru_events_lost_total
      // (and its alert) while it runs, not only when it ends.
      publish_losses(session_->events_lost_so_far());
    }
    return stop_reason_.load() != nullptr || now >= deadline;
  };
  // In the events' own clock (monotonic plus the session's realtime
  // offset, as their wall_ns): a step of the realtime clock moves both.
  const auto wall_now = [&] {
    return static_cast<std::uint64_t>(monotonic_ns() + session_->wall_offset_ns() - kHeartbeatMarginNs);
  };
  // No program of this trace ran before: no event is older than this.
  // (The session samples its offset when it attaches: realtime here.)
  timespec before_attach{};
  clock_gettime(CLOCK_REALTIME, &before_attach);
  std::uint64_t last_check_wall = static_cast<std::uint64_t>(before_attach.tv_sec) * 1000000000u +
                                  static_cast<std::uint64_t>(before_attach.tv_nsec) - kHeartbeatMarginNs;
  const AttachReport report = session_->attach([&] { return stop() || out.closed(); });
  if (merge_) {
    write_heartbeat(out, last_check_wall);
    auto next_heartbeat = std::chrono::steady_clock::now() + kHeartbeatEvery;
    // The run loop polls the ring between two calls: at a call, every event
    // older than the previous call's time has been read and written.
    session_->run([&] {
      const bool done = stop();
      if (const auto now = std::chrono::steady_clock::now(); now >= next_heartbeat && !done) {
        write_heartbeat(out, last_check_wall);
        next_heartbeat = now + kHeartbeatEvery;
      }
      last_check_wall = wall_now();
      return done;
    });
  } else {
    session_->run(stop);
  }
  // The summary goes out before the links are detached: on kernels without
  // kprobe-multi that takes about 30 s, which no client should wait for.
  // ~RunningTrace detaches, once the response has ended.
  const TraceStats stats = session_->stop_output();
  publish_losses(stats.events_lost);
  std::string ended = "duration";
  if (stats.limit_reached)
    ended = "max_events";
  else if (out.closed())
    ended = "client gone";
  else if (const char* why = stop_reason_.load())
    ended = why;
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
  // Only when they happened: what a caller should read as "the counts
  // above may be short".
  if (stats.events_unhandled) {
    summary["summary"]["events_unprinted"] = stats.events_unhandled;
    summary["summary"]["events_unprinted_first_error"] = stats.first_unhandled_reason;
  }
  if (stats.counters_unread) summary["summary"]["kernel_counters_unread"] = stats.counters_unread;
  if (pod_set_) {
    summary["summary"]["node"] = node_;
    nlohmann::json pods = nlohmann::json::object();
    for (const auto& [who, why] : pods_not_traced_) pods[who] = why;
    for (const TracedPod& pod : pods_)
      pods[pod.namespace_name + "/" + pod.name] = pod.gone.empty() ? "traced" : pod.gone;
    summary["summary"]["pods"] = std::move(pods);
  }
  const JourneyTracker* tracker = request_.summary ? session_->journeys() : nullptr;
  if (tracker && merge_) {
    // One line a journey, so the merger never holds a whole summary.
    write_journey_lines(out, *tracker);
    const JourneyCounts counts = tracker->counts();
    summary["summary"]["journeys_not_followed"] = counts.not_followed;
    if (const std::string note = budget_note(counts, tracker->budget()); !note.empty())
      summary["summary"]["journeys_note"] = note;
    out.write(json_line(summary));
  } else if (tracker) {
    const JourneyCounts counts = tracker->counts();
    summary["summary"]["journeys_not_followed"] = counts.not_followed;
    if (const std::string note = budget_note(counts, tracker->budget()); !note.empty())
      summary["summary"]["journeys_note"] = note;
    // Written one journey at a time, the line in pieces: neither a JSON
    // tree of thousands of journeys nor the whole line is ever in memory,
    // either would take several times what the budget allowed them.
    constexpr std::size_t kPieceBytes = 64 * 1024;
    std::string piece = json_line(summary);
    piece.resize(piece.size() - 3);  // "}}\n": reopen the inner object
    piece += ",\"journeys\":[";
    bool first = true;
    tracker->for_each([&](const Journey& j) {
      if (!first) piece += ',';
      first = false;
      piece += journey_json(j).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      if (piece.size() >= kPieceBytes) {
        out.write(piece);
        piece.clear();
      }
    });
    piece += "]}}\n";
    out.write(piece);
  } else {
    out.write(json_line(summary));
  }
  out.flush();
  sink_->attach(nullptr);
}

}  // namespace pwru
