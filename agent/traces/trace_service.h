// The agent's pod-scoped traces: POST /v1/traces becomes a RunningTrace
// with BPF programs of its own (the same TraceSession `pwru` runs, with the
// pod's netns as filter), so concurrent traces never see each other's
// events and the always-on counters are untouched. Knows nothing of HTTP:
// errors are RequestErrors with a status, output goes to a LineSink.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"
#include "config/agent_config.h"
#include "journey/journey_budget.h"
#include "k8s/peer_locator.h"
#include "k8s/pod_resolver.h"
#include "session/trace_session.h"
#include "traces/trace_auth.h"
#include "traces/trace_fanout.h"
#include "traces/trace_request.h"

namespace pwru {

class LineSink;
class RunningTrace;

// Loads a trace's programs into a session writing to `sink`, nothing
// attached. Throws UsageError for what the request asks that this node
// cannot do (the trace is answered 400), anything else when loading fails (500).
using TraceSessionLoader = std::function<std::unique_ptr<TraceSession>(const TraceConfig& trace, LineSink& sink)>;

// Over the kernel's BTF and BPF: checks "functions" against this kernel's
// skb functions and backend, then loads.
std::unique_ptr<TraceSession> load_kernel_trace_session(const TraceConfig& trace, LineSink& sink);

// Streams one trace into a response, returning when it ended.
using TraceStream = std::function<void(LineSink& out)>;

struct TraceServiceConfig {
  AgentConfig::Traces traces;
  std::string backend = "auto";  // probe.backend
  // Relays requests for pods on other nodes; null: answer 404 for those.
  std::shared_ptr<const PeerLocator> peers;
  // Where traced netns are held open from (kubernetes.proc_root).
  std::string proc_root = "/proc";
  TraceSessionLoader load_session = load_kernel_trace_session;
  // The node this agent runs on ("": peers->node_name(), if any).
  std::string node_name;
  // Runs a "service" or "selector" request (authorized per pod there, not
  // here); null: such requests are refused (400), as without Kubernetes.
  // `parse_request` checks the rest of the body (its caps): called once the
  // fan-out knows the caller may trace some pod.
  std::function<TraceStream(const TraceCaller& caller, const TraceTarget& target,
                            const std::function<TraceRequest()>& parse_request, std::string_view body,
                            const std::string& remote)>
      start_fanout;
};

// A pod a trace follows, resolved on this node.
struct TracedPod {
  std::string namespace_name;
  std::string name;
  std::string uid;
  std::uint32_t netns = 0;
  std::string gone;  // "" while traced; "gone after 12.3 s" once it left
};

// What pod-scoped traces need of the node's pods; both empty when pod
// identity is off.
struct PodDirectory {
  // Pod -> netns, from the API watch and the /proc scan.
  std::function<PodNetns(const std::string& namespace_name, const std::string& pod)> netns_of;
  // Whether the API server still lists the pod with this UID here: a trace
  // ends when its pod does.
  std::function<bool(const std::string& pod_uid)> present;
};

class TraceService {
 public:
  TraceService(TraceServiceConfig config, PodDirectory pods, std::shared_ptr<const TraceAuth> auth);
  ~TraceService();
  TraceService(const TraceService&) = delete;
  TraceService& operator=(const TraceService&) = delete;

  // Authenticates the caller, checks the request and the caller's right to
  // it, takes a slot, resolves the pod, compiles the filter and loads the
  // programs (nothing attached yet). Throws RequestError: 401/403, 400,
  // 404 (no such pod here), 429 (all slots taken), 503 (stopping, or the
  // API server could not be asked), 500 (the kernel refused).
  //
  // A pod on another node: the request goes to the agent there over
  // mutual TLS (traces.peer_tls; 503 without it), as this agent with the
  // caller's identity but not their credential, and its answer comes back,
  // errors with the peer's status.
  TraceStream start(std::string_view body, const std::string& remote, const std::string& authorization);

  // A request another node's agent relayed (the peer port, after its
  // client certificate was verified): `caller_header` is who that agent
  // authenticated (X-Pwru-Caller), `from_node` the node it runs on. The
  // caller is authorized here again (auth kubernetes: this agent's own
  // SubjectAccessReview), and the request is never relayed further.
  // `merge`: kMergeHeader was set (a fan-out's part): a "pods" trace's
  // lines carry wall_ns first, heartbeats and journeys come as lines.
  TraceStream start_relayed(std::string_view body, const std::string& remote, const std::string& caller_header,
                            const std::string& from_node, bool merge = false);

  // A fan-out's part on the coordinator's own node: as a relayed request in
  // merge mode (authorized again, never relayed, never fanned out).
  TraceStream start_merged_part(const TraceCaller& caller, std::string_view body, const std::string& remote);

  // {"traces":[{"id","target","filter","remote","user","started","duration_s","events_sent"}]}
  std::string list_json(const std::string& authorization) const;
  // False when no running trace has this id.
  bool cancel(const std::string& id, const std::string& authorization);
  // Service and selector requests go to `fanout` from now on (it becomes
  // config.start_fanout); its fan-outs are listed, cancelled and stopped
  // with this service's traces. Before the first request only.
  void set_fanout(std::shared_ptr<TraceFanout> fanout);
  // Ends every trace (agent shutdown) and refuses new ones.
  void stop_all();
  // Events this node's traces could not put into their ring buffers, since
  // start: finished traces and, within a poll round, running ones. Relayed
  // requests count on the node that ran them.
  std::uint64_t events_lost() const { return events_lost_.load(); }

 private:
  friend class RunningTrace;
  // A slot taken while a trace loads (or is relayed): given back however
  // start_as ends; a registered trace holds its own until release().
  class Reservation {
   public:
    explicit Reservation(TraceService& service);  // 503 stopping, 429 every slot taken
    ~Reservation();
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;

   private:
    TraceService& service_;
  };
  void release(const std::string& id);
  // `forwarded_by`: the node that relayed the request here, "" for none.
  TraceStream start_as(const TraceCaller& caller, std::string_view body, const std::string& remote,
                       const std::string& forwarded_by, bool merge = false);
  // config_.node_name, or the peer locator's.
  std::string node_name() const;
  // The request, once the caller may trace what it names (RequestError 403, 400).
  TraceRequest authorized_request(const TraceCaller& caller, std::string_view body, const TraceTarget& wanted) const;
  // Every field of the body, within this agent's caps (RequestError 400).
  TraceRequest parse_request(std::string_view body) const;
  // Listed from now on (GET, DELETE, stop_all); 503 when the agent is stopping.
  void register_trace(const std::shared_ptr<RunningTrace>& running);
  TraceStream relay(const PeerAgent& peer, std::string_view body, const TraceCaller& caller, const std::string& remote,
                    const TraceRequest& request);

  TraceServiceConfig config_;
  PodDirectory pods_;
  std::shared_ptr<const TraceAuth> auth_;
  // Every "summary": true trace's journeys together (traces.summary_memory_bytes).
  std::shared_ptr<JourneyBudget> summary_budget_;
  mutable std::mutex mutex_;
  std::map<std::string, RunningTrace*> traces_;
  std::size_t reserved_ = 0;  // slots of traces still loading
  std::size_t relays_ = 0;    // slots of requests relayed to other nodes' agents
  bool stopping_ = false;
  std::atomic<std::uint64_t> events_lost_{0};
  std::shared_ptr<TraceFanout> fanout_;
};

class RunningTrace {
 public:
  ~RunningTrace();  // detaches (if stream() never ran) and frees the slot
  RunningTrace(const RunningTrace&) = delete;
  RunningTrace& operator=(const RunningTrace&) = delete;

  const std::string& id() const { return id_; }
  // Attaches, writes events into `out` as they come, detaches, and ends
  // with one {"summary": ...} line. Returns when the duration is over,
  // max_events were sent, the trace was cancelled or `out` closed.
  void stream(LineSink& out);
  void cancel(const char* why);

 private:
  // Why a pod-scoped trace's pod is no longer the one traced (a pod set's:
  // every pod), or null. Records each pod of a set that left.
  const char* pod_ended();
  // Merge mode: {"heartbeat":{"wall_ns":N}}, every event older than N read.
  void write_heartbeat(LineSink& out, std::uint64_t wall_ns);
  // Merge mode with "summary": each journey a line of its own.
  void write_journey_lines(LineSink& out, const JourneyTracker& tracker);
  // Adds the losses since the last call to the service's count.
  void publish_losses(std::uint64_t lost_so_far);
  friend class TraceService;
  class ForwardingSink;
  RunningTrace(TraceService& service, std::string id, TraceRequest request, std::string target, std::string remote,
               std::string user);

  TraceService& service_;
  std::string id_;
  TraceRequest request_;
  std::string target_;  // "pod shop/web-0 (netns 4026532...)", "netns ...", "node"
  std::string remote_;
  std::string user_;  // the Kubernetes user who asked, if auth is kubernetes
  std::chrono::system_clock::time_point started_;
  std::unique_ptr<ForwardingSink> sink_;
  // The traced netns, held open so their inode numbers (the BPF filter) are
  // not handed to other netns while the trace runs.
  // A gone pod's stays held too: no other netns gets its number meanwhile.
  std::vector<UniqueFd> netns_pins_;
  // Pod-scoped traces: ended when the pod (a set's: every pod) leaves.
  std::vector<TracedPod> pods_;
  bool pod_set_ = false;  // "pods": labels, "node" and "pods" in the summary
  bool merge_ = false;    // kMergeHeader (pod sets only)
  std::string node_;
  // "pods": what became of each pod named, "ns/name" -> why not traced.
  std::map<std::string, std::string> pods_not_traced_;
  std::map<std::uint32_t, PodLabel> pod_labels_;  // by netns, for the journeys
  std::chrono::steady_clock::time_point stream_started_{};
  std::unique_ptr<TraceSession> session_;
  std::atomic<const char*> stop_reason_{nullptr};
  std::atomic<std::uint64_t> events_sent_{0};
  std::uint64_t losses_published_ = 0;
};

}  // namespace pwru
