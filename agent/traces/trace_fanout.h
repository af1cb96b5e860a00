// One request, every node: {"namespace":"shop","service":"web"} (or a
// label selector) becomes one pod-set trace on each node that runs a pod of
// it, this one included, whose streams are merged by wall-clock time into
// one NDJSON response, with cross-node journeys stitched at the end.
//
// The agent that received the request coordinates: it resolves the pods
// (API server), asks whether the caller may trace each (a pod denied is
// reported, never traced), groups them by node and starts every node's part
// at once. Each node authorizes its pods again and never fans out further.
// A node that cannot start, breaks off or falls silent is named in the
// summary; the others keep streaming.
//
// What order means: lines are ordered by each node's wall clock
// (CLOCK_REALTIME at its events); within one node by its own monotonic
// clock. Two events on different nodes closer together than the clock skew
// between those nodes (plus the reorder window) may come out in either
// order: the summary reports an upper bound of each node's skew, and
// corrects nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/agent_config.h"
#include "k8s/peer_locator.h"
#include "k8s/workload_resolver.h"
#include "output/sink.h"
#include "traces/trace_auth.h"
#include "traces/trace_request.h"

namespace pwru {

// traces.fanout in the configuration.
struct FanoutLimits {
  std::size_t max_nodes = 16;
  std::size_t max_pods = 256;
  std::size_t max_pods_per_node = 16;  // traces.max_pods_per_trace: what one node's part may hold
  std::size_t max_concurrent = 2;
  std::chrono::milliseconds reorder_window{250};
  std::chrono::milliseconds slow_after{2000};
  double max_events_per_second = 50000;
  std::size_t max_buffered_events = 100000;
  // Memory of one fan-out at the agent asked, beside its nodes' own:
  // events held for ordering (their text), and the nodes' journeys kept
  // for stitching (traces.summary_memory_bytes shared by max_concurrent).
  std::size_t max_buffered_bytes = 16u << 20;
  std::size_t max_journey_bytes = 16u << 20;
};

// A node's part running on that node's agent (trace_forward's PeerTrace;
// tests fake it).
class FanoutPeerPart {
 public:
  virtual ~FanoutPeerPart() = default;
  virtual int status() const = 0;
  virtual std::string read_body() = 0;
  // Copies the node's stream to `out` until it ends (true: cleanly) or
  // `out` closes (the part is hung up, which ends it there).
  virtual bool relay(LineSink& out) = 0;
};

// What a fan-out needs from outside, so tests can run it without an API
// server, other agents or a kernel.
struct FanoutDeps {
  std::string node_name;  // this agent's node
  std::shared_ptr<const TraceAuth> auth;
  // The pods a service or selector request names. RequestError 404/400/503.
  std::function<ResolvedWorkload(const TraceTarget& target)> resolve;
  // The agent serving each node. RequestError 503.
  std::function<std::map<std::string, PeerAgent>()> agents_by_node;
  // This node's part, in merge mode (TraceService::start_merged_part):
  // loads and returns the stream, or throws RequestError.
  std::function<std::function<void(LineSink&)>(const TraceCaller& caller, const std::string& body,
                                               const std::string& remote)>
      start_local;
  // Another node's part, in merge mode, as this agent for `caller`. Throws
  // RequestError 502/503/504 when the agent there cannot be reached.
  std::function<std::unique_ptr<FanoutPeerPart>(const PeerAgent& agent, const std::string& body,
                                                const TraceCaller& caller, const std::string& remote,
                                                std::chrono::seconds quiet_for)>
      open_peer;
};

// FanoutDeps::open_peer over mutual TLS (trace_forward's PeerTrace, in
// merge mode), as the agent of `node_name`.
std::function<std::unique_ptr<FanoutPeerPart>(const PeerAgent&, const std::string&, const TraceCaller&,
                                              const std::string&, std::chrono::seconds)>
peer_parts_over_tls(AgentConfig::Traces::PeerTls tls, std::string node_name);

class FanoutRun;

class TraceFanout {
 public:
  TraceFanout(FanoutLimits limits, FanoutDeps deps);
  ~TraceFanout();  // cancels every fan-out still running and waits for them
  TraceFanout(const TraceFanout&) = delete;
  TraceFanout& operator=(const TraceFanout&) = delete;

  // `target` names a service or selector, its caller authenticated;
  // `parse_request` checks the rest of `body` (its caps), called only once
  // the caller is known to trace some pod; each node's part keeps the
  // body's options. Throws RequestError: 429 (traces.fanout.max_concurrent,
  // before anything else is asked), 403 (no pod may be traced; also for a
  // missing service, to a caller without the namespace-wide right), 404 (no
  // such service, or no pod), 400 (over a cap), 502 (no node could start).
  std::function<void(LineSink&)> start(const TraceCaller& caller, const TraceTarget& target,
                                       const std::function<TraceRequest()>& parse_request, std::string_view body,
                                       const std::string& remote);

  // GET /v1/traces rows of the fan-outs running now.
  nlohmann::json list_rows() const;
  // DELETE /v1/traces/fo-...: false when none has this id.
  bool cancel(const std::string& id);
  void stop_all();

 private:
  friend class FanoutRun;
  class Starting;
  void release(const std::string& id);

  FanoutLimits limits_;
  FanoutDeps deps_;
  mutable std::mutex mutex_;
  std::map<std::string, FanoutRun*> running_;
  std::size_t starting_ = 0;
  bool stopping_ = false;
};

// The body one node's part gets: the caller's options, with the service or
// selector replaced by that node's pods. Exposed for tests.
std::string node_part_body(std::string_view caller_body, const std::string& namespace_name,
                           const std::vector<std::string>& pods);

}  // namespace pwru
