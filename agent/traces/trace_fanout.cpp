#include "traces/trace_fanout.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <set>
#include <thread>

#include "common/error.h"
#include "journey/stitch.h"
#include "traces/trace_forward.h"
#include "traces/trace_lines.h"
#include "traces/trace_merge.h"

namespace pwru {

namespace {

// A node's stream arrives in chunks that need not end at a line; the merger
// takes whole lines. Closed once the merge wants no more, which ends the
// part: the local trace stops at its next poll, a relay hangs up.
class FeedSink final : public LineSink {
 public:
  FeedSink(MergedStream& merge, std::size_t index, const std::atomic<bool>& stopped)
      : merge_(merge), index_(index), stopped_(stopped) {}
  void write(std::string_view text) override {
    // Also after the merge ended (`stopped_`): a part that was told to stop
    // still sends its summary, which the merger keeps (losses, pods).
    if (refused_) return;
    pending_.append(text);
    std::size_t start = 0;
    for (std::size_t newline; (newline = pending_.find('\n', start)) != std::string::npos; start = newline + 1)
      if (newline > start) merge_.push(index_, pending_.substr(start, newline - start));
    pending_.erase(0, start);
    // No line of a node's part comes near this (journeys are lines of
    // their own): a node sending one is broken, and must not fill memory.
    if (pending_.size() > kMaxLineBytes) refused_ = true;
  }
  void flush() override {}
  bool closed() const override { return refused_ || stopped_.load(); }

 private:
  static constexpr std::size_t kMaxLineBytes = 16u << 20;
  MergedStream& merge_;
  std::size_t index_;
  const std::atomic<bool>& stopped_;
  std::string pending_;
  bool refused_ = false;
};

// Counts what the merger writes, for GET /v1/traces while it runs.
class CountingSink final : public LineSink {
 public:
  CountingSink(LineSink& to, std::atomic<std::uint64_t>& lines) : to_(to), lines_(lines) {}
  void write(std::string_view text) override {
    lines_ += static_cast<std::uint64_t>(std::count(text.begin(), text.end(), '\n'));
    to_.write(text);
  }
  void flush() override { to_.flush(); }
  bool closed() const override { return to_.closed(); }

 private:
  LineSink& to_;
  std::atomic<std::uint64_t>& lines_;
};

std::string pod_key(const std::string& namespace_name, const std::string& pod) { return namespace_name + "/" + pod; }

// A node's part that could not start: what the summary says of it.
std::string start_failure(const RequestError& e) {
  if (e.status() == 502 || e.status() == 504) return std::string("unreachable: ") + e.what();
  return "refused: " + std::to_string(e.status()) + " " + e.what();
}

class PeerTracePart final : public FanoutPeerPart {
 public:
  explicit PeerTracePart(std::unique_ptr<PeerTrace> trace) : trace_(std::move(trace)) {}
  int status() const override { return trace_->status(); }
  std::string read_body() override { return trace_->read_body(); }
  bool relay(LineSink& out) override { return trace_->relay(out); }

 private:
  std::unique_ptr<PeerTrace> trace_;
};

}  // namespace

std::function<std::unique_ptr<FanoutPeerPart>(const PeerAgent&, const std::string&, const TraceCaller&,
                                              const std::string&, std::chrono::seconds)>
peer_parts_over_tls(AgentConfig::Traces::PeerTls tls, std::string node_name) {
  return [tls = std::move(tls), node_name = std::move(node_name)](
             const PeerAgent& agent, const std::string& body, const TraceCaller& caller, const std::string& remote,
             std::chrono::seconds quiet_for) -> std::unique_ptr<FanoutPeerPart> {
    // Never in clear: the request names the caller, the answer is pods' packets.
    if (!tls.enabled())
      throw RequestError(503, "this agent has no TLS files to reach the agent on node " + agent.node +
                                  " (traces.peer_tls; the Helm chart sets it)");
    return std::make_unique<PeerTracePart>(std::make_unique<PeerTrace>(agent, tls, body, encode_caller(caller, remote),
                                                                       node_name, quiet_for, PeerTrace::Mode::kMerge));
  };
}

std::string node_part_body(std::string_view caller_body, const std::string& namespace_name,
                           const std::vector<std::string>& pods) {
  // Already checked field by field (parse_trace_request): parsing again
  // cannot fail, and keeps every option the caller set (filter, functions,
  // summary, track_skb, output fields) without listing them here.
  nlohmann::json body = nlohmann::json::parse(caller_body);
  body.erase("service");
  body.erase("selector");
  body.erase("max_events_per_second");  // the coordinator's cap: it merges
  body["namespace"] = namespace_name;
  body["pods"] = pods;
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// One running fan-out: its parts (started), the merger between them and
// the response, and what the summary reports.
class FanoutRun {
 public:
  struct Part {
    std::string node;
    std::vector<std::string> pods;
    std::function<void(LineSink&)> local;  // this node's part
    std::unique_ptr<FanoutPeerPart> peer;  // another node's
  };

  FanoutRun(TraceFanout& owner, std::string id, TraceRequest request, std::string target, std::string remote,
            std::string user)
      : owner_(owner),
        id_(std::move(id)),
        request_(std::move(request)),
        target_(std::move(target)),
        remote_(std::move(remote)),
        user_(std::move(user)),
        started_(std::chrono::system_clock::now()) {}
  ~FanoutRun() { owner_.release(id_); }

  const std::string& id() const { return id_; }

  void cancel(const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancelled_.empty()) cancelled_ = why;
    if (merge_) merge_->cancel(why);
  }

  nlohmann::json row() const {
    nlohmann::json nodes = nlohmann::json::object();
    for (const auto& [node, state] : node_states_) nodes[node] = state;
    for (const Part& part : parts_) nodes[part.node] = "running";
    return {{"id", id_},
            {"target", target_},
            {"filter", request_.filter},
            {"remote", remote_},
            {"user", user_},
            {"started", iso_time(started_)},
            {"duration_s", request_.duration.count() / 1000.0},
            {"max_events", request_.max_events},
            {"events_sent", events_sent_.load()},
            {"nodes", nodes}};
  }

  void stream(LineSink& client) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::string> nodes;
    for (const Part& part : parts_) nodes.push_back(part.node);
    MergeOptions options;
    options.reorder_window = owner_.limits_.reorder_window;
    options.slow_after = owner_.limits_.slow_after;
    options.max_buffered_lines = owner_.limits_.max_buffered_events;
    options.max_buffered_bytes = owner_.limits_.max_buffered_bytes;
    options.max_journey_bytes = owner_.limits_.max_journey_bytes;
    options.max_events = request_.max_events;
    options.max_events_per_second =
        request_.max_events_per_second > 0 ? request_.max_events_per_second : owner_.limits_.max_events_per_second;
    MergedStream merge(nodes, options);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      merge_ = &merge;
      if (!cancelled_.empty()) merge.cancel(cancelled_);
    }
    std::atomic<bool> stopped{false};
    std::vector<std::jthread> feeds;  // joined however this ends
    for (std::size_t i = 0; i < parts_.size(); ++i) {
      feeds.emplace_back([this, i, &merge, &stopped, start] {
        Part& part = parts_[i];
        FeedSink sink(merge, i, stopped);
        const auto since_start = [start] {
          char seconds[32];
          std::snprintf(seconds, sizeof seconds, "%.1f s",
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
          return std::string(seconds);
        };
        try {
          if (part.local) {
            part.local(sink);
            part.local = nullptr;  // its trace detaches now, not when the fan-out ends
            merge.end_feed(i, true, "");
            return;
          }
          const bool clean = part.peer->relay(sink);
          merge.end_feed(i, clean || stopped.load(),
                         stopped.load() ? "cancelled" : "unreachable: stopped answering after " + since_start());
          part.peer.reset();  // hangs up if still connected
        } catch (const std::exception& e) {
          // This node's part failed (its ring, its memory): the others go on.
          merge.end_feed(i, false, "failed after " + since_start() + ": " + e.what());
        }
      });
    }
    CountingSink counted(client, events_sent_);
    merge.run(counted);
    // Whatever ended the merge (every part done, a cap, a cancel, the
    // client gone) ends every part still running: this node's part stops
    // at its next poll and still sends its summary; other nodes' parts are
    // hung up, and theirs is lost.
    stopped = true;
    const std::string cancelled = cancelled_reason();
    merge.cancel(cancelled.empty() ? "ended" : cancelled);
    for (std::jthread& t : feeds) t.join();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      merge_ = nullptr;
    }
    MergeResult result = merge.take_result();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string ended = ended_reason(result, client.closed(), cancelled);
    spdlog::info("fan-out {}: ended ({}) after {:.1f} s: {} events sent, {} late", id_, ended, seconds,
                 result.events_sent, result.events_late);
    if (client.closed()) return;
    client.write(json_line(summary(std::move(result), ended, seconds)));
    client.flush();
  }

  // Filled by TraceFanout::start before the run is shared.
  std::vector<Part> parts_;
  std::map<std::string, std::string> node_states_;   // nodes that did not start, and why
  std::map<std::string, std::string> pods_;          // "shop/web-0" -> node
  std::size_t pods_denied_ = 0;                      // counted, never named: the caller may not trace them
  std::map<std::string, std::string> pods_skipped_;  // named only to a caller who may trace the namespace
  std::optional<std::size_t> pods_skipped_count_;    // otherwise counted

 private:
  std::string cancelled_reason() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
  }

  static std::string ended_reason(const MergeResult& result, bool client_gone, const std::string& cancelled) {
    if (client_gone) return "client gone";
    if (!cancelled.empty()) return cancelled;
    if (!result.ended.empty()) return result.ended;
    std::set<std::string> endings;
    for (const MergedNode& node : result.nodes)
      if (node.summary && node.summary->contains("ended")) endings.insert(node.summary->at("ended").get<std::string>());
    if (endings.empty()) return "no node finished";
    std::string joined;
    for (const std::string& e : endings) joined += (joined.empty() ? "" : ", ") + e;
    return joined;
  }

  nlohmann::json summary(MergeResult result, const std::string& ended, double seconds) const {
    nlohmann::json nodes = nlohmann::json::object(), node_summaries = nlohmann::json::object(),
                   clock = nlohmann::json::object();
    std::uint64_t lost = 0;
    std::vector<NodeJourney> journeys;
    for (const auto& [node, state] : node_states_) nodes[node] = state;
    nlohmann::json lost_unknown = nlohmann::json::array();
    for (MergedNode& node : result.nodes) {
      nodes[node.node] = node.state;
      if (node.summary) {
        lost += node.summary->value("events_lost", std::uint64_t{0});
        node_summaries[node.node] = std::move(*node.summary);
      } else {
        // Hung up before its summary (the merge ended first, or it broke
        // off): what it lost is not known, and must not read as 0.
        lost_unknown.push_back(node.node);
      }
      if (node.clock_offset_ms_estimate)
        clock[node.node] = {{"clock_offset_ms_estimate", *node.clock_offset_ms_estimate}};
      for (nlohmann::json& j : node.journeys) journeys.push_back(NodeJourney{node.node, std::move(j)});
    }
    nlohmann::json s = {
        {"id", id_},
        {"target", target_},
        {"ended", ended},
        {"seconds", seconds},
        {"pods", pods_},
        {"pods_denied", pods_denied_},
        {"pods_skipped", pods_skipped_count_ ? nlohmann::json(*pods_skipped_count_) : nlohmann::json(pods_skipped_)},
        {"nodes", nodes},
        {"node_summaries", node_summaries},
        {"events_sent", result.events_sent},
        {"events_lost", lost},
        {"events_late", result.events_late},
        {"reorder_window_ms", owner_.limits_.reorder_window.count()},
        {"clock", clock},
        {"clock_correction", "none"}};
    if (!lost_unknown.empty()) s["events_lost_unknown_on"] = std::move(lost_unknown);
    if (request_.summary) {
      StitchResult stitched = stitch_journeys(std::move(journeys));
      s["journeys_stitched"] = stitched.stitched;
      s["journeys_ambiguous"] = stitched.ambiguous;
      if (result.journeys_not_kept) s["journeys_not_stitched"] = result.journeys_not_kept;
      s["journeys"] = std::move(stitched.journeys);
    }
    return {{"summary", s}};
  }

  TraceFanout& owner_;
  std::string id_;
  TraceRequest request_;
  std::string target_;
  std::string remote_;
  std::string user_;
  std::chrono::system_clock::time_point started_;
  std::atomic<std::uint64_t> events_sent_{0};
  std::mutex mutex_;
  std::string cancelled_;
  MergedStream* merge_ = nullptr;
};

TraceFanout::TraceFanout(FanoutLimits limits, FanoutDeps deps) : limits_(std::move(limits)), deps_(std::move(deps)) {}

TraceFanout::~TraceFanout() {
  stop_all();
  // Runs hold a reference to this object until their response ends.
  for (int i = 0; i < 300; ++i) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (running_.empty() && starting_ == 0) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// A fan-out slot, held while the request is resolved and the parts start,
// then by the run (running_).
class TraceFanout::Starting {
 public:
  explicit Starting(TraceFanout& fanout) : fanout_(fanout) {
    std::lock_guard<std::mutex> lock(fanout_.mutex_);
    if (fanout_.stopping_) throw RequestError(503, "the agent is shutting down; try another agent or later");
    if (fanout_.running_.size() + fanout_.starting_ >= fanout_.limits_.max_concurrent)
      throw RequestError(429, std::to_string(fanout_.limits_.max_concurrent) +
                                  " service traces are running or starting, this agent's cap "
                                  "(traces.fanout.max_concurrent); wait for one to end or cancel one (GET /v1/traces, "
                                  "DELETE /v1/traces/ID)");
    ++fanout_.starting_;
  }
  ~Starting() {
    std::lock_guard<std::mutex> lock(fanout_.mutex_);
    --fanout_.starting_;
  }
  Starting(const Starting&) = delete;
  Starting& operator=(const Starting&) = delete;

 private:
  TraceFanout& fanout_;
};

std::function<void(LineSink&)> TraceFanout::start(const TraceCaller& caller, const TraceTarget& target,
                                                  const std::function<TraceRequest()>& parse_request,
                                                  std::string_view body, const std::string& remote) {
  const std::string& ns = target.namespace_name;
  // Before any work: whoever asks, at most max_concurrent resolutions (a
  // pod list, reviews) run at once.
  const Starting slot(*this);
  // A caller who may trace every pod of the namespace may know its pods;
  // one allowed only some by name learns nothing of the others: not
  // whether a service exists, not the names or number of pods it may not
  // trace (those are counted), not this agent's caps before it is known
  // to trace something.
  std::string namespace_denial;
  try {
    deps_.auth->authorize_namespace(caller, ns);
  } catch (const RequestError& e) {
    if (e.status() != 403) throw;
    namespace_denial = e.what();
  }
  const bool namespace_wide = namespace_denial.empty();
  ResolvedWorkload workload;
  try {
    workload = deps_.resolve(target);
  } catch (const RequestError& e) {
    if (!namespace_wide && (e.status() == 404 || e.status() == 400)) throw RequestError(403, namespace_denial);
    throw;
  }
  std::vector<const ResolvedPod*> allowed;
  std::size_t denied = 0;
  if (namespace_wide) {
    if (workload.pods.size() > limits_.max_pods)
      throw RequestError(400, workload.description + " has " + std::to_string(workload.pods.size()) +
                                  " pods, over traces.fanout.max_pods (" + std::to_string(limits_.max_pods) +
                                  "); narrow it with a selector");
    for (const ResolvedPod& pod : workload.pods) allowed.push_back(&pod);
  } else {
    // One review per pod, for at most max_pods of them (sorted by name).
    std::vector<std::string> names;
    for (std::size_t i = 0; i < workload.pods.size() && i < limits_.max_pods; ++i)
      names.push_back(workload.pods[i].name);
    const std::vector<std::optional<std::string>> denials = deps_.auth->authorize_pods(caller, ns, names);
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (i < denials.size() && denials[i])
        ++denied;
      else
        allowed.push_back(&workload.pods[i]);
    }
    if (allowed.empty()) throw RequestError(403, namespace_denial);
    if (workload.pods.size() > limits_.max_pods)
      throw RequestError(400, workload.description + " selects more than traces.fanout.max_pods (" +
                                  std::to_string(limits_.max_pods) + ") pods; narrow it with a selector");
  }
  if (allowed.empty()) {
    std::string why;
    for (const auto& [pod, reason] : workload.skipped) why += (why.empty() ? "" : "; ") + pod + ": " + reason;
    throw RequestError(404, workload.description + " has no pod that can be traced" +
                                (why.empty() ? std::string(" (no pods)") : " (" + why + ")"));
  }
  // The rest of the body (its caps) only now.
  const TraceRequest request = parse_request();
  if (request.max_events_per_second > limits_.max_events_per_second)
    throw RequestError(400, "\"max_events_per_second\" " + std::to_string(request.max_events_per_second) +
                                " is over this agent's cap, traces.fanout.max_events_per_second (" +
                                std::to_string(limits_.max_events_per_second) + "); ask for less");
  std::map<std::string, std::vector<std::string>> pods_by_node;
  std::map<std::string, std::string> pods;
  for (const ResolvedPod* pod : allowed) {
    pods_by_node[pod->node].push_back(pod->name);
    pods[pod_key(ns, pod->name)] = pod->node;
  }
  if (pods_by_node.size() > limits_.max_nodes)
    throw RequestError(400, workload.description + " spans " + std::to_string(pods_by_node.size()) +
                                " nodes, over traces.fanout.max_nodes (" + std::to_string(limits_.max_nodes) +
                                "); narrow it with a selector");
  for (const auto& [node, node_pods] : pods_by_node)
    if (node_pods.size() > limits_.max_pods_per_node)
      throw RequestError(400, workload.description + " has " + std::to_string(node_pods.size()) + " pods on node " +
                                  node + ", over traces.max_pods_per_trace (" +
                                  std::to_string(limits_.max_pods_per_node) +
                                  ", one node's part of the trace); narrow it with a selector");

  const std::map<std::string, PeerAgent> agents = deps_.agents_by_node();
  // A part sends a heartbeat every 100 ms once attached; attaching takes
  // up to ~20 s (kprobes on 6.1). Silent longer, it is gone, and the
  // others' summary need not wait for its duration.
  const auto quiet_for = std::chrono::seconds(60);
  // Every node starts at once: the first event comes after the slowest
  // attach, not after the sum of them.
  struct Started {
    FanoutRun::Part part;
    std::string failure;
  };
  std::vector<std::future<Started>> starting;
  for (const auto& [node, node_pods] : pods_by_node) {
    std::string part_body = node_part_body(body, ns, node_pods);
    starting.push_back(std::async(
        std::launch::async, [&, node = node, node_pods = node_pods, part_body = std::move(part_body)]() -> Started {
          Started s{FanoutRun::Part{node, node_pods, nullptr, nullptr}, ""};
          try {
            if (node == deps_.node_name) {
              s.part.local = deps_.start_local(caller, part_body, remote);
              return s;
            }
            const auto agent = agents.find(node);
            if (agent == agents.end()) {
              s.failure = "unreachable: no running, ready pwru-agent of this release on node " + node;
              return s;
            }
            s.part.peer = deps_.open_peer(agent->second, part_body, caller, remote, quiet_for);
            if (s.part.peer->status() != 200) {
              std::string message = s.part.peer->read_body();
              try {
                message = nlohmann::json::parse(message).at("error").get<std::string>();
              } catch (const nlohmann::json::exception&) {
              }
              s.failure = "refused: " + std::to_string(s.part.peer->status()) + " " + message;
              s.part.peer.reset();
            }
          } catch (const RequestError& e) {
            s.failure = start_failure(e);
          } catch (const std::exception& e) {
            s.failure = std::string("refused: ") + e.what();
          }
          return s;
        }));
  }
  auto run =
      std::make_shared<FanoutRun>(*this, new_trace_id("fo-"), request, workload.description, remote, caller.user);
  run->pods_ = std::move(pods);
  run->pods_denied_ = denied;
  if (namespace_wide)
    run->pods_skipped_ = workload.skipped;
  else
    run->pods_skipped_count_ = workload.skipped.size();
  for (auto& f : starting) {
    Started s = f.get();
    if (s.failure.empty())
      run->parts_.push_back(std::move(s.part));
    else
      run->node_states_[s.part.node] = s.failure;
  }
  if (run->parts_.empty()) {
    std::string why;
    for (const auto& [node, state] : run->node_states_) why += (why.empty() ? "" : "; ") + node + ": " + state;
    throw RequestError(502, "no node of " + workload.description + " could start its part: " + why);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw RequestError(503, "the agent is shutting down; try another agent or later");
    running_[run->id()] = run.get();
  }
  spdlog::info("fan-out {}: {} for {}{}: {} nodes started, {} could not", run->id(), workload.description, remote,
               caller.user.empty() ? "" : " (" + caller.user + ")", run->parts_.size(), run->node_states_.size());
  return [run](LineSink& out) { run->stream(out); };
}

void TraceFanout::release(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  running_.erase(id);
}

nlohmann::json TraceFanout::list_rows() const {
  nlohmann::json rows = nlohmann::json::array();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [id, run] : running_) rows.push_back(run->row());
  return rows;
}

bool TraceFanout::cancel(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = running_.find(id);
  if (it == running_.end()) return false;
  it->second->cancel("cancelled");
  return true;
}

void TraceFanout::stop_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
  for (auto& [id, run] : running_) run->cancel("agent stopping");
}

}  // namespace pwru
