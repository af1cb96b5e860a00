// pwru-agent's configuration: YAML (config/pwru-agent.yaml is the embedded
// default) into plain structs, validated strictly so a typo stops start-up
// instead of being ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pwru {

struct AgentConfig {
  struct Log {
    std::string level = "info";   // trace | debug | info | warn | error
    std::string format = "text";  // text | json
  } log;
  struct Http {
    std::string listen_address = "127.0.0.1";  // IPv4/IPv6 literal or host name
    std::uint16_t listen_port = 9464;
    std::uint32_t request_head_timeout_seconds = 5;
    std::uint32_t max_connections = 256;
    std::uint32_t max_connections_per_client = 32;
  } http;
  struct Probe {
    std::string backend = "auto";  // auto | kprobe-multi | kprobe | tracepoint
  } probe;
  struct Counters {
    std::uint32_t drops_max_entries = 16384;
    std::uint32_t visits_max_entries = 16384;
    bool all_tracepoints = true;                 // visit_tracepoints: all
    std::vector<std::string> visit_tracepoints;  // when not all
    // visit_tracepoints all: kDefault counts each stage once (no entry
    // twins, no net_dev_xmit: probe/visit_hooks.h), kAll every tracepoint.
    enum class VisitHooks { kDefault, kAll } visit_hooks = VisitHooks::kDefault;
    enum class Functions { kCatalogue, kNone, kList } functions = Functions::kCatalogue;
    std::vector<std::string> visit_functions;  // when kList
  } counters;
  struct Metrics {
    std::size_t max_series = 10000;
    bool visit_pod_labels = true;  // false: visits summed per function over every netns
  } metrics;
  struct Kubernetes {
    // auto: on in a cluster (KUBERNETES_SERVICE_HOST set) or with api_server;
    // on: start-up fails when neither says where the API server is.
    enum class Enabled { kAuto, kOn, kOff } enabled = Enabled::kAuto;
    std::string api_server_host;  // from api_server "https://HOST[:PORT]"; "" = in-cluster
    std::uint16_t api_server_port = 443;
    std::string token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
    std::string node_name;  // "" = $NODE_NAME
    std::string proc_root = "/proc";
    std::uint32_t rescan_interval_seconds = 30;
    std::uint32_t deleted_pod_grace_seconds = 60;
  } kubernetes;
  struct Traces {
    bool enabled = true;
    // none: anyone who reaches the port (loopback only); token: a static
    // bearer token read from token_file; kubernetes: TokenReview and
    // SubjectAccessReview through the API server.
    enum class Auth { kNone, kToken, kKubernetes } auth = Auth::kNone;
    std::string token_file;
    std::uint32_t max_concurrent = 4;
    std::uint32_t default_duration_seconds = 30;
    std::uint32_t max_duration_seconds = 600;
    std::uint64_t default_max_events = 10000;
    std::uint64_t max_events = 1000000;
    std::uint32_t max_body_bytes = 16384;
    // A request's "pods" list: at most this many pods of this node in one
    // trace (each a BPF netns set entry; at most PWRU_MAX_NETNS_SET, 64).
    std::uint32_t max_pods_per_trace = 16;
    std::uint32_t ring_buffer_bytes = 4u << 20;
    // auth kubernetes: how the agent spares the API server. A token's
    // TokenReview answer is remembered (by the token's SHA-256) for
    // cache_seconds when accepted, negative_cache_seconds when refused;
    // tokens not remembered are reviewed at most reviews_per_second on
    // average, burst at once, and beyond that refused with a 429.
    struct TokenReview {
      std::uint32_t cache_seconds = 10;
      std::uint32_t negative_cache_seconds = 5;
      std::uint32_t reviews_per_second = 20;
      std::uint32_t burst = 40;
    } token_review;
    // What every trace's "summary": true may hold at once, together: the
    // journeys beyond it are counted and named in a note, not kept.
    std::uint64_t summary_memory_bytes = 64ull << 20;
    // Requests for pods on other nodes go to the agent there: the pods
    // matching peer_selector in peer_namespace ("" = the agent's own) that
    // the DaemonSet peer_daemonset owns, on their port peer_port.
    bool forward = true;
    std::string peer_selector = "app.kubernetes.io/name=pwru-agent";
    std::string peer_namespace;
    std::string peer_daemonset = "pwru-agent";
    // Agents talk to each other only over mutual TLS, on a port of its own
    // (http.listen's address): relays are refused, and none are served,
    // until the three files are set.
    std::uint16_t peer_port = 9465;
    struct PeerTls {
      std::string ca_file;    // the CA that signed every agent's certificate
      std::string cert_file;  // this agent's, used as server and as client
      std::string key_file;
      // The DNS name both ends' certificates carry, checked instead of the
      // pod IP a peer is reached at.
      std::string name = "pwru-agent-peer";
      bool enabled() const { return !ca_file.empty(); }
    } peer_tls;
    // {"namespace","service"} and {"namespace","selector"} requests: one
    // pod-set trace per node that runs a pod of it, merged here.
    struct Fanout {
      std::uint32_t max_nodes = 16;
      std::uint32_t max_pods = 256;
      std::uint32_t max_concurrent = 2;
      std::uint32_t reorder_window_ms = 250;  // how long an event waits for slower nodes' earlier ones
      std::uint32_t slow_after_ms = 2000;     // a node silent this long stops holding the others back
      std::uint32_t max_events_per_second = 50000;
      std::uint32_t max_buffered_events = 100000;
    } fanout;
  } traces;
};

// Parses `yaml_text` over the embedded default: keys the text leaves out
// keep the default's values. Throws UsageError naming the key path
// ("counters.drops_max_entries") and what is allowed, for unknown keys,
// wrong types and out-of-range values; `source` names the file in messages.
AgentConfig parse_agent_config(std::string_view yaml_text, const std::string& source);

// The embedded default alone.
AgentConfig default_agent_config_parsed();

}  // namespace pwru
