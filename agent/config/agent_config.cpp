#include "config/agent_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/embedded.h"

namespace pwru {
namespace {

constexpr const char* kEmbeddedSource = "embedded default";
// What DNS names (and the Kubernetes object names that follow them) are made of.
constexpr std::string_view kDnsCharacters = "abcdefghijklmnopqrstuvwxyz0123456789-.";

// Where a value sits: its dotted key path for the message and the mark that
// gives the line. A null value's own mark points past the key (yaml-cpp
// places it on the next token), so callers pass the key's mark for those.
struct Location {
  std::string path;
  YAML::Mark mark;
};

std::string join(const std::vector<std::string>& words, std::string_view separator) {
  std::string out;
  for (const std::string& word : words) {
    if (!out.empty()) out += separator;
    out += word;
  }
  return out;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "nothing";
  }
}

// Levenshtein distance, to turn "drop_max_entries" into a suggestion rather
// than leaving the user to compare the allowed list by eye.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t substitution = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitution});
    }
  }
  return row[b.size()];
}

// "HOST:PORT", "[IPv6]:PORT", "HOST" or "[IPv6]" taken apart; what is
// wrong with the shape is left for the caller to word (and to decide
// whether a port may be left out).
struct HostPort {
  enum class Problem {
    kNone,
    kUnclosedBracket,      // "[::1"
    kNoColonAfterBracket,  // "[::1]x"
    kUnbracketedIPv6,      // "::1:80": host and port still split at the last ':'
  } problem = Problem::kNone;
  bool bracketed = false;
  bool has_port = false;  // a ':' after the host, even with nothing after it
  std::string host;
  std::string port;
};

HostPort split_host_port(const std::string& text) {
  HostPort out;
  if (!text.empty() && text.front() == '[') {
    out.bracketed = true;
    const std::size_t close = text.find(']');
    if (close == std::string::npos) {
      out.problem = HostPort::Problem::kUnclosedBracket;
      return out;
    }
    out.host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') {
        out.problem = HostPort::Problem::kNoColonAfterBracket;
        return out;
      }
      out.has_port = true;
      out.port = text.substr(close + 2);
    }
    return out;
  }
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    out.host = text;
    return out;
  }
  out.has_port = true;
  out.host = text.substr(0, colon);
  out.port = text.substr(colon + 1);
  if (out.host.find(':') != std::string::npos) out.problem = HostPort::Problem::kUnbracketedIPv6;
  return out;
}

class ConfigReader {
 public:
  explicit ConfigReader(const std::string& source) : source_(source) {}

  // Overlays the document in `text` onto `config`; a document with no keys
  // (empty, or only comments) leaves `config` as it is.
  void apply(std::string_view text, AgentConfig& config) {
    const YAML::Node root = load(text);
    read_map(root, Location{"", root.Mark()}, top_level_fields(config));
  }

 private:
  using FieldReader = std::function<void(const YAML::Node& value, const Location& at)>;
  struct Field {
    std::string key;
    FieldReader read;
  };

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& message) const {
    std::string prefix = source_;
    if (mark.line >= 0) prefix += ":" + std::to_string(mark.line + 1);
    throw UsageError(prefix + ": " + message);
  }

  [[noreturn]] void fail(const Location& at, const std::string& problem) const {
    fail(at.mark, (at.path.empty() ? std::string("top level") : at.path) + ": " + problem);
  }

  YAML::Node load(std::string_view text) const {
    std::vector<YAML::Node> documents;
    try {
      documents = YAML::LoadAll(std::string(text));
    } catch (const YAML::ParserException& e) {
      fail(e.mark, "YAML syntax error: " + e.msg + syntax_hint(text, e.mark));
    }
    if (documents.size() > 1) {
      fail(documents[1].Mark(), "holds " + std::to_string(documents.size()) +
                                    " YAML documents; the configuration is a single document (remove '---')");
    }
    return documents.empty() ? YAML::Node() : documents.front();
  }

  // yaml-cpp's messages name the parser state, not the mistake; the two
  // mistakes a hand-edited config most often makes get a hint. An unquoted
  // "[::1]:9464" opens a flow sequence ("end of map not found"), and a tab
  // in the indentation gives "illegal map value".
  static std::string syntax_hint(std::string_view text, const YAML::Mark& mark) {
    if (mark.line < 0) return "";
    std::size_t begin = 0;
    for (int line = 0; line < mark.line && begin != std::string_view::npos; ++line) {
      begin = text.find('\n', begin);
      if (begin != std::string_view::npos) ++begin;
    }
    if (begin == std::string_view::npos) return "";
    const std::string_view line = text.substr(begin, text.find('\n', begin) - begin);
    if (line.find(": [") != std::string_view::npos && line.find("]:") != std::string_view::npos) {
      return " (a value starting with '[' must be quoted, e.g. listen: \"[::1]:9464\")";
    }
    if (line.find('\t') != std::string_view::npos) return " (indent with spaces: YAML does not allow tabs)";
    return "";
  }

  std::vector<Field> top_level_fields(AgentConfig& config) {
    return {
        {"log", section(log_fields(config.log))},
        {"http", section(http_fields(config.http))},
        {"probe", section(probe_fields(config.probe))},
        {"counters", section(counters_fields(config.counters))},
        {"metrics", section(metrics_fields(config.metrics))},
        {"kubernetes", section(kubernetes_fields(config.kubernetes))},
        {"traces", section(traces_fields(config.traces))},
    };
  }

  FieldReader section(std::vector<Field> fields) {
    return [this, fields = std::move(fields)](const YAML::Node& value, const Location& at) {
      read_map(value, at, fields);
    };
  }

  std::vector<Field> log_fields(AgentConfig::Log& log) {
    return {
        {"level", choice_field(log.level, {"trace", "debug", "info", "warn", "error"})},
        {"format", choice_field(log.format, {"text", "json"})},
    };
  }

  std::vector<Field> http_fields(AgentConfig::Http& http) {
    return {
        {"listen", reader_field(&ConfigReader::read_listen, http)},
        {"request_head_timeout_seconds", integer_field(http.request_head_timeout_seconds, 1, 300)},
        {"max_connections", integer_field(http.max_connections, 2, 65536)},
        {"max_connections_per_client", integer_field(http.max_connections_per_client, 1, 65536)},
    };
  }

  std::vector<Field> probe_fields(AgentConfig::Probe& probe) {
    return {
        {"backend", choice_field(probe.backend, {"auto", "kprobe-multi", "kprobe", "tracepoint"})},
    };
  }

  std::vector<Field> counters_fields(AgentConfig::Counters& counters) {
    using VisitHooks = AgentConfig::Counters::VisitHooks;
    constexpr std::uint64_t kMaxMapEntries = 1048576;
    return {
        {"drops_max_entries", integer_field(counters.drops_max_entries, 1, kMaxMapEntries)},
        {"visits_max_entries", integer_field(counters.visits_max_entries, 1, kMaxMapEntries)},
        {"visit_tracepoints", reader_field(&ConfigReader::read_visit_tracepoints, counters)},
        {"visit_hooks",
         enum_field(counters.visit_hooks, {{"default", VisitHooks::kDefault}, {"all", VisitHooks::kAll}})},
        {"visit_functions", reader_field(&ConfigReader::read_visit_functions, counters)},
    };
  }

  std::vector<Field> metrics_fields(AgentConfig::Metrics& metrics) {
    return {
        {"max_series", integer_field(metrics.max_series, 1, 1000000)},
        {"visit_pod_labels", bool_field(metrics.visit_pod_labels)},
    };
  }

  std::vector<Field> kubernetes_fields(AgentConfig::Kubernetes& kube) {
    using Enabled = AgentConfig::Kubernetes::Enabled;
    return {
        // YAML users write booleans for switches: take them as on/off.
        {"enabled", enum_field(kube.enabled, {{"auto", Enabled::kAuto}, {"on", Enabled::kOn}, {"off", Enabled::kOff}},
                               {{"true", Enabled::kOn}, {"false", Enabled::kOff}})},
        {"api_server", reader_field(&ConfigReader::read_api_server, kube)},
        {"token_file", path_field(kube.token_file, "token")},
        {"ca_file", path_field(kube.ca_file, "CA bundle")},
        {"node_name", name_field(kube.node_name, {.expected = "a node name, or \"\" for $NODE_NAME",
                                                  .may_be_empty = true,
                                                  .forbidden = " \t/",
                                                  .must_be = "must be a Kubernetes node name (no spaces or '/')"})},
        {"proc_root", path_field(kube.proc_root, "proc")},
        {"rescan_interval_seconds", integer_field(kube.rescan_interval_seconds, 1, 3600)},
        {"deleted_pod_grace_seconds", integer_field(kube.deleted_pod_grace_seconds, 0, 3600)},
    };
  }

  std::vector<Field> traces_fields(AgentConfig::Traces& traces) {
    using Auth = AgentConfig::Traces::Auth;
    return {
        {"enabled", bool_field(traces.enabled)},
        {"auth",
         enum_field(traces.auth, {{"none", Auth::kNone}, {"token", Auth::kToken}, {"kubernetes", Auth::kKubernetes}})},
        {"token_file", optional_path_field(traces.token_file, "token")},
        {"max_concurrent", integer_field(traces.max_concurrent, 1, 64)},
        {"default_duration_seconds", integer_field(traces.default_duration_seconds, 1, 86400)},
        {"max_duration_seconds", integer_field(traces.max_duration_seconds, 1, 86400)},
        {"default_max_events", integer_field(traces.default_max_events, 1, 1000000000)},
        {"max_events", integer_field(traces.max_events, 1, 1000000000)},
        {"max_body_bytes", integer_field(traces.max_body_bytes, 256, 1048576)},
        // The BPF netns set's bound (PWRU_MAX_NETNS_SET in bpf/pwru_abi.h).
        {"max_pods_per_trace", integer_field(traces.max_pods_per_trace, 1, 64)},
        {"forward", bool_field(traces.forward)},
        {"peer_selector",
         name_field(traces.peer_selector,
                    {.expected = "a label selector such as app.kubernetes.io/name=pwru-agent",
                     .forbidden = " \t",
                     .must_be = "must be a label selector such as app.kubernetes.io/name=pwru-agent (no spaces)"})},
        {"peer_namespace", name_field(traces.peer_namespace, {.expected = "a namespace name",
                                                              .may_be_empty = true,
                                                              .allowed = "abcdefghijklmnopqrstuvwxyz0123456789-",
                                                              .must_be = "must be a Kubernetes namespace name"})},
        {"peer_daemonset",
         name_field(traces.peer_daemonset,
                    {.expected = "the name of the agents' DaemonSet",
                     .allowed = kDnsCharacters,
                     .must_be = "must be the name of the agents' DaemonSet (lower case, digits, '-', '.')"})},
        {"peer_port", integer_field(traces.peer_port, 1, 65535)},
        {"token_review", section(token_review_fields(traces.token_review))},
        {"peer_tls", section(peer_tls_fields(traces.peer_tls))},
        {"fanout", section(fanout_fields(traces.fanout))},
        {"summary_memory_bytes", integer_field(traces.summary_memory_bytes, 1u << 20, 1ull << 34)},
        {"ring_buffer_bytes",
         [this, &traces](const YAML::Node& v, const Location& at) {
           const std::uint64_t bytes = read_integer(v, at, 4096, 1u << 30);
           if ((bytes & (bytes - 1)) != 0)
             fail(at, "must be a power of two (the kernel's ring buffers are); got " + std::to_string(bytes));
           traces.ring_buffer_bytes = static_cast<std::uint32_t>(bytes);
         }},
    };
  }

  std::vector<Field> fanout_fields(AgentConfig::Traces::Fanout& fanout) {
    return {
        {"max_nodes", integer_field(fanout.max_nodes, 1, 1024)},
        {"max_pods", integer_field(fanout.max_pods, 1, 16384)},
        {"max_concurrent", integer_field(fanout.max_concurrent, 1, 64)},
        // Beyond 2 s a merged stream stops being live.
        {"reorder_window_ms", integer_field(fanout.reorder_window_ms, 0, 2000)},
        {"slow_after_ms", integer_field(fanout.slow_after_ms, 200, 60000)},
        {"max_events_per_second", integer_field(fanout.max_events_per_second, 1, 10000000)},
        {"max_buffered_events", integer_field(fanout.max_buffered_events, 1000, 10000000)},
    };
  }

  std::vector<Field> token_review_fields(AgentConfig::Traces::TokenReview& review) {
    // Longer than the API server's own token cache (2 minutes) would keep
    // a revoked token working past what Kubernetes itself allows.
    return {
        {"cache_seconds", integer_field(review.cache_seconds, 0, 120)},
        {"negative_cache_seconds", integer_field(review.negative_cache_seconds, 0, 120)},
        {"reviews_per_second", integer_field(review.reviews_per_second, 1, 10000)},
        {"burst", integer_field(review.burst, 1, 10000)},
    };
  }

  std::vector<Field> peer_tls_fields(AgentConfig::Traces::PeerTls& tls) {
    // "" (or null) leaves a file unset: agent-to-agent relays are off.
    return {
        {"ca_file", optional_path_field(tls.ca_file, "CA certificate")},
        {"cert_file", optional_path_field(tls.cert_file, "certificate")},
        {"key_file", optional_path_field(tls.key_file, "private key")},
        {"name", name_field(tls.name, {.expected = "a DNS name such as pwru-agent-peer",
                                       .allowed = kDnsCharacters,
                                       .must_be = "must be a DNS name (lower case, digits, '-', '.') that the "
                                                  "agents' certificates carry"})},
    };
  }

  // The kinds of field, each read one way. The readers capture `into` by
  // reference: the config outlives the field list.

  // One of `choices`, kept as written.
  FieldReader choice_field(std::string& into, std::vector<std::string> choices) {
    return [this, &into, choices = std::move(choices)](const YAML::Node& v, const Location& at) {
      into = read_choice(v, at, choices);
    };
  }

  FieldReader bool_field(bool& into) {
    return [this, &into](const YAML::Node& v, const Location& at) {
      into = read_choice(v, at, {"true", "false"}) == "true";
    };
  }

  // One of the names in `values` (in the order an error lists them), or one
  // of `aliases`, which errors do not offer.
  template <typename Enum>
  FieldReader enum_field(Enum& into, std::vector<std::pair<std::string, Enum>> values,
                         std::vector<std::pair<std::string, Enum>> aliases = {}) {
    return [this, &into, values = std::move(values), aliases = std::move(aliases)](const YAML::Node& v,
                                                                                   const Location& at) {
      if (v.IsScalar())
        for (const auto& [alias, value] : aliases)
          if (v.Scalar() == alias) {
            into = value;
            return;
          }
      std::vector<std::string> names;
      for (const auto& entry : values) names.push_back(entry.first);
      const std::string choice = read_choice(v, at, names);
      for (const auto& [name, value] : values)
        if (name == choice) into = value;
    };
  }

  FieldReader path_field(std::string& into, std::string what) {
    return [this, &into, what = std::move(what)](const YAML::Node& v, const Location& at) {
      into = read_path(v, at, what);
    };
  }

  // A path, or "" (or null) for none.
  FieldReader optional_path_field(std::string& into, std::string what) {
    return [this, &into, what = std::move(what)](const YAML::Node& v, const Location& at) {
      into = v.IsNull() ? std::string() : read_scalar(v, at, "an absolute path, or \"\"");
      if (!into.empty()) into = read_path(v, at, what);
    };
  }

  // What a name-like value (a node, a namespace, a DNS name...) may be.
  struct NameRule {
    std::string expected{};        // as read_scalar words it
    bool may_be_empty = false;     // "" or null: unset
    std::string_view allowed{};    // its characters (empty: any not forbidden)
    std::string_view forbidden{};  // characters it never holds
    std::string must_be{};         // the error, before "; got '...'"
  };

  FieldReader name_field(std::string& into, NameRule rule) {
    return [this, &into, rule = std::move(rule)](const YAML::Node& v, const Location& at) {
      into = rule.may_be_empty && v.IsNull() ? std::string() : read_scalar(v, at, rule.expected);
      const bool bad_characters =
          (!rule.allowed.empty() && into.find_first_not_of(rule.allowed) != std::string::npos) ||
          (!rule.forbidden.empty() && into.find_first_of(rule.forbidden) != std::string::npos);
      if ((into.empty() && !rule.may_be_empty) || bad_characters) fail(at, rule.must_be + "; got '" + into + "'");
    };
  }

  // A value read by one of the readers below into `into`.
  template <typename Target>
  FieldReader reader_field(void (ConfigReader::*read)(const YAML::Node&, const Location&, Target&), Target& into) {
    return [this, read, &into](const YAML::Node& v, const Location& at) { (this->*read)(v, at, into); };
  }

  // An absolute path: the agent runs from / in a container, so a relative
  // one would resolve somewhere nobody meant.
  std::string read_path(const YAML::Node& value, const Location& at, const std::string& what) {
    const std::string& text = read_scalar(value, at, "an absolute path to the " + what + " file");
    if (text.empty() || text.front() != '/') fail(at, "must be an absolute path; got '" + text + "'");
    return text;
  }

  // "https://HOST[:PORT]" as in a kubeconfig's cluster.server; "" for the
  // in-cluster service.
  void read_api_server(const YAML::Node& value, const Location& at, AgentConfig::Kubernetes& kube) {
    const std::string expected = "https://HOST[:PORT] (e.g. https://10.0.0.1:6443), or \"\" for in-cluster";
    const std::string text = value.IsNull() ? std::string() : read_scalar(value, at, expected);
    if (text.empty()) {
      kube.api_server_host.clear();
      kube.api_server_port = 443;
      return;
    }
    constexpr std::string_view kScheme = "https://";
    if (text.rfind("http://", 0) == 0)
      fail(at, "the API server speaks TLS: write https://, not http:// ('" + text + "')");
    if (text.rfind(kScheme, 0) != 0) fail(at, "must be " + expected + "; got '" + text + "'");
    std::string rest = text.substr(kScheme.size());
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    if (rest.find('/') != std::string::npos) fail(at, "must be " + expected + " with no path; got '" + text + "'");
    const HostPort split = split_host_port(rest);
    switch (split.problem) {
      case HostPort::Problem::kNone:
        break;
      case HostPort::Problem::kUnclosedBracket:
        fail(at, "unclosed '[' in '" + text + "'");
      case HostPort::Problem::kNoColonAfterBracket:
        fail(at, "must be " + expected + "; got '" + text + "'");
      case HostPort::Problem::kUnbracketedIPv6:
        fail(at,
             "IPv6 addresses go in brackets, e.g. https://[" + split.host + "]:" + split.port + "; got '" + text + "'");
    }
    if (split.host.empty() || split.host.find_first_of(" \t@") != std::string::npos)
      fail(at, "the host in '" + text + "' is empty or not a host name");
    kube.api_server_port =
        split.port.empty() ? 443 : static_cast<std::uint16_t>(check_integer(split.port, at, "port ", 1, 65535));
    kube.api_server_host = split.host;
  }

  void read_map(const YAML::Node& map, const Location& at, const std::vector<Field>& fields) {
    std::vector<std::string> allowed;
    for (const Field& field : fields) allowed.push_back(field.key);
    // A section whose keys are all commented out is a null; reading it as
    // "no changes" lets users keep the heading while trying things out.
    if (map.IsNull()) return;
    if (!map.IsMap()) {
      fail(at, "must be a map with keys " + join(allowed, ", ") + "; got " + describe(map));
    }
    const std::string where = at.path.empty() ? "the top level" : at.path;
    std::set<std::string> seen;
    for (const auto& entry : map) {
      const YAML::Node& key = entry.first;
      const YAML::Node& value = entry.second;
      if (!key.IsScalar()) {
        fail(Location{at.path, key.Mark()}, "keys must be plain names; allowed here: " + join(allowed, ", "));
      }
      const std::string& name = key.Scalar();
      const Location child{at.path.empty() ? name : at.path + "." + name, value.IsNull() ? key.Mark() : value.Mark()};
      const auto field = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == name; });
      if (field == fields.end()) {
        Location key_at{child.path, key.Mark()};
        fail(key_at, "unknown key" + suggestion(name, allowed) + "; " + where + " allows " + join(allowed, ", "));
      }
      // yaml-cpp keeps both copies of a repeated key; which one wins would
      // be an accident of the reader, so make the user pick.
      if (!seen.insert(name).second) fail(Location{child.path, key.Mark()}, "key given twice; keep one");
      field->read(value, child);
    }
  }

  static std::string suggestion(const std::string& name, const std::vector<std::string>& allowed) {
    const std::string* best = nullptr;
    std::size_t best_distance = 3;  // more edits than this is a different word, not a typo
    for (const std::string& candidate : allowed) {
      // "deleted_pod_grace" for "deleted_pod_grace_seconds": the unit left out.
      if (candidate.rfind(name + "_", 0) == 0) return " (did you mean " + candidate + "?)";
    }
    for (const std::string& candidate : allowed) {
      const std::size_t distance = edit_distance(name, candidate);
      if (distance < best_distance) {
        best_distance = distance;
        best = &candidate;
      }
    }
    return best ? " (did you mean " + *best + "?)" : "";
  }

  const std::string& read_scalar(const YAML::Node& value, const Location& at, const std::string& expected) {
    if (!value.IsScalar()) fail(at, "must be " + expected + "; got " + describe(value));
    return value.Scalar();
  }

  std::string read_choice(const YAML::Node& value, const Location& at, const std::vector<std::string>& choices) {
    const std::string expected = "one of " + join(choices, ", ");
    const std::string& text = read_scalar(value, at, expected);
    if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
      fail(at, "must be " + expected + "; got '" + text + "'");
    }
    return text;
  }

  // A field holding an integer from min to max (max fits `Integer`).
  template <typename Integer>
  FieldReader integer_field(Integer& into, std::uint64_t min, std::uint64_t max) {
    return [this, &into, min, max](const YAML::Node& v, const Location& at) {
      into = static_cast<Integer>(read_integer(v, at, min, max));
    };
  }

  std::uint64_t read_integer(const YAML::Node& value, const Location& at, std::uint64_t min, std::uint64_t max) {
    const std::string& text = read_scalar(value, at, integer_range(min, max));
    return check_integer(text, at, "", min, max);
  }

  static std::string integer_range(std::uint64_t min, std::uint64_t max) {
    return "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  }

  // Decimal digits only: yaml-cpp's own conversion would take "0x10", "1e3"
  // or " 5", and a size deserves one unambiguous spelling. `what` names the
  // part of a larger value being checked ("the port in '...' "), if any.
  std::uint64_t check_integer(const std::string& text, const Location& at, const std::string& what, std::uint64_t min,
                              std::uint64_t max) {
    const bool all_digits =
        !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!all_digits) fail(at, what + "must be " + integer_range(min, max) + "; got '" + text + "'");
    std::uint64_t number = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec == std::errc::result_out_of_range || number > max) {
      fail(at, what + "'" + text + "' is too large; must be " + integer_range(min, max));
    }
    if (number < min) fail(at, what + "'" + text + "' is too small; must be " + integer_range(min, max));
    return number;
  }

  void read_listen(const YAML::Node& value, const Location& at, AgentConfig::Http& http) {
    const std::string expected = "ADDRESS:PORT, e.g. 127.0.0.1:9464, 0.0.0.0:9464 or \"[::1]:9464\"";
    const std::string& text = read_scalar(value, at, expected);
    const HostPort split = split_host_port(text);
    if (split.problem == HostPort::Problem::kUnclosedBracket ||
        split.problem == HostPort::Problem::kNoColonAfterBracket || (split.bracketed && !split.has_port)) {
      fail(at, "must be " + expected + "; got '" + text + "'");
    }
    if (!split.has_port) fail(at, "must be " + expected + "; got '" + text + "' (no port)");
    const std::string& address = split.host;
    if (split.problem == HostPort::Problem::kUnbracketedIPv6) {
      fail(at, "IPv6 addresses go in brackets, e.g. \"[" + address + "]:" + split.port + "\"; got '" + text + "'");
    }
    if (address.empty()) {
      fail(at, "the address in '" + text + "' is empty; use 0.0.0.0 for all IPv4 addresses or \"[::]:PORT\" for all");
    }
    if (address.find_first_of(" \t") != std::string::npos) {
      fail(at, "the address in '" + text + "' contains a space; write ADDRESS:PORT with nothing in between");
    }
    http.listen_port = static_cast<std::uint16_t>(check_integer(split.port, at, "port ", 1, 65535));
    http.listen_address = address;
  }

  std::vector<std::string> read_name_list(const YAML::Node& list, const Location& at, const std::string& kind) {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const YAML::Node item = list[i];
      const Location item_at{at.path + "[" + std::to_string(i) + "]", item.IsNull() ? at.mark : item.Mark()};
      const std::string& name = read_scalar(item, item_at, "a " + kind + " name");
      if (name.find_first_not_of(" \t") == std::string::npos)
        fail(item_at, "must be a " + kind + " name; got an empty string");
      names.push_back(name);
    }
    return names;
  }

  void read_visit_tracepoints(const YAML::Node& value, const Location& at, AgentConfig::Counters& counters) {
    const std::string expected = "'all' or a list of tracepoint names";
    if (value.IsSequence()) {
      if (value.size() == 0) fail(at, "must be " + expected + "; got an empty list");
      counters.visit_tracepoints = read_name_list(value, at, "tracepoint");
      counters.all_tracepoints = false;
      return;
    }
    const std::string& text = read_scalar(value, at, expected);
    if (text != "all") {
      fail(at, "must be " + expected + "; got '" + text + "' (write a single name as a list: [" + text + "])");
    }
    counters.all_tracepoints = true;
    counters.visit_tracepoints.clear();
  }

  void read_visit_functions(const YAML::Node& value, const Location& at, AgentConfig::Counters& counters) {
    using Functions = AgentConfig::Counters::Functions;
    const std::string expected = "'catalogue', 'none' or a list of kernel function names";
    if (value.IsSequence()) {
      if (value.size() == 0)
        fail(at, "must be " + expected + "; got an empty list (write 'none' to count no functions)");
      counters.visit_functions = read_name_list(value, at, "kernel function");
      counters.functions = Functions::kList;
      return;
    }
    const std::string& text = read_scalar(value, at, expected);
    if (text == "catalogue") {
      counters.functions = Functions::kCatalogue;
    } else if (text == "none") {
      counters.functions = Functions::kNone;
    } else {
      fail(at, "must be " + expected + "; got '" + text + "' (write a single name as a list: [" + text + "])");
    }
    counters.visit_functions.clear();
  }

  std::string source_;
};

// Parsed, not matched by prefix: "127.evil.example.com" is a host name that
// may resolve anywhere. Loopback is 127.0.0.0/8, ::1 and ::ffff:127.x.y.z;
// "localhost" is the one name taken on trust (/etc/hosts says it).
bool is_loopback(const std::string& address) {
  if (address == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, address.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

// Rules across keys, checked once the whole document is read.
void check_combinations(const AgentConfig& config, const std::string& source) {
  const AgentConfig::Traces& traces = config.traces;
  const auto fail = [&](const std::string& message) { throw UsageError(source + ": " + message); };
  const AgentConfig::Http& http = config.http;
  // One address holding every connection would lock the probes out.
  if (http.max_connections_per_client >= http.max_connections)
    fail("http.max_connections_per_client (" + std::to_string(http.max_connections_per_client) +
         ") must be below http.max_connections (" + std::to_string(http.max_connections) +
         "), so that one client cannot take every connection; lower it or raise http.max_connections");
  // Port-forwarded traces all come from one address (127.0.0.1).
  if (traces.enabled && http.max_connections_per_client <= traces.max_concurrent)
    fail("http.max_connections_per_client (" + std::to_string(http.max_connections_per_client) +
         ") must be above traces.max_concurrent (" + std::to_string(traces.max_concurrent) +
         "): traces through one port-forward share its address, and listing or cancelling them needs a "
         "connection more; raise http.max_connections_per_client");
  if (traces.default_duration_seconds > traces.max_duration_seconds)
    fail("traces.default_duration_seconds (" + std::to_string(traces.default_duration_seconds) +
         ") is over traces.max_duration_seconds (" + std::to_string(traces.max_duration_seconds) + ")");
  if (traces.default_max_events > traces.max_events)
    fail("traces.default_max_events (" + std::to_string(traces.default_max_events) + ") is over traces.max_events (" +
         std::to_string(traces.max_events) + ")");
  if (!traces.enabled) return;
  const AgentConfig::Traces::PeerTls& tls = traces.peer_tls;
  std::vector<std::string> tls_missing;
  if (tls.ca_file.empty()) tls_missing.push_back("ca_file");
  if (tls.cert_file.empty()) tls_missing.push_back("cert_file");
  if (tls.key_file.empty()) tls_missing.push_back("key_file");
  if (!tls_missing.empty() && tls_missing.size() < 3)
    fail("traces.peer_tls needs ca_file, cert_file and key_file together (missing: " + join(tls_missing, ", ") +
         "); set all three, or none to neither relay to other agents nor serve their relays");
  if (tls.enabled() && traces.peer_port == config.http.listen_port)
    fail("traces.peer_port " + std::to_string(traces.peer_port) +
         " is http.listen's port too; agent-to-agent traffic needs a port of its own (default 9465)");
  if (traces.auth == AgentConfig::Traces::Auth::kToken && traces.token_file.empty())
    fail("traces.auth is token but traces.token_file is empty; name the file that holds the bearer token");
  // Traces load kernel programs and show every packet of the node: without
  // auth, only someone already on the node may ask for one.
  if (traces.auth == AgentConfig::Traces::Auth::kNone && !is_loopback(config.http.listen_address))
    fail("http.listen is " + config.http.listen_address +
         ", beyond loopback, and traces.auth is none: anyone who reaches the port could trace this node's "
         "packets. Set traces.auth: token (with traces.token_file), listen on 127.0.0.1, or set "
         "traces.enabled: false");
}

}  // namespace

AgentConfig parse_agent_config(std::string_view yaml_text, const std::string& source) {
  AgentConfig config = default_agent_config_parsed();
  ConfigReader(source).apply(yaml_text, config);
  check_combinations(config, source);
  return config;
}

AgentConfig default_agent_config_parsed() {
  AgentConfig config;
  ConfigReader(kEmbeddedSource).apply(default_agent_config(), config);
  return config;
}

}  // namespace pwru
