#include "app/agent_app.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <malloc.h>
#include <sys/utsname.h>

#include <atomic>
#include <optional>
#include <chrono>
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
#include "metrics/skb_counter_collector.h"
#include "probe/counting_probes.h"
#include "traces/trace_auth.h"
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
  spec.sizes = CounterMapSizes{config.counters.drops_max_entries, config.counters.visits_max_entries,
                               PWRU_VISIT_CACHE_SLOTS};
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
  return std::make_unique<NodePods>(
      std::move(*choice.api), config.proc_root,
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
    spdlog::warn("traces: requests for pods on other nodes are not relayed: the agents' namespace is unknown "
                 "(set traces.peer_namespace, or POD_NAMESPACE)");
    return nullptr;
  }
  if (!config.traces.peer_tls.enabled())
    spdlog::warn("traces: requests for pods on other nodes are refused: agents relay them to each other only over "
                 "mutual TLS, and traces.peer_tls is not set (the Helm chart sets it)");
  return std::make_shared<PeerLocator>(node_pods->api(), agent_namespace, config.traces.peer_selector,
                                       config.traces.peer_daemonset, config.traces.peer_port);
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
    return PeerRoutes::Stream([trace = std::move(trace), &running](LineSink& out) {
      running.Increment();
      trace(out);
      running.Decrement();
    });
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
  f.help = "Events this node's traces (POST /v1/traces) could not put into their ring buffers "
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

}  // namespace

std::string agent_version() { return PWRU_VERSION; }

std::string agent_revision() { return PWRU_REVISION; }

int run_agent(const AgentConfig& config, const std::function<bool()>& stop_requested) {
  spdlog::info("pwru-agent {} starting", agent_version());
  std::atomic<bool> ready{false};
  std::atomic<const char*> phase{"loading BPF programs"};
  auto registry = std::make_shared<prometheus::Registry>();
  // Before the HTTP server: scrapes resolve pods through it until the
  // server is gone.
  std::unique_ptr<NodePods> node_pods = make_node_pods(config.kubernetes);
  PodDirectory pod_directory;
  if (node_pods) {
    pod_directory.netns_of = [&node_pods](const std::string& ns, const std::string& pod) {
      return node_pods->netns_of_pod(ns, pod);
    };
    pod_directory.present = [&node_pods](const std::string& uid) { return node_pods->has_pod(uid); };
  }
  TraceService traces(TraceServiceConfig{config.traces, config.probe.backend, make_peer_locator(config, node_pods.get()),
                                         config.kubernetes.proc_root},
                      std::move(pod_directory),
                      make_trace_auth(config.traces, node_pods ? std::optional<KubeApiConfig>(node_pods->api())
                                                               : std::nullopt));
  auto& trace_answers = prometheus::BuildCounter()
                            .Name("pwru_trace_requests_total")
                            .Help("Answers to /v1/traces requests, by HTTP status code")
                            .Register(*registry);
  auto& traces_running = prometheus::BuildGauge()
                             .Name("pwru_traces_running")
                             .Help("Traces streaming now")
                             .Register(*registry)
                             .Add({});
  std::shared_ptr<SkbCounterCollector> collector;  // set once attached; read under the ready flag

  const auto metrics_text = [&]() {
    std::vector<prometheus::MetricFamily> families;
    if (ready.load()) families = collector->Collect();
    const auto own = registry->Collect();
    families.insert(families.end(), own.begin(), own.end());
    families.push_back(trace_losses_family(traces.events_lost()));
    return prometheus::TextSerializer().Serialize(families);
  };
  AgentHttpHandlers handlers{metrics_text, [&] { return ready.load(); }, [&] { return std::string(phase.load()); },
                             std::nullopt};
  if (config.traces.enabled) {
    TraceRoutes routes;
    routes.start = [&traces, &traces_running](const std::string& body, const std::string& remote,
                                              const TraceRoutes::HeaderLookup& header) {
      // Relaying agents' headers (X-Pwru-Caller...) count only on the peer
      // port, behind a verified certificate: never read here.
      TraceStream trace = traces.start(body, remote, header("Authorization"));
      return TraceRoutes::Stream([trace = std::move(trace), &traces_running](LineSink& out) {
        traces_running.Increment();
        trace(out);
        traces_running.Decrement();
      });
    };
    routes.list = [&traces](const std::string& authorization) { return traces.list_json(authorization); };
    routes.cancel = [&traces](const std::string& id, const std::string& authorization) {
      return traces.cancel(id, authorization);
    };
    routes.answered = [&trace_answers](int status) { trace_answers.Add({{"code", std::to_string(status)}}).Increment(); };
    routes.max_body_bytes = config.traces.max_body_bytes;
    handlers.traces = std::move(routes);
  }
  auto& refused_connections = prometheus::BuildCounter()
                                  .Name("pwru_http_connections_refused_total")
                                  .Help("HTTP connections refused at a cap or cut at a deadline, by reason")
                                  .Register(*registry);
  auto& open_connections = prometheus::BuildGauge()
                               .Name("pwru_http_connections")
                               .Help("HTTP connections open now")
                               .Register(*registry)
                               .Add({});
  handlers.connections.refused = [&refused_connections](const char* reason) {
    refused_connections.Add({{"reason", reason}}).Increment();
  };
  handlers.connections.open_changed = [&open_connections](int delta) { open_connections.Increment(delta); };
  ConnectionLimits limits;
  limits.head_timeout = std::chrono::seconds(config.http.request_head_timeout_seconds);
  limits.max_connections = config.http.max_connections;
  limits.max_connections_per_client = config.http.max_connections_per_client;
  AgentHttpServer http(config.http.listen_address, config.http.listen_port, std::move(handlers), limits);
  spdlog::info("serving http://{}:{}/metrics (/healthz, /readyz)", config.http.listen_address, http.port());
  std::unique_ptr<PeerHttpServer> peer_http = make_peer_http(config, traces, trace_answers, traces_running, ready);

  std::optional<NodePodsMetrics> node_pods_metrics;
  if (node_pods) {
    node_pods_metrics.emplace(*registry);
    node_pods->start();  // labels arrive while the probes load and attach
  }

  const auto load_start = std::chrono::steady_clock::now();
  const Ksyms ksyms = Ksyms::load();
  if (ksyms.empty())
    spdlog::warn("/proc/kallsyms shows no addresses to this process (it lacks CAP_SYSLOG, and "
                 "kernel.perf_event_paranoid is 2 or more, or kernel.kptr_restrict is set): drop functions will be "
                 "hex addresses and kprobes find no function. Add the SYSLOG capability (the Helm chart's default)");
  // The kernel's parsed BTF is tens of MiB: keep only what the scrapes need.
  std::map<std::uint64_t, std::string> reason_names;
  std::unique_ptr<CountingProbes> loaded;
  {
    const KernelBtf btf = KernelBtf::load();
    reason_names = btf.enum_values("skb_drop_reason");
    loaded = std::make_unique<CountingProbes>(btf, ksyms, counting_spec(config));
  }
  CountingProbes& probes = *loaded;
  // Parsing the kernel's BTF peaks at tens of MiB, all freed by now: return
  // it to the system rather than carry it for the agent's lifetime.
  malloc_trim(0);
  spdlog::info("backend {}: {}", probes.backend_name(), probes.backend_reason());
  // Registered once the backend is chosen, so that its labels never change
  // for the life of the process (a label change would be a new series).
  prometheus::BuildGauge()
      .Name("pwru_build_info")
      .Help("pwru-agent's version, git revision, the node's kernel release (uname -r) and the counting backend; "
            "always 1")
      .Register(*registry)
      .Add({{"version", agent_version()},
            {"revision", agent_revision()},
            {"kernel", kernel_release()},
            {"backend", probes.backend_name()}})
      .Set(1);
  for (const std::string& skipped : probes.skipped_functions()) spdlog::info("not counting {}", skipped);
  // Debug: the same lines on every start of every node say nothing new.
  for (const std::string& left_out : probes.left_out_tracepoints())
    spdlog::debug("counters.visit_hooks default: not counting {}", left_out);
  spdlog::info("loaded in {:.2f} s", seconds_since(load_start));

  phase = "attaching hooks";
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
  prometheus::BuildGauge()
      .Name("pwru_attached_hooks")
      .Help("Kernel hooks the agent's counters are attached to, by backend")
      .Register(*registry)
      .Add({{"backend", probes.backend_name()}})
      .Set(static_cast<double>(report.attached));

  const auto counter_source = std::make_shared<BpfCounterSource>(CounterMapFds{
      probes.drop_counts_fd(), probes.visit_counts_fd(), probes.visit_cache_fd(), probes.counters_fd()});
  collector = std::make_shared<SkbCounterCollector>(
      counter_source, node_pods ? node_pods->resolver() : std::make_shared<NoPodResolver>(),
      [&ksyms](std::uint64_t addr) { return ksyms.nearest(addr); },
      std::move(reason_names), probes.hook_names(),
      SkbCounterCollectorConfig{config.metrics.max_series, config.metrics.visit_pod_labels});
  ready = true;
  spdlog::info("ready");

  while (!stop_requested()) {
    if (node_pods) {
      const std::vector<std::uint32_t> gone = node_pods->refresh();
      if (!gone.empty()) {
        try {
          const ErasedCounters erased = counter_source->erase_netns(gone);
          spdlog::debug("kubernetes: {} netns of deleted pods gone; {} kernel counter entries erased, {} visit "
                        "cache slots freed",
                        gone.size(), erased.entries, erased.cache_slots);
        } catch (const std::exception& e) {
          // Their series are hidden anyway; the entries only take up room.
          spdlog::warn("kubernetes: erasing counters of deleted pods' netns: {}", e.what());
        }
      }
      node_pods_metrics->update(node_pods->status(), gone.size());
    }
    std::this_thread::sleep_for(kStopPoll);
  }

  spdlog::info("stopping: no more scrapes, ending traces, detaching");
  ready = false;
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
