#include "config/agent_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "config/embedded.h"

namespace pwru {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Functions = AgentConfig::Counters::Functions;
using VisitHooks = AgentConfig::Counters::VisitHooks;

constexpr const char* kSource = "/etc/pwru-agent.yaml";

AgentConfig parse(const std::string& text) { return parse_agent_config(text, kSource); }

// The UsageError message `text` raises; a test failure (and "") if it parses.
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "parsed without error:\n" << text;
  return "";
}

TEST(AgentConfig, EmbeddedDefaultHasTheDocumentedValues) {
  const AgentConfig config = default_agent_config_parsed();
  EXPECT_EQ(config.log.level, "info");
  EXPECT_EQ(config.log.format, "text");
  EXPECT_EQ(config.http.listen_address, "127.0.0.1");
  EXPECT_EQ(config.http.listen_port, 9464);
  EXPECT_EQ(config.probe.backend, "auto");
  EXPECT_EQ(config.counters.drops_max_entries, 16384u);
  EXPECT_EQ(config.counters.visits_max_entries, 16384u);
  EXPECT_TRUE(config.counters.all_tracepoints);
  EXPECT_TRUE(config.counters.visit_tracepoints.empty());
  EXPECT_EQ(config.counters.visit_hooks, VisitHooks::kDefault);
  EXPECT_EQ(config.counters.functions, Functions::kCatalogue);
  EXPECT_TRUE(config.counters.visit_functions.empty());
  EXPECT_EQ(config.metrics.max_series, 10000u);
  EXPECT_TRUE(config.metrics.visit_pod_labels);
}

TEST(AgentConfig, EmptyOrCommentOnlyTextGivesTheDefault) {
  for (const std::string text : {"", "\n", "# nothing here\n  # indented comment\n"}) {
    const AgentConfig config = parse(text);
    EXPECT_EQ(config.log.level, "info") << text;
    EXPECT_EQ(config.http.listen_port, 9464) << text;
    EXPECT_EQ(config.counters.drops_max_entries, 16384u) << text;
    EXPECT_EQ(config.metrics.max_series, 10000u) << text;
  }
}

TEST(AgentConfig, EmbeddedTextParsedAsAFileGivesTheDefault) {
  const AgentConfig config = parse(std::string(default_agent_config()));
  EXPECT_EQ(config.http.listen_port, 9464);
  EXPECT_EQ(config.counters.functions, Functions::kCatalogue);
}

TEST(AgentConfig, OverlayKeepsKeysTheTextLeavesOut) {
  const AgentConfig config = parse(
      "log:\n"
      "  format: json\n"
      "counters:\n"
      "  visits_max_entries: 4096\n");
  EXPECT_EQ(config.log.format, "json");
  EXPECT_EQ(config.log.level, "info");
  EXPECT_EQ(config.counters.visits_max_entries, 4096u);
  EXPECT_EQ(config.counters.drops_max_entries, 16384u);
  EXPECT_TRUE(config.counters.all_tracepoints);
  EXPECT_EQ(config.http.listen_address, "127.0.0.1");
  EXPECT_EQ(config.http.listen_port, 9464);
  EXPECT_EQ(config.probe.backend, "auto");
  EXPECT_EQ(config.metrics.max_series, 10000u);
}

TEST(AgentConfig, SectionWithEveryKeyCommentedOutKeepsTheDefault) {
  const AgentConfig config = parse("log:\n  # level: debug\nmetrics:\n");
  EXPECT_EQ(config.log.level, "info");
  EXPECT_EQ(config.metrics.max_series, 10000u);
}

TEST(AgentConfig, EveryValueCanBeSet) {
  const AgentConfig config = parse(
      "log: {level: debug, format: json}\n"
      "http: {listen: 0.0.0.0:8080}\n"
      "probe: {backend: kprobe-multi}\n"
      "counters:\n"
      "  drops_max_entries: 1\n"
      "  visits_max_entries: 1048576\n"
      "metrics: {max_series: 1000000}\n"
      "traces: {auth: token, token_file: /run/pwru/token}\n");
  EXPECT_EQ(config.log.level, "debug");
  EXPECT_EQ(config.log.format, "json");
  EXPECT_EQ(config.http.listen_address, "0.0.0.0");
  EXPECT_EQ(config.http.listen_port, 8080);
  EXPECT_EQ(config.probe.backend, "kprobe-multi");
  EXPECT_EQ(config.counters.drops_max_entries, 1u);
  EXPECT_EQ(config.counters.visits_max_entries, 1048576u);
  EXPECT_EQ(config.metrics.max_series, 1000000u);
  for (const std::string level : {"trace", "debug", "info", "warn", "error"}) {
    EXPECT_EQ(parse("log:\n  level: " + level + "\n").log.level, level);
  }
  for (const std::string backend : {"auto", "kprobe-multi", "kprobe", "tracepoint"}) {
    EXPECT_EQ(parse("probe:\n  backend: " + backend + "\n").probe.backend, backend);
  }
}

TEST(AgentConfig, ListenTakesIpv6InBracketsAndHostNames) {
  AgentConfig config = parse("http:\n  listen: \"[::1]:9464\"\n");
  EXPECT_EQ(config.http.listen_address, "::1");
  // Beyond loopback, traces need auth (or to be off).
  const std::string no_traces = "traces:\n  enabled: false\n";
  EXPECT_EQ(config.http.listen_address, "::1");
  EXPECT_EQ(config.http.listen_port, 9464);
  config = parse("http:\n  listen: '[::]:1'\n" + no_traces);
  EXPECT_EQ(config.http.listen_address, "::");
  EXPECT_EQ(config.http.listen_port, 1);
  config = parse("http:\n  listen: metrics.example.internal:65535\n" + no_traces);
  EXPECT_EQ(config.http.listen_address, "metrics.example.internal");
  EXPECT_EQ(config.http.listen_port, 65535);
}

TEST(AgentConfig, VisitTracepointsTakesAllOrAList) {
  AgentConfig config = parse("counters:\n  visit_tracepoints: [kfree_skb, net_dev_queue]\n");
  EXPECT_FALSE(config.counters.all_tracepoints);
  EXPECT_EQ(config.counters.visit_tracepoints, (std::vector<std::string>{"kfree_skb", "net_dev_queue"}));
  config = parse("counters:\n  visit_tracepoints:\n    - netif_receive_skb\n");
  EXPECT_FALSE(config.counters.all_tracepoints);
  EXPECT_EQ(config.counters.visit_tracepoints, (std::vector<std::string>{"netif_receive_skb"}));
  config = parse("counters:\n  visit_tracepoints: all\n");
  EXPECT_TRUE(config.counters.all_tracepoints);
  EXPECT_TRUE(config.counters.visit_tracepoints.empty());
}

TEST(AgentConfig, VisitHooksTakesDefaultOrAll) {
  EXPECT_EQ(parse("counters:\n  visit_hooks: all\n").counters.visit_hooks, VisitHooks::kAll);
  EXPECT_EQ(parse("counters:\n  visit_hooks: default\n").counters.visit_hooks, VisitHooks::kDefault);
  // Kept beside a list, where it has no effect: a list is taken as written.
  const AgentConfig config = parse("counters:\n  visit_hooks: all\n  visit_tracepoints: [netif_rx_entry]\n");
  EXPECT_EQ(config.counters.visit_hooks, VisitHooks::kAll);
  EXPECT_EQ(config.counters.visit_tracepoints, (std::vector<std::string>{"netif_rx_entry"}));
}

TEST(AgentConfig, VisitHooksRejectsOtherValues) {
  for (const std::string bad : {"stages", "ALL", "[all]", "{a: b}", "''", "true"}) {
    EXPECT_THAT(error_of("counters:\n  visit_hooks: " + bad + "\n"),
                AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("counters.visit_hooks"),
                      HasSubstr("one of default, all")))
        << bad;
  }
}

TEST(AgentConfig, VisitFunctionsTakesCatalogueNoneOrAList) {
  AgentConfig config = parse("counters:\n  visit_functions:\n    - ip_rcv\n    - tcp_v4_rcv\n");
  EXPECT_EQ(config.counters.functions, Functions::kList);
  EXPECT_EQ(config.counters.visit_functions, (std::vector<std::string>{"ip_rcv", "tcp_v4_rcv"}));
  config = parse("counters:\n  visit_functions: none\n");
  EXPECT_EQ(config.counters.functions, Functions::kNone);
  EXPECT_TRUE(config.counters.visit_functions.empty());
  config = parse("counters:\n  visit_functions: catalogue\n");
  EXPECT_EQ(config.counters.functions, Functions::kCatalogue);
}

TEST(AgentConfig, UnknownKeysAreRejectedWithTheAllowedKeys) {
  EXPECT_THAT(
      error_of("counters:\n  drop_max_entries: 10\n"),
      AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("counters.drop_max_entries"), HasSubstr("unknown key"),
            HasSubstr("did you mean drops_max_entries?"),
            HasSubstr("drops_max_entries, visits_max_entries, visit_tracepoints, visit_hooks, visit_functions")));
  EXPECT_THAT(error_of("log:\n  level: info\nlogs:\n  level: info\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:3: "), HasSubstr("logs"),
                    HasSubstr("log, http, probe, counters, metrics, kubernetes")));
  EXPECT_THAT(error_of("http:\n\n  listen: 127.0.0.1:1\n  port: 80\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:4: "), HasSubstr("http.port"), HasSubstr("allows listen")));
}

TEST(AgentConfig, RepeatedKeysAreRejected) {
  EXPECT_THAT(error_of("log:\n  level: info\n  level: debug\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:3: "), HasSubstr("log.level"), HasSubstr("twice")));
}

TEST(AgentConfig, SyntaxErrorsGiveTheLine) {
  EXPECT_THAT(error_of("log:\n  level: info\n\tformat: json\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:3: "), HasSubstr("YAML syntax error"), HasSubstr("tabs")));
  EXPECT_THAT(error_of("log: {level: info\n"), AllOf(StartsWith("/etc/pwru-agent.yaml:"), HasSubstr("YAML")));
  // An unquoted bracketed address is YAML flow syntax; the hint says to quote.
  EXPECT_THAT(error_of("http:\n  listen: [::1]:9464\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("\"[::1]:9464\"")));
}

TEST(AgentConfig, SeveralDocumentsAreRejected) {
  EXPECT_THAT(error_of("log: {level: info}\n---\nlog: {level: debug}\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:"), HasSubstr("single document")));
}

TEST(AgentConfig, TopLevelAndSectionsMustBeMaps) {
  EXPECT_THAT(error_of("just a string\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:1: "), HasSubstr("top level"), HasSubstr("must be a map")));
  EXPECT_THAT(error_of("- log\n- http\n"), AllOf(StartsWith("/etc/pwru-agent.yaml:1: "), HasSubstr("must be a map")));
  EXPECT_THAT(error_of("metrics: 10\n"), AllOf(StartsWith("/etc/pwru-agent.yaml:1: "),
                                               HasSubstr("metrics: must be a map"), HasSubstr("max_series")));
  EXPECT_THAT(
      error_of("log:\n  level: info\ncounters:\n  - drops_max_entries\n"),
      AllOf(StartsWith("/etc/pwru-agent.yaml:4: "), HasSubstr("counters: must be a map"), HasSubstr("got a list")));
}

TEST(AgentConfig, LogLevelAndFormatAreChecked) {
  EXPECT_THAT(error_of("log:\n  level: verbose\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("log.level"),
                    HasSubstr("trace, debug, info, warn, error"), HasSubstr("'verbose'")));
  EXPECT_THAT(error_of("log:\n  level: warning\n"), HasSubstr("log.level"));
  EXPECT_THAT(error_of("log:\n  level:\n"), AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("got nothing")));
  EXPECT_THAT(error_of("log:\n  level: [info]\n"), AllOf(HasSubstr("log.level"), HasSubstr("got a list")));
  EXPECT_THAT(error_of("log:\n  level: info\n  format: yaml\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:3: "), HasSubstr("log.format"), HasSubstr("text, json")));
}

TEST(AgentConfig, ListenIsChecked) {
  const auto listen_error = [](const std::string& value) { return error_of("\nhttp:\n  listen: " + value + "\n"); };
  for (const std::string bad :
       {"127.0.0.1", "'127.0.0.1:'", ":9464", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:94x4", "127.0.0.1:-1",
        "'127.0.0.1: 9464x'", "'[::1]9464'", "'[::1'", "'[]:9464'", "'127.0.0.1 :9464'", "::1:9464", "9464",
        "127.0.0.1:99999999999999999999999"}) {
    EXPECT_THAT(listen_error(bad), AllOf(StartsWith("/etc/pwru-agent.yaml:3: "), HasSubstr("http.listen"))) << bad;
  }
  EXPECT_THAT(listen_error("::1:9464"), HasSubstr("\"[::1]:9464\""));
  EXPECT_THAT(listen_error("127.0.0.1:0"), HasSubstr("too small"));
  EXPECT_THAT(listen_error("127.0.0.1:65536"), HasSubstr("too large; must be an integer from 1 to 65535"));
  EXPECT_THAT(listen_error(":9464"), HasSubstr("address"));
}

TEST(AgentConfig, BackendIsChecked) {
  EXPECT_THAT(error_of("probe:\n  backend: fentry\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("probe.backend"),
                    HasSubstr("auto, kprobe-multi, kprobe, tracepoint")));
}

TEST(AgentConfig, MapSizesMustBeIntegersInRange) {
  for (const std::string key : {"drops_max_entries", "visits_max_entries"}) {
    const auto size_error = [&](const std::string& value) {
      return error_of("counters:\n  visit_functions: none\n  " + key + ": " + value + "\n");
    };
    for (const std::string bad :
         {"0", "-1", "1.5", "1e3", "0x10", "many", "'16k'", "1048577", "99999999999999999999999999", "[1]", ""}) {
      EXPECT_THAT(size_error(bad),
                  AllOf(StartsWith("/etc/pwru-agent.yaml:3: "), HasSubstr("counters." + key), HasSubstr("1048576")))
          << key << ": " << bad;
    }
    EXPECT_THAT(size_error("-1"), HasSubstr("an integer from 1 to 1048576; got '-1'"));
    EXPECT_THAT(size_error("1048577"), HasSubstr("too large"));
    EXPECT_THAT(size_error("99999999999999999999999999"), HasSubstr("too large"));
    EXPECT_THAT(size_error("0"), HasSubstr("too small"));
  }
}

TEST(AgentConfig, MaxSeriesMustBeAnIntegerInRange) {
  for (const std::string bad : {"0", "-5", "2.5", "lots", "1000001"}) {
    EXPECT_THAT(error_of("metrics:\n  max_series: " + bad + "\n"),
                AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("metrics.max_series"), HasSubstr("1000000")))
        << bad;
  }
}

TEST(AgentConfig, VisitPodLabelsIsTrueOrFalse) {
  EXPECT_FALSE(parse("metrics:\n  visit_pod_labels: false\n").metrics.visit_pod_labels);
  EXPECT_TRUE(parse("metrics:\n  visit_pod_labels: true\n").metrics.visit_pod_labels);
  // Overlaid alone, it leaves the cap as it was.
  EXPECT_EQ(parse("metrics:\n  visit_pod_labels: false\n").metrics.max_series, 10000u);
  for (const std::string bad : {"no", "False", "0", "off", "pods", "[true]", "{a: b}", ""}) {
    EXPECT_THAT(error_of("metrics:\n  max_series: 50\n  visit_pod_labels: " + bad + "\n"),
                AllOf(StartsWith("/etc/pwru-agent.yaml:3: "), HasSubstr("metrics.visit_pod_labels"),
                      HasSubstr("one of true, false")))
        << bad;
  }
}

TEST(AgentConfig, VisitTracepointsRejectsOtherForms) {
  const auto tracepoints_error = [](const std::string& value) {
    return error_of("counters:\n  visit_tracepoints: " + value + "\n");
  };
  EXPECT_THAT(tracepoints_error("kfree_skb"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("counters.visit_tracepoints"),
                    HasSubstr("'all' or a list"), HasSubstr("[kfree_skb]")));
  EXPECT_THAT(tracepoints_error("[]"), AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("empty list")));
  EXPECT_THAT(tracepoints_error("{a: b}"), HasSubstr("counters.visit_tracepoints"));
  EXPECT_THAT(
      tracepoints_error("[kfree_skb, '']"),
      AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("counters.visit_tracepoints[1]"), HasSubstr("empty")));
  EXPECT_THAT(error_of("counters:\n  visit_tracepoints:\n    - kfree_skb\n    - [a]\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:4: "), HasSubstr("counters.visit_tracepoints[1]")));
  EXPECT_THAT(error_of("counters:\n  visit_tracepoints:\n    - kfree_skb\n    -\n"),
              HasSubstr("counters.visit_tracepoints[1]"));
}

TEST(AgentConfig, VisitFunctionsRejectsOtherForms) {
  const auto functions_error = [](const std::string& value) {
    return error_of("counters:\n  visit_functions: " + value + "\n");
  };
  EXPECT_THAT(functions_error("all"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:2: "), HasSubstr("counters.visit_functions"),
                    HasSubstr("'catalogue', 'none' or a list")));
  EXPECT_THAT(functions_error("[]"), AllOf(HasSubstr("counters.visit_functions"), HasSubstr("'none'")));
  EXPECT_THAT(functions_error("[ip_rcv, \"\"]"), HasSubstr("counters.visit_functions[1]"));
}

TEST(AgentConfig, ErrorsNameTheSourceGiven) {
  try {
    parse_agent_config("log:\n  level: loud\n", "configmap pwru/agent.yaml");
    FAIL() << "parsed a bad level";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), StartsWith("configmap pwru/agent.yaml:2: log.level"));
  }
}

using Enabled = AgentConfig::Kubernetes::Enabled;

TEST(AgentConfig, KubernetesDefaultsAreInClusterAndAuto) {
  const AgentConfig::Kubernetes k = default_agent_config_parsed().kubernetes;
  EXPECT_EQ(k.enabled, Enabled::kAuto);
  EXPECT_EQ(k.api_server_host, "");
  EXPECT_EQ(k.token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ(k.ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
  EXPECT_EQ(k.node_name, "");
  EXPECT_EQ(k.proc_root, "/proc");
  EXPECT_EQ(k.rescan_interval_seconds, 30u);
  EXPECT_EQ(k.deleted_pod_grace_seconds, 60u);
}

TEST(AgentConfig, KubernetesEveryValueCanBeSet) {
  const AgentConfig::Kubernetes k =
      parse(
          "kubernetes:\n  enabled: on\n  api_server: https://10.0.0.1:6443\n  token_file: /run/token\n"
          "  ca_file: /run/ca.crt\n  node_name: worker-1\n  proc_root: /host/proc\n"
          "  rescan_interval_seconds: 5\n  deleted_pod_grace_seconds: 0\n")
          .kubernetes;
  EXPECT_EQ(k.enabled, Enabled::kOn);
  EXPECT_EQ(k.api_server_host, "10.0.0.1");
  EXPECT_EQ(k.api_server_port, 6443);
  EXPECT_EQ(k.token_file, "/run/token");
  EXPECT_EQ(k.ca_file, "/run/ca.crt");
  EXPECT_EQ(k.node_name, "worker-1");
  EXPECT_EQ(k.proc_root, "/host/proc");
  EXPECT_EQ(k.rescan_interval_seconds, 5u);
  EXPECT_EQ(k.deleted_pod_grace_seconds, 0u);

  EXPECT_EQ(parse("kubernetes:\n  enabled: off\n").kubernetes.enabled, Enabled::kOff);
  EXPECT_EQ(parse("kubernetes:\n  enabled: false\n").kubernetes.enabled, Enabled::kOff);
  EXPECT_EQ(parse("kubernetes:\n  enabled: true\n").kubernetes.enabled, Enabled::kOn);
  const AgentConfig::Kubernetes v6 = parse("kubernetes:\n  api_server: https://[fd00::1]/\n").kubernetes;
  EXPECT_EQ(v6.api_server_host, "fd00::1");
  EXPECT_EQ(v6.api_server_port, 443);
  EXPECT_EQ(parse("kubernetes:\n  api_server: https://kube.example:8443\n").kubernetes.api_server_host, "kube.example");
}

TEST(AgentConfig, KubernetesValuesAreChecked) {
  EXPECT_THAT(error_of("kubernetes:\n  enabled: maybe\n"),
              AllOf(StartsWith("/etc/pwru-agent.yaml:2: kubernetes.enabled"), HasSubstr("auto, on, off")));
  EXPECT_THAT(error_of("kubernetes:\n  api_server: http://10.0.0.1:6443\n"),
              AllOf(HasSubstr("kubernetes.api_server"), HasSubstr("write https://")));
  EXPECT_THAT(error_of("kubernetes:\n  api_server: 10.0.0.1:6443\n"),
              AllOf(HasSubstr("kubernetes.api_server"), HasSubstr("https://HOST[:PORT]")));
  EXPECT_THAT(error_of("kubernetes:\n  api_server: https://10.0.0.1:99999\n"),
              AllOf(HasSubstr("kubernetes.api_server"), HasSubstr("port '99999' is too large")));
  EXPECT_THAT(error_of("kubernetes:\n  api_server: https://10.0.0.1/api\n"), HasSubstr("no path"));
  EXPECT_THAT(error_of("kubernetes:\n  api_server: https://fd00::1:6443\n"), HasSubstr("in brackets"));
  EXPECT_THAT(error_of("kubernetes:\n  token_file: token\n"),
              AllOf(HasSubstr("kubernetes.token_file"), HasSubstr("absolute path")));
  EXPECT_THAT(error_of("kubernetes:\n  proc_root: [a]\n"), HasSubstr("kubernetes.proc_root"));
  EXPECT_THAT(error_of("kubernetes:\n  node_name: a b\n"), HasSubstr("kubernetes.node_name"));
  EXPECT_THAT(error_of("kubernetes:\n  rescan_interval_seconds: 0\n"),
              AllOf(HasSubstr("kubernetes.rescan_interval_seconds"), HasSubstr("from 1 to 3600")));
  EXPECT_THAT(error_of("kubernetes:\n  deleted_pod_grace: 60\n"), HasSubstr("did you mean deleted_pod_grace_seconds?"));
}

TEST(AgentConfig, MaxPodsPerTraceIsBoundByTheBpfNetnsSet) {
  EXPECT_EQ(default_agent_config_parsed().traces.max_pods_per_trace, 16u);
  EXPECT_EQ(parse("traces:\n  max_pods_per_trace: 64\n").traces.max_pods_per_trace, 64u);
  EXPECT_THAT(error_of("traces:\n  max_pods_per_trace: 65\n"),
              AllOf(HasSubstr("traces.max_pods_per_trace"), HasSubstr("from 1 to 64")));
  EXPECT_THAT(error_of("traces:\n  max_pods_per_trace: 0\n"), HasSubstr("traces.max_pods_per_trace"));
}

TEST(AgentConfig, TracesValuesAndTheirCombinationsAreChecked) {
  const AgentConfig::Traces t =
      parse(
          "traces:\n  enabled: true\n  auth: token\n  token_file: /run/t\n  max_concurrent: 2\n"
          "  default_duration_seconds: 10\n  max_duration_seconds: 20\n  default_max_events: 5\n  max_events: 6\n"
          "  max_body_bytes: 1024\n  ring_buffer_bytes: 65536\n")
          .traces;
  EXPECT_EQ(t.auth, AgentConfig::Traces::Auth::kToken);
  EXPECT_EQ(t.max_concurrent, 2u);
  EXPECT_EQ(t.max_duration_seconds, 20u);
  EXPECT_EQ(t.ring_buffer_bytes, 65536u);
  EXPECT_THAT(
      error_of("http:\n  listen: 0.0.0.0:9464\n"),
      AllOf(HasSubstr("http.listen is 0.0.0.0"), HasSubstr("traces.auth is none"), HasSubstr("traces.auth: token")));
  EXPECT_THAT(error_of("traces:\n  auth: token\n"), HasSubstr("traces.token_file is empty"));
  EXPECT_THAT(error_of("traces:\n  default_duration_seconds: 700\n"),
              HasSubstr("is over traces.max_duration_seconds (600)"));
  EXPECT_THAT(error_of("traces:\n  ring_buffer_bytes: 5000\n"), HasSubstr("power of two"));
  EXPECT_THAT(error_of("traces:\n  auth: oauth\n"),
              AllOf(HasSubstr("traces.auth"), HasSubstr("none, token, kubernetes")));
  EXPECT_EQ(parse("http:\n  listen: 127.0.0.2:1\n").http.listen_port, 1) << "loopback needs no auth";
}

// traces.auth none is allowed on loopback only, and loopback is what the
// address parses to, not what its text begins with.
TEST(AgentConfig, LoopbackIsParsedNotMatchedByPrefix) {
  const auto listen_on = [](const std::string& address) {
    const bool v6 = address.find(':') != std::string::npos;
    return "http:\n  listen: " + (v6 ? "'[" + address + "]:9464'" : address + ":9464") + "\n";
  };
  for (const std::string loopback :
       {"127.0.0.1", "127.255.0.9", "localhost", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::ffff:7f00:2"}) {
    EXPECT_EQ(parse(listen_on(loopback)).http.listen_address, loopback);
  }
  for (const std::string beyond : {"127.evil.example.com", "127.0.0.1.nip.io", "128.0.0.1", "10.127.0.1", "0.0.0.0",
                                   "::", "::ffff:10.0.0.1", "::2", "fe80::1", "::127.0.0.1", "localhost.example.com"}) {
    EXPECT_THAT(error_of(listen_on(beyond)), AllOf(HasSubstr("beyond loopback"), HasSubstr("traces.auth is none")))
        << beyond;
  }
}

// traces.auth kubernetes: the TokenReview cache and rate limit.
TEST(AgentConfig, TokenReviewCacheAndRate) {
  const AgentConfig::Traces::TokenReview defaults = parse("").traces.token_review;
  EXPECT_EQ(defaults.cache_seconds, 10u);
  EXPECT_EQ(defaults.negative_cache_seconds, 5u);
  EXPECT_EQ(defaults.reviews_per_second, 20u);
  EXPECT_EQ(defaults.burst, 40u);
  const AgentConfig::Traces::TokenReview set =
      parse(
          "traces:\n  token_review:\n    cache_seconds: 0\n    negative_cache_seconds: 120\n"
          "    reviews_per_second: 1\n    burst: 3\n")
          .traces.token_review;
  EXPECT_EQ(set.cache_seconds, 0u) << "0: every request is reviewed";
  EXPECT_EQ(set.negative_cache_seconds, 120u);
  EXPECT_EQ(set.reviews_per_second, 1u);
  EXPECT_EQ(set.burst, 3u);
  EXPECT_THAT(error_of("traces:\n  token_review:\n    cache_seconds: 121\n"),
              AllOf(HasSubstr("traces.token_review.cache_seconds"), HasSubstr("from 0 to 120")));
  EXPECT_THAT(error_of("traces:\n  token_review:\n    reviews_per_second: 0\n"),
              AllOf(HasSubstr("traces.token_review.reviews_per_second"), HasSubstr("from 1 to 10000")));
  EXPECT_THAT(error_of("traces:\n  token_review:\n    burst: -1\n"), HasSubstr("traces.token_review.burst"));
  EXPECT_THAT(error_of("traces:\n  token_review:\n    ttl: 5\n"), HasSubstr("ttl"));
}

// The connection limits that keep probes answering (issue 15, slowloris).
TEST(AgentConfig, HttpConnectionLimits) {
  const AgentConfig::Http defaults = parse("").http;
  EXPECT_EQ(defaults.request_head_timeout_seconds, 5u);
  EXPECT_EQ(defaults.max_connections, 256u);
  EXPECT_EQ(defaults.max_connections_per_client, 32u);
  const AgentConfig::Http set = parse(
                                    "http:\n  request_head_timeout_seconds: 2\n  max_connections: 40\n"
                                    "  max_connections_per_client: 10\n")
                                    .http;
  EXPECT_EQ(set.request_head_timeout_seconds, 2u);
  EXPECT_EQ(set.max_connections, 40u);
  EXPECT_EQ(set.max_connections_per_client, 10u);
  EXPECT_THAT(error_of("http:\n  request_head_timeout_seconds: 0\n"),
              AllOf(HasSubstr("http.request_head_timeout_seconds"), HasSubstr("from 1 to 300")));
  EXPECT_THAT(error_of("http:\n  max_connections: lots\n"), HasSubstr("http.max_connections"));
  EXPECT_THAT(error_of("http:\n  max_connections: 20\n  max_connections_per_client: 20\n"),
              HasSubstr("http.max_connections_per_client (20) must be below http.max_connections (20)"));
  EXPECT_THAT(error_of("http:\n  max_connections_per_client: 4\n"),
              HasSubstr("must be above traces.max_concurrent (4)"));
  EXPECT_EQ(
      parse("http:\n  max_connections_per_client: 4\ntraces:\n  enabled: false\n").http.max_connections_per_client, 4u)
      << "without traces, no stream needs a connection";
}

}  // namespace
}  // namespace pwru
