#include "app/agent_app.h"

#include <malloc.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <sys/utsname.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "config/embedded.h"
#include "config/name_list.h"
#include "enrich/ksyms.h"
#include "events/counter_maps.h"
#include "http/agent_http.h"
#include "http/peer_http.h"
#include "k8s/node_pods.h"
#include "k8s/peer_locator.h"
#include "k8s/workload_resolver.h"
#include "metrics/skb_counter_collector.h"
#include "probe/counting_probes.h"
#include "traces/trace_auth.h"
#include "traces/trace_fanout.h"
#include "traces/trace_forward.h"
#include "traces/trace_service.h"

namespace pwru {

namespace {

constexpr auto kStopPoll = std::chrono::milliseconds(200);

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

CountingSpec counting_spec(const AgentConfig& config) {
  CountingSpec spec;
  spec.backend = config.probe.backend;
  spec.sizes =
      CounterMapSizes{config.counters.drops_max_entries, config.counters.visits_max_entries, PWRU_VISIT_CACHE_SLOTS};
  spec.all_tracepoints = config.counters.all_tracepoints;
  spec.tracepoints = config.counters.visit_tracepoints;
  spec.visit_hooks = config.counters.visit_hooks == AgentConfig::Counters::VisitHooks::kAll
                         ? CountingSpec::VisitHooks::kAll
                         : CountingSpec::VisitHooks::kStages;
  switch (config.counters.functions) {
    case AgentConfig::Counters::Functions::kCatalogue:
      spec.functions = parse_name_list(skb_function_catalogue());
      break;
    case AgentConfig::Counters::Functions::kList:
      spec.functions = config.counters.visit_functions;
      break;
    case AgentConfig::Counters::Functions::kNone:
      break;
  }
  return spec;
}

// Pod identity from the Kubernetes API, or nullptr (with the one log line
// saying why) when it is off. Configuration mistakes throw UsageError.
std::unique_ptr<NodePods> make_node_pods(const AgentConfig::Kubernetes& config) {
  KubeApiChoice choice = choose_kube_api(config, process_environment());
  if (!choice.api) {
    spdlog::info("kubernetes: off ({}); series carry netns inodes, not pod labels", choice.off_reason);
    return nullptr;
  }
  spdlog::info("kubernetes: pods of node {} from {}, their netns from {}", choice.api->node_name, choice.api->url(),
               config.proc_root);
  return std::make_unique<NodePods>(std::move(*choice.api), config.proc_root,
                                    PodResolverTimes{std::chrono::seconds(config.rescan_interval_seconds),
                                                     std::chrono::seconds(config.deleted_pod_grace_seconds)});
}

// Who relays trace requests for pods on other nodes, or nullptr (with the
// log line saying why) when requests for those get a 404.
std::shared_ptr<const PeerLocator> make_peer_locator(const AgentConfig& config, const NodePods* node_pods) {
  if (!config.traces.enabled || !node_pods) return nullptr;
  if (!config.traces.forward) {
    spdlog::info("traces: requests for pods on other nodes are not relayed (traces.forward is false)");
    return nullptr;
  }
  std::string agent_namespace = config.traces.peer_namespace;
  if (agent_namespace.empty()) agent_namespace = own_pod_namespace(process_environment());
  if (agent_namespace.empty()) {
    spdlog::warn(
        "traces: requests for pods on other nodes are not relayed: the agents' namespace is unknown "
        "(set traces.peer_namespace, or POD_NAMESPACE)");
    return nullptr;
  }
  if (!config.traces.peer_tls.enabled())
    spdlog::warn(
        "traces: requests for pods on other nodes are refused: agents relay them to each other only over "
        "mutual TLS, and traces.peer_tls is not set (the Helm chart sets it)");
  return std::make_shared<PeerLocator>(node_pods->api(), agent_namespace, config.traces.peer_selector,
                                       config.traces.peer_daemonset, config.traces.peer_port);
}

// A trace's stream that counts in pwru_traces_running while it runs, also
// when it ends by throwing (a client gone mid-write, an output failure).
std::function<void(LineSink&)> counted_as_running(TraceStream trace, prometheus::Gauge& running) {
  return [trace = std::move(trace), &running](LineSink& out) {
    running.Increment();
    struct Done {
      prometheus::Gauge& gauge;
      ~Done() { gauge.Decrement(); }
    } done{running};
    trace(out);
  };
}

// The peer port, where other nodes' agents relay trace requests over
// mutual TLS; nullptr (with the log line saying why) when it is off.
std::unique_ptr<PeerHttpServer> make_peer_http(const AgentConfig& config, TraceService& traces,
                                               prometheus::Family<prometheus::Counter>& answers,
                                               prometheus::Gauge& running, const std::atomic<bool>& ready) {
  if (!config.traces.enabled) return nullptr;
  if (!config.traces.peer_tls.enabled()) {
    spdlog::info("traces: no peer port: traces.peer_tls is not set, so no other agent can relay requests here");
    return nullptr;
  }
  PeerRoutes routes;
  routes.start = [&traces, &running, &ready](const std::string& body, const std::string& remote,
                                             const std::string& caller, const std::string& from) {
    if (!ready.load()) throw RequestError(503, "not ready: still loading its programs; retry soon");
    TraceStream trace = traces.start_relayed(body, remote, caller, from);
    return counted_as_running(std::move(trace), running);
  };
  routes.start_merged = [&traces, &running, &ready](const std::string& body, const std::string& remote,
                                                    const std::string& caller, const std::string& from) {
    if (!ready.load()) throw RequestError(503, "not ready: still loading its programs; retry soon");
    TraceStream trace = traces.start_relayed(body, remote, caller, from, true);
    return counted_as_running(std::move(trace), running);
  };
  routes.answered = [&answers](int status) { answers.Add({{"code", std::to_string(status)}}).Increment(); };
  routes.max_body_bytes = config.traces.max_body_bytes;
  routes.max_streams = config.traces.max_concurrent;
  auto server = std::make_unique<PeerHttpServer>(config.http.listen_address, config.traces.peer_port,
                                                 config.traces.peer_tls, std::move(routes));
  spdlog::info("serving relayed trace requests on {}:{} (mutual TLS, peer name {})", config.http.listen_address,
               server->port(), config.traces.peer_tls.name);
  return server;
}

// The agent's own view of the API watch and the /proc scan, for alerts on
// missing pod labels. Updated from the main loop.
class NodePodsMetrics {
 public:
  explicit NodePodsMetrics(prometheus::Registry& registry)
      : synced_(prometheus::BuildGauge()
                    .Name("pwru_kubernetes_synced")
                    .Help("1 while the agent's view of this node's pods is current: it listed them from the API "
                          "server and no LIST or WATCH failed since; 0 before the first LIST and from an API "
                          "failure until a retry succeeds (pods created meanwhile carry no labels yet)")
                    .Register(registry)
                    .Add({})),
        pods_(prometheus::BuildGauge()
                  .Name("pwru_kubernetes_pods")
                  .Help("Pods of this node the agent knows from the API server")
                  .Register(registry)
                  .Add({})),
        pod_netns_(prometheus::BuildGauge()
                       .Name("pwru_kubernetes_pod_netns")
                       .Help("Network namespaces named by a pod (running, or deleted and within the grace period)")
                       .Register(registry)
                       .Add({})),
        api_failures_(prometheus::BuildCounter()
                          .Name("pwru_kubernetes_api_failures_total")
                          .Help("Failed LISTs and broken WATCHes of pods; each is retried with back-off")
                          .Register(registry)
                          .Add({})),
        erased_(prometheus::BuildCounter()
                    .Name("pwru_kubernetes_gone_netns_total")
                    .Help("Network namespaces of deleted pods whose series were dropped after the grace period")
                    .Register(registry)
                    .Add({})) {}

  void update(const NodePodsStatus& status, std::size_t newly_gone) {
    synced_.Set(status.current ? 1 : 0);
    pods_.Set(static_cast<double>(status.pods));
    pod_netns_.Set(static_cast<double>(status.resolve.pod_netns + status.resolve.departed_netns));
    if (status.watch.failures > failures_seen_) {
      api_failures_.Increment(static_cast<double>(status.watch.failures - failures_seen_));
      failures_seen_ = status.watch.failures;
    }
    erased_.Increment(static_cast<double>(newly_gone));
  }

 private:
  prometheus::Gauge& synced_;
  prometheus::Gauge& pods_;
  prometheus::Gauge& pod_netns_;
  prometheus::Counter& api_failures_;
  prometheus::Counter& erased_;
  std::uint64_t failures_seen_ = 0;
};

// Read from the traces' own count at each scrape, so concurrent scrapes
// need no state of their own to stay monotonic. No per-trace label: trace
// ids are unbounded; each trace's summary line and log line carry its own.
prometheus::MetricFamily trace_losses_family(std::uint64_t lost) {
  prometheus::MetricFamily f;
  f.name = "pwru_events_lost_total";
  f.help =
      "Events this node's traces (POST /v1/traces) could not put into their ring buffers "
      "(traces.ring_buffer_bytes), since the agent started; the counters themselves lose nothing";
  f.type = prometheus::MetricType::Counter;
  prometheus::ClientMetric m;
  m.counter.value = static_cast<double>(lost);
  f.metric.push_back(std::move(m));
  return f;
}

// The node's kernel, as `uname -r` says: a container shares the host's.
std::string kernel_release() {
  struct utsname names {};
  if (uname(&names) != 0) return "unknown";
  return names.release;
}

// The trace requests' own metrics, shared by the node's port and the peer port.
struct TraceMetrics {
  prometheus::Family<prometheus::Counter>& answers;
  prometheus::Gauge& running;
};

TraceMetrics register_trace_metrics(prometheus::Registry& registry) {
  return TraceMetrics{
      prometheus::BuildCounter()
          .Name("pwru_trace_requests_total")
          .Help("Answers to /v1/traces requests, by HTTP status code")
          .Register(registry),
      prometheus::BuildGauge().Name("pwru_traces_running").Help("Traces streaming now").Register(registry).Add({})};
}

// What the HTTP handlers read while the agent runs: there before the server
// starts, filled in as the agent gets ready.
struct AgentState {
  std::atomic<bool> ready{false};
  std::atomic<const char*> phase{"loading BPF programs"};
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<SkbCounterCollector> collector;  // set once attached; read under the ready flag
};

// Service and selector requests: pods from the API server, one part on
// every node that runs some. Null without Kubernetes (such requests get a
// 400 saying so).
std::shared_ptr<TraceFanout> make_trace_fanout(const AgentConfig& config, const NodePods* node_pods,
                                               std::shared_ptr<const PeerLocator> peers,
                                               std::shared_ptr<const TraceAuth> auth, TraceService& traces) {
  if (!config.traces.enabled || !node_pods) return nullptr;
  const AgentConfig::Traces::Fanout& caps = config.traces.fanout;
  FanoutLimits limits;
  limits.max_nodes = caps.max_nodes;
  limits.max_pods = caps.max_pods;
  limits.max_pods_per_node = config.traces.max_pods_per_trace;
  limits.max_concurrent = caps.max_concurrent;
  limits.reorder_window = std::chrono::milliseconds(caps.reorder_window_ms);
  limits.slow_after = std::chrono::milliseconds(caps.slow_after_ms);
  limits.max_events_per_second = caps.max_events_per_second;
  limits.max_buffered_events = caps.max_buffered_events;
  // The journeys the fan-outs at once keep for stitching share the
  // summary budget's size, so the agent's memory limit holds for both.
  limits.max_journey_bytes = config.traces.summary_memory_bytes / caps.max_concurrent;
  FanoutDeps deps;
  deps.node_name = node_pods->api().node_name;
  deps.auth = std::move(auth);
  deps.resolve = [resolver = std::make_shared<WorkloadResolver>(node_pods->api())](const TraceTarget& target) {
    return target.service.empty() ? resolver->pods_of_selector(target.namespace_name, target.selector)
                                  : resolver->pods_of_service(target.namespace_name, target.service);
  };
  // Without a locator (traces.forward off, or the agents' namespace
  // unknown) only this node's pods can be traced; the others are named.
  deps.agents_by_node = [peers = std::move(peers)] {
    return peers ? peers->agents_by_node() : std::map<std::string, PeerAgent>{};
  };
  deps.start_local = [&traces](const TraceCaller& caller, const std::string& body, const std::string& remote) {
    return traces.start_merged_part(caller, body, remote);
  };
  deps.open_peer = peer_parts_over_tls(config.traces.peer_tls, node_pods->api().node_name);
  return std::make_shared<TraceFanout>(limits, std::move(deps));
}

// Scrapes resolve pods through `node_pods` until the HTTP server is gone.
std::unique_ptr<TraceService> make_trace_service(const AgentConfig& config, NodePods* node_pods) {
  PodDirectory pod_directory;
  if (node_pods) {
    pod_directory.netns_of = [node_pods](const std::string& ns, const std::string& pod) {
      return node_pods->netns_of_pod(ns, pod);
    };
    pod_directory.present = [node_pods](const std::string& uid) { return node_pods->has_pod(uid); };
  }
  TraceServiceConfig service_config;
  service_config.traces = config.traces;
  service_config.backend = config.probe.backend;
  service_config.peers = make_peer_locator(config, node_pods);
  service_config.proc_root = config.kubernetes.proc_root;
  if (node_pods) service_config.node_name = node_pods->api().node_name;
  std::shared_ptr<const TraceAuth> auth =
      make_trace_auth(config.traces, node_pods ? std::optional<KubeApiConfig>(node_pods->api()) : std::nullopt);
  auto service = std::make_unique<TraceService>(service_config, std::move(pod_directory), auth);
  if (std::shared_ptr<TraceFanout> fanout =
          make_trace_fanout(config, node_pods, service_config.peers, std::move(auth), *service))
    service->set_fanout(std::move(fanout));
  return service;
}

TraceRoutes trace_routes(const AgentConfig& config, TraceService& traces, TraceMetrics metrics) {
  TraceRoutes routes;
  routes.start = [&traces, &running = metrics.running](const std::string& body, const std::string& remote,
                                                       const TraceRoutes::HeaderLookup& header) {
    // Relaying agents' headers (X-Pwru-Caller...) count only on the peer
    // port, behind a verified certificate: never read here.
    TraceStream trace = traces.start(body, remote, header("Authorization"));
    return counted_as_running(std::move(trace), running);
  };
  routes.list = [&traces](const std::string& authorization) { return traces.list_json(authorization); };
  routes.cancel = [&traces](const std::string& id, const std::string& authorization) {
    return traces.cancel(id, authorization);
  };
  routes.answered = [&answers = metrics.answers](int status) {
    answers.Add({{"code", std::to_string(status)}}).Increment();
  };
  routes.max_body_bytes = config.traces.max_body_bytes;
  return routes;
}

ConnectionObserver connection_metrics(prometheus::Registry& registry) {
  auto& refused = prometheus::BuildCounter()
                      .Name("pwru_http_connections_refused_total")
                      .Help("HTTP connections refused at a cap or cut at a deadline, by reason")
                      .Register(registry);
  auto& open = prometheus::BuildGauge()
                   .Name("pwru_http_connections")
                   .Help("HTTP connections open now")
                   .Register(registry)
                   .Add({});
  ConnectionObserver observer;
  observer.refused = [&refused](const char* reason) { refused.Add({{"reason", reason}}).Increment(); };
  observer.open_changed = [&open](int delta) { open.Increment(delta); };
  return observer;
}

// The node's port: /metrics, /healthz, /readyz and, when on, /v1/traces.
AgentHttpHandlers http_handlers(const AgentConfig& config, AgentState& state, TraceService& traces,
                                TraceMetrics trace_metrics) {
  const auto metrics_text = [&state, &traces]() {
    std::vector<prometheus::MetricFamily> families;
    if (state.ready.load()) families = state.collector->Collect();
    const auto own = state.registry->Collect();
    families.insert(families.end(), own.begin(), own.end());
    families.push_back(trace_losses_family(traces.events_lost()));
    return prometheus::TextSerializer().Serialize(families);
  };
  AgentHttpHandlers handlers{metrics_text, [&state] { return state.ready.load(); },
                             [&state] { return std::string(state.phase.load()); }, std::nullopt};
  if (config.traces.enabled) handlers.traces = trace_routes(config, traces, trace_metrics);
  handlers.connections = connection_metrics(*state.registry);
  return handlers;
}

ConnectionLimits connection_limits(const AgentConfig::Http& http) {
  ConnectionLimits limits;
  limits.head_timeout = std::chrono::seconds(http.request_head_timeout_seconds);
  limits.max_connections = http.max_connections;
  limits.max_connections_per_client = http.max_connections_per_client;
  return limits;
}

Ksyms load_ksyms() {
  Ksyms ksyms = Ksyms::load();
  if (ksyms.empty())
    spdlog::warn(
        "/proc/kallsyms shows no addresses to this process (it lacks CAP_SYSLOG, and "
        "kernel.perf_event_paranoid is 2 or more, or kernel.kptr_restrict is set): drop functions will be "
        "hex addresses and kprobes find no function. Add the SYSLOG capability (the Helm chart's default)");
  return ksyms;
}

// The counting programs, loaded, not attached; and the drop reasons' names.
// The kernel's parsed BTF is tens of MiB: only what the scrapes need outlives it.
struct LoadedProbes {
  std::unique_ptr<CountingProbes> probes;
  std::map<std::uint64_t, std::string> reason_names;
};

LoadedProbes load_counting_probes(const AgentConfig& config, const Ksyms& ksyms) {
  LoadedProbes loaded;
  {
    const KernelBtf btf = KernelBtf::load();
    loaded.reason_names = btf.enum_values("skb_drop_reason");
    loaded.probes = std::make_unique<CountingProbes>(btf, ksyms, counting_spec(config));
  }
  // Parsing the kernel's BTF peaks at tens of MiB, all freed by now: return
  // it to the system rather than carry it for the agent's lifetime.
  malloc_trim(0);
  return loaded;
}

// Registered once the backend is chosen, so that its labels never change
// for the life of the process (a label change would be a new series).
void register_build_info(prometheus::Registry& registry, const std::string& backend) {
  prometheus::BuildGauge()
      .Name("pwru_build_info")
      .Help(
          "pwru-agent's version, git revision, the node's kernel release (uname -r) and the counting backend; "
          "always 1")
      .Register(registry)
      .Add({{"version", agent_version()},
            {"revision", agent_revision()},
            {"kernel", kernel_release()},
            {"backend", backend}})
      .Set(1);
}

void log_loaded(const CountingProbes& probes, std::chrono::steady_clock::time_point load_start) {
  for (const std::string& skipped : probes.skipped_functions()) spdlog::info("not counting {}", skipped);
  // Debug: the same lines on every start of every node say nothing new.
  for (const std::string& left_out : probes.left_out_tracepoints())
    spdlog::debug("counters.visit_hooks default: not counting {}", left_out);
  spdlog::info("loaded in {:.2f} s", seconds_since(load_start));
}

void register_attached_hooks(prometheus::Registry& registry, const std::string& backend, std::size_t attached) {
  prometheus::BuildGauge()
      .Name("pwru_attached_hooks")
      .Help("Kernel hooks the agent's counters are attached to, by backend")
      .Register(registry)
      .Add({{"backend", backend}})
      .Set(static_cast<double>(attached));
}

std::shared_ptr<SkbCounterCollector> make_collector(const AgentConfig& config, const CountingProbes& probes,
                                                    std::shared_ptr<BpfCounterSource> counter_source,
                                                    const NodePods* node_pods, const Ksyms& ksyms,
                                                    std::map<std::uint64_t, std::string> reason_names) {
  return std::make_shared<SkbCounterCollector>(
      std::move(counter_source), node_pods ? node_pods->resolver() : std::make_shared<NoPodResolver>(),
      [&ksyms](std::uint64_t addr) { return ksyms.nearest(addr); }, std::move(reason_names), probes.hook_names(),
      SkbCounterCollectorConfig{config.metrics.max_series, config.metrics.visit_pod_labels});
}

// Deleted pods' netns, once past their grace: their kernel counters go.
void erase_counters_of_gone_pods(NodePods& node_pods, const BpfCounterSource& counter_source,
                                 NodePodsMetrics& metrics) {
  const std::vector<std::uint32_t> gone = node_pods.refresh();
  if (!gone.empty()) {
    try {
      const ErasedCounters erased = counter_source.erase_netns(gone);
      spdlog::debug(
          "kubernetes: {} netns of deleted pods gone; {} kernel counter entries erased, {} visit "
          "cache slots freed",
          gone.size(), erased.entries, erased.cache_slots);
    } catch (const std::exception& e) {
      // Their series are hidden anyway; the entries only take up room.
      spdlog::warn("kubernetes: erasing counters of deleted pods' netns: {}", e.what());
    }
  }
  metrics.update(node_pods.status(), gone.size());
}

}  // namespace

std::string agent_version() { return PWRU_VERSION; }

std::string agent_revision() { return PWRU_REVISION; }

int run_agent(const AgentConfig& config, const std::function<bool()>& stop_requested) {
  spdlog::info("pwru-agent {} starting", agent_version());
  AgentState state;
  // Before the HTTP server: scrapes resolve pods through it until the
  // server is gone.
  std::unique_ptr<NodePods> node_pods = make_node_pods(config.kubernetes);
  const std::unique_ptr<TraceService> trace_service = make_trace_service(config, node_pods.get());
  TraceService& traces = *trace_service;
  const TraceMetrics trace_metrics = register_trace_metrics(*state.registry);
  AgentHttpServer http(config.http.listen_address, config.http.listen_port,
                       http_handlers(config, state, traces, trace_metrics), connection_limits(config.http));
  spdlog::info("serving http://{}:{}/metrics (/healthz, /readyz)", config.http.listen_address, http.port());
  std::unique_ptr<PeerHttpServer> peer_http =
      make_peer_http(config, traces, trace_metrics.answers, trace_metrics.running, state.ready);

  std::optional<NodePodsMetrics> node_pods_metrics;
  if (node_pods) {
    node_pods_metrics.emplace(*state.registry);
    node_pods->start();  // labels arrive while the probes load and attach
  }

  const auto load_start = std::chrono::steady_clock::now();
  const Ksyms ksyms = load_ksyms();
  LoadedProbes loaded = load_counting_probes(config, ksyms);
  CountingProbes& probes = *loaded.probes;
  spdlog::info("backend {}: {}", probes.backend_name(), probes.backend_reason());
  register_build_info(*state.registry, probes.backend_name());
  log_loaded(probes, load_start);

  state.phase = "attaching hooks";
  const auto attach_start = std::chrono::steady_clock::now();
  const AttachReport report = probes.attach(stop_requested);
  for (const std::string& skipped : report.skipped) spdlog::warn("hook not attached: {}", skipped);
  if (stop_requested()) {
    spdlog::info("stopped while attaching");
    traces.stop_all();
    http.stop();
    probes.detach();
    return 0;
  }
  spdlog::info("attached {} hooks ({} skipped) in {:.2f} s", report.attached, report.skipped.size(),
               seconds_since(attach_start));
  register_attached_hooks(*state.registry, probes.backend_name(), report.attached);

  const auto counter_source = std::make_shared<BpfCounterSource>(
      CounterMapFds{probes.drop_counts_fd(), probes.visit_counts_fd(), probes.visit_cache_fd(), probes.counters_fd()});
  state.collector =
      make_collector(config, probes, counter_source, node_pods.get(), ksyms, std::move(loaded.reason_names));
  state.ready = true;
  spdlog::info("ready");

  while (!stop_requested()) {
    if (node_pods) erase_counters_of_gone_pods(*node_pods, *counter_source, *node_pods_metrics);
    std::this_thread::sleep_for(kStopPoll);
  }

  spdlog::info("stopping: no more scrapes, ending traces, detaching");
  state.ready = false;
  traces.stop_all();  // streams end within a poll round, so http.stop() does not wait on them
  if (peer_http) peer_http->stop();
  http.stop();
  if (node_pods) node_pods->stop();
  const auto detach_start = std::chrono::steady_clock::now();
  probes.detach();
  spdlog::info("detached in {:.2f} s; bye", seconds_since(detach_start));
  return 0;
}

}  // namespace pwru
