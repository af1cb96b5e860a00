#include "config/agent_config.h"

#include <yaml-cpp/yaml.h>

#include <arpa/inet.h>
#include <netinet/in.h>

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
        {"level",
         [this, &log](const YAML::Node& v, const Location& at) {
           log.level = read_choice(v, at, {"trace", "debug", "info", "warn", "error"});
         }},
        {"format",
         [this, &log](const YAML::Node& v, const Location& at) {
           log.format = read_choice(v, at, {"text", "json"});
         }},
    };
  }

  std::vector<Field> http_fields(AgentConfig::Http& http) {
    return {
        {"listen", [this, &http](const YAML::Node& v, const Location& at) { read_listen(v, at, http); }},
        {"request_head_timeout_seconds", integer_field(http.request_head_timeout_seconds, 1, 300)},
        {"max_connections", integer_field(http.max_connections, 2, 65536)},
        {"max_connections_per_client", integer_field(http.max_connections_per_client, 1, 65536)},
    };
  }

  std::vector<Field> probe_fields(AgentConfig::Probe& probe) {
    return {
        {"backend",
         [this, &probe](const YAML::Node& v, const Location& at) {
           probe.backend = read_choice(v, at, {"auto", "kprobe-multi", "kprobe", "tracepoint"});
         }},
    };
  }

  std::vector<Field> counters_fields(AgentConfig::Counters& counters) {
    constexpr std::uint64_t kMaxMapEntries = 1048576;
    return {
        {"drops_max_entries", integer_field(counters.drops_max_entries, 1, kMaxMapEntries)},
        {"visits_max_entries", integer_field(counters.visits_max_entries, 1, kMaxMapEntries)},
        {"visit_tracepoints",
         [this, &counters](const YAML::Node& v, const Location& at) { read_visit_tracepoints(v, at, counters); }},
        {"visit_hooks",
         [this, &counters](const YAML::Node& v, const Location& at) {
           counters.visit_hooks = read_choice(v, at, {"default", "all"}) == "all"
                                      ? AgentConfig::Counters::VisitHooks::kAll
                                      : AgentConfig::Counters::VisitHooks::kDefault;
         }},
        {"visit_functions",
         [this, &counters](const YAML::Node& v, const Location& at) { read_visit_functions(v, at, counters); }},
    };
  }

  std::vector<Field> metrics_fields(AgentConfig::Metrics& metrics) {
    return {
        {"max_series", integer_field(metrics.max_series, 1, 1000000)},
        {"visit_pod_labels", [this, &metrics](const YAML::Node& v, const Location& at) {
           metrics.visit_pod_labels = read_choice(v, at, {"true", "false"}) == "true";
         }},
    };
  }

  std::vector<Field> kubernetes_fields(AgentConfig::Kubernetes& kube) {
    using Enabled = AgentConfig::Kubernetes::Enabled;
    return {
        {"enabled",
         [this, &kube](const YAML::Node& v, const Location& at) {
           // YAML users write booleans for switches: take them as on/off.
           std::string choice = v.IsScalar() && v.Scalar() == "true"    ? "on"
                                : v.IsScalar() && v.Scalar() == "false" ? "off"
                                                                        : read_choice(v, at, {"auto", "on", "off"});
           kube.enabled = choice == "on" ? Enabled::kOn : choice == "off" ? Enabled::kOff : Enabled::kAuto;
         }},
        {"api_server", [this, &kube](const YAML::Node& v, const Location& at) { read_api_server(v, at, kube); }},
        {"token_file",
         [this, &kube](const YAML::Node& v, const Location& at) { kube.token_file = read_path(v, at, "token"); }},
        {"ca_file",
         [this, &kube](const YAML::Node& v, const Location& at) { kube.ca_file = read_path(v, at, "CA bundle"); }},
        {"node_name",
         [this, &kube](const YAML::Node& v, const Location& at) {
           kube.node_name = v.IsNull() ? std::string() : read_scalar(v, at, "a node name, or \"\" for $NODE_NAME");
           if (kube.node_name.find_first_of(" \t/") != std::string::npos)
             fail(at, "must be a Kubernetes node name (no spaces or '/'); got '" + kube.node_name + "'");
         }},
        {"proc_root",
         [this, &kube](const YAML::Node& v, const Location& at) { kube.proc_root = read_path(v, at, "proc"); }},
        {"rescan_interval_seconds", integer_field(kube.rescan_interval_seconds, 1, 3600)},
        {"deleted_pod_grace_seconds", integer_field(kube.deleted_pod_grace_seconds, 0, 3600)},
    };
  }

  std::vector<Field> traces_fields(AgentConfig::Traces& traces) {
    using Auth = AgentConfig::Traces::Auth;
    return {
        {"enabled", [this, &traces](const YAML::Node& v, const Location& at) {
           traces.enabled = read_choice(v, at, {"true", "false"}) == "true";
         }},
        {"auth", [this, &traces](const YAML::Node& v, const Location& at) {
           const std::string auth = read_choice(v, at, {"none", "token", "kubernetes"});
           traces.auth = auth == "token" ? Auth::kToken : auth == "kubernetes" ? Auth::kKubernetes : Auth::kNone;
         }},
        {"token_file", [this, &traces](const YAML::Node& v, const Location& at) {
           traces.token_file = v.IsNull() ? std::string() : read_scalar(v, at, "an absolute path, or \"\"");
           if (!traces.token_file.empty()) traces.token_file = read_path(v, at, "token");
         }},
        {"max_concurrent", integer_field(traces.max_concurrent, 1, 64)},
        {"default_duration_seconds", integer_field(traces.default_duration_seconds, 1, 86400)},
        {"max_duration_seconds", integer_field(traces.max_duration_seconds, 1, 86400)},
        {"default_max_events", integer_field(traces.default_max_events, 1, 1000000000)},
        {"max_events", integer_field(traces.max_events, 1, 1000000000)},
        {"max_body_bytes", integer_field(traces.max_body_bytes, 256, 1048576)},
        {"forward", [this, &traces](const YAML::Node& v, const Location& at) {
           traces.forward = read_choice(v, at, {"true", "false"}) == "true";
         }},
        {"peer_selector", [this, &traces](const YAML::Node& v, const Location& at) {
           traces.peer_selector = read_scalar(v, at, "a label selector such as app.kubernetes.io/name=pwru-agent");
           if (traces.peer_selector.empty() || traces.peer_selector.find_first_of(" \t") != std::string::npos)
             fail(at, "must be a label selector such as app.kubernetes.io/name=pwru-agent (no spaces); got '" +
                          traces.peer_selector + "'");
         }},
        {"peer_namespace", [this, &traces](const YAML::Node& v, const Location& at) {
           traces.peer_namespace = v.IsNull() ? std::string() : read_scalar(v, at, "a namespace name");
           if (traces.peer_namespace.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos)
             fail(at, "must be a Kubernetes namespace name; got '" + traces.peer_namespace + "'");
         }},
        {"peer_daemonset", [this, &traces](const YAML::Node& v, const Location& at) {
           traces.peer_daemonset = read_scalar(v, at, "the name of the agents' DaemonSet");
           if (traces.peer_daemonset.empty() ||
               traces.peer_daemonset.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-.") != std::string::npos)
             fail(at, "must be the name of the agents' DaemonSet (lower case, digits, '-', '.'); got '" +
                          traces.peer_daemonset + "'");
         }},
        {"peer_port", integer_field(traces.peer_port, 1, 65535)},
        {"token_review", section(token_review_fields(traces.token_review))},
        {"peer_tls", section(peer_tls_fields(traces.peer_tls))},
        {"summary_memory_bytes", integer_field(traces.summary_memory_bytes, 1u << 20, 1ull << 34)},
        {"ring_buffer_bytes", [this, &traces](const YAML::Node& v, const Location& at) {
           const std::uint64_t bytes = read_integer(v, at, 4096, 1u << 30);
           if ((bytes & (bytes - 1)) != 0) fail(at, "must be a power of two (the kernel's ring buffers are); got " +
                                                        std::to_string(bytes));
           traces.ring_buffer_bytes = static_cast<std::uint32_t>(bytes);
         }},
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
    const auto optional_path = [this](std::string& into, const std::string& what) {
      return [this, &into, what](const YAML::Node& v, const Location& at) {
        into = v.IsNull() ? std::string() : read_scalar(v, at, "an absolute path, or \"\"");
        if (!into.empty()) into = read_path(v, at, what);
      };
    };
    return {
        {"ca_file", optional_path(tls.ca_file, "CA certificate")},
        {"cert_file", optional_path(tls.cert_file, "certificate")},
        {"key_file", optional_path(tls.key_file, "private key")},
        {"name", [this, &tls](const YAML::Node& v, const Location& at) {
           tls.name = read_scalar(v, at, "a DNS name such as pwru-agent-peer");
           if (tls.name.empty() || tls.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-.") != std::string::npos)
             fail(at, "must be a DNS name (lower case, digits, '-', '.') that the agents' certificates carry; got '" +
                          tls.name + "'");
         }},
    };
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
    if (rest.find('/') != std::string::npos)
      fail(at, "must be " + expected + " with no path; got '" + text + "'");
    std::string host = rest;
    std::string port;
    if (!rest.empty() && rest.front() == '[') {
      const std::size_t close = rest.find(']');
      if (close == std::string::npos) fail(at, "unclosed '[' in '" + text + "'");
      host = rest.substr(1, close - 1);
      if (close + 1 < rest.size()) {
        if (rest[close + 1] != ':') fail(at, "must be " + expected + "; got '" + text + "'");
        port = rest.substr(close + 2);
      }
    } else if (const std::size_t colon = rest.rfind(':'); colon != std::string::npos) {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      if (host.find(':') != std::string::npos)
        fail(at, "IPv6 addresses go in brackets, e.g. https://[" + host + "]:" + port + "; got '" + text + "'");
    }
    if (host.empty() || host.find_first_of(" \t@") != std::string::npos)
      fail(at, "the host in '" + text + "' is empty or not a host name");
    kube.api_server_port =
        port.empty() ? 443 : static_cast<std::uint16_t>(check_integer(port, at, "port ", 1, 65535));
    kube.api_server_host = host;
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
    std::string address;
    std::string port;
    if (!text.empty() && text.front() == '[') {
      const std::size_t close = text.find(']');
      if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
        fail(at, "must be " + expected + "; got '" + text + "'");
      }
      address = text.substr(1, close - 1);
      port = text.substr(close + 2);
    } else {
      const std::size_t colon = text.rfind(':');
      if (colon == std::string::npos) fail(at, "must be " + expected + "; got '" + text + "' (no port)");
      address = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (address.find(':') != std::string::npos) {
        fail(at, "IPv6 addresses go in brackets, e.g. \"[" + address + "]:" + port + "\"; got '" + text + "'");
      }
    }
    if (address.empty()) {
      fail(at, "the address in '" + text + "' is empty; use 0.0.0.0 for all IPv4 addresses or \"[::]:PORT\" for all");
    }
    if (address.find_first_of(" \t") != std::string::npos) {
      fail(at, "the address in '" + text + "' contains a space; write ADDRESS:PORT with nothing in between");
    }
    http.listen_port = static_cast<std::uint16_t>(check_integer(port, at, "port ", 1, 65535));
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
