#include "traces/trace_request.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "common/function_name_filter.h"
#include "pwru_abi.h"

namespace pwru {

static_assert(PWRU_MAX_NETNS_SET == 64, "traces.max_pods_per_trace's bound in config/agent_config.cpp");

namespace {

using json = nlohmann::json;

const std::set<std::string>& known_fields() {
  static const std::set<std::string> fields = {"namespace", "pod",       "netns",     "filter",
                                               "functions", "track_skb", "duration",  "max_events",
                                               "format",    "stack",     "caller",    "tcp_flags",
                                               "meta",      "tuple",     "timestamp", "summary",
                                               "pods",      "service",   "selector",  "max_events_per_second"};
  return fields;
}

std::string allowed_fields() {
  std::string out;
  for (const std::string& f : known_fields()) out += (out.empty() ? "" : ", ") + f;
  return out;
}

[[noreturn]] void bad(const std::string& message) { throw RequestError(400, message); }

// A value the client sent, quoted back to it: short, and valid UTF-8.
std::string shown(const json& v) {
  std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

std::string string_field(const json& body, const char* field, std::size_t max_len = 4096) {
  const json& v = body.at(field);
  if (!v.is_string()) bad(std::string("\"") + field + "\" must be a string; got " + shown(v));
  std::string s = v.get<std::string>();
  if (s.size() > max_len) bad(std::string("\"") + field + "\" is longer than " + std::to_string(max_len) + " bytes");
  return s;
}

bool bool_field(const json& body, const char* field) {
  const json& v = body.at(field);
  if (!v.is_boolean()) bad(std::string("\"") + field + "\" must be true or false; got " + shown(v));
  return v.get<bool>();
}

std::string format_seconds(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

// Kubernetes names (DNS-1123): lower-case letters, digits, '-' and '.',
// beginning and ending with a letter or digit. Namespaces are labels (no
// '.', 63 bytes), pods subdomains (253 bytes).
bool valid_kubernetes_name(std::string_view name, std::size_t max_len, bool dots) {
  if (name.empty() || name.size() > max_len) return false;
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  // A subdomain is labels joined by dots, each a label's rules.
  for (std::size_t start = 0; start <= name.size();) {
    std::size_t end = dots ? name.find('.', start) : std::string_view::npos;
    if (end == std::string_view::npos) end = name.size();
    const std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63 || !alnum(label.front()) || !alnum(label.back())) return false;
    for (char c : label)
      if (!alnum(c) && c != '-') return false;
    start = end + 1;
  }
  return true;
}

// Deep enough for any request (the deepest valid one is 1), shallow enough
// that nothing downstream recurses far on what a client sent.
constexpr int kMaxDepth = 32;
constexpr const char* kExample = "{\"namespace\":\"shop\",\"pod\":\"web-0\",\"filter\":\"tcp port 80\"}";

// Up to 24 bytes of the body around `pos`, printable: where a syntax error is.
std::string near(std::string_view text, std::size_t pos) {
  const std::size_t from = pos > 8 ? pos - 8 : 0;
  std::string out;
  for (char c : text.substr(from, 24)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\'') {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// The body as JSON. Whatever the parser objects to becomes a 400 in our
// words, naming the byte or the field: its own messages describe its
// internals, and must not reach a client (nor a 500).
json parse_body(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    bad(std::string("the body is empty; send a JSON object such as ") + kExample);
  std::string field;  // the top-level field being read
  const json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) && depth >= kMaxDepth)
      bad("the body nests objects and arrays more than " + std::to_string(kMaxDepth) + " deep" +
          (field.empty() ? std::string() : " (in " + shown(json(field)) + ")") +
          "; a trace request is one flat object such as " + kExample);
    if (event == json::parse_event_t::key && depth == 1) field = parsed.get<std::string>();
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), limit_depth);
  } catch (const json::parse_error& e) {
    // e.byte: 1-based index of the last byte read.
    if (e.byte > text.size())  // the parser read past the end
      bad("the body is not valid JSON: it ends (at byte " + std::to_string(text.size()) +
          ") before the JSON value does; send a whole object such as " + kExample);
    const std::size_t at = e.byte ? e.byte - 1 : 0;
    bad("the body is not valid JSON at byte " + std::to_string(at) + " (near '" + near(text, at) +
        "'); send an object such as " + kExample);
  } catch (const json::out_of_range&) {
    // The only one parsing throws: a number beyond a double's range.
    bad((field.empty() ? std::string("a number in the body") : shown(json(field)) + ": a number") +
        " is beyond what a JSON number may hold here (about 1.8e308); send a number in the field's range");
  } catch (const json::exception&) {
    bad(std::string("the body is not valid JSON; send an object such as ") + kExample);
  }
}

// A Service's name (DNS-1035): a label that begins with a letter.
bool valid_service_name(std::string_view name) {
  return valid_kubernetes_name(name, 63, false) && name.front() >= 'a' && name.front() <= 'z';
}

std::string pod_name_field(const json& v, const std::string& field) {
  if (!v.is_string()) bad("\"" + field + "\" must be a string; got " + shown(v));
  std::string pod = v.get<std::string>();
  if (pod.size() > 253 || !valid_kubernetes_name(pod, 253, true))
    bad("\"" + field + "\": " + shown(v) + " is not a Kubernetes pod name (lower-case letters, digits, '-', '.')");
  return pod;
}

// "pods": distinct pod names. Its cap here is the BPF set's bound, which
// says nothing of this agent; traces.max_pods_per_trace is checked with
// the other caps, once the caller is authorized.
std::vector<std::string> pods_field(const json& v) {
  if (!v.is_array()) bad("\"pods\" must be an array of pod names such as [\"web-0\",\"web-1\"]; got " + shown(v));
  if (v.empty()) bad("\"pods\" is an empty array; list the pods to trace, such as [\"web-0\",\"web-1\"]");
  if (v.size() > PWRU_MAX_NETNS_SET)
    bad("\"pods\" lists " + std::to_string(v.size()) + " pods; one trace takes at most " +
        std::to_string(PWRU_MAX_NETNS_SET) + ": split them over several traces, or trace a \"service\"");
  std::vector<std::string> pods;
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::string pod = pod_name_field(v[i], "pods[" + std::to_string(i) + "]");
    if (std::find(pods.begin(), pods.end(), pod) != pods.end())
      bad("\"pods\" lists '" + pod + "' twice; list each pod once");
    pods.push_back(std::move(pod));
  }
  return pods;
}

constexpr const char* kTargets =
    "{\"namespace\":\"shop\",\"pod\":\"web-0\"}, {\"namespace\":\"shop\",\"pods\":[\"web-0\",\"web-1\"]}, "
    "{\"namespace\":\"shop\",\"service\":\"web\"} or {\"namespace\":\"shop\",\"selector\":\"app=web\"}";

// The part of the body that says what to trace: all that is checked before
// the caller is authorized, since it says nothing about this agent.
TraceTarget read_target(const json& body) {
  if (!body.is_object()) bad("the body must be a JSON object; got " + std::string(body.type_name()));
  TraceTarget t;
  const bool has_ns = body.contains("namespace");
  std::vector<std::string> given;
  for (const char* key : {"pod", "pods", "service", "selector"})
    if (body.contains(key)) given.push_back(key);
  if (given.size() > 1)
    bad("give one of \"pod\", \"pods\", \"service\" or \"selector\" with \"namespace\", not \"" + given[0] +
        "\" and \"" + given[1] +
        "\": \"pod\" traces one pod, \"pods\" several of one node, \"service\" and \"selector\" every pod they "
        "select on any node");
  if (!has_ns && given.size() == 1 && given[0] == "pod")
    bad("\"namespace\" and \"pod\" go together: name the pod as {\"namespace\":\"shop\",\"pod\":\"web-0\"}");
  if (!has_ns && given.size() == 1) bad("\"namespace\" and \"" + given[0] + "\" go together: write " + kTargets);
  if (has_ns && given.empty())
    bad(std::string("\"namespace\" and one of \"pod\", \"pods\", \"service\" or \"selector\" go together: write ") +
        kTargets);
  if (!has_ns) return t;
  t.namespace_name = string_field(body, "namespace", 253);
  if (!valid_kubernetes_name(t.namespace_name, 63, false))
    bad("\"namespace\": '" + t.namespace_name +
        "' is not a Kubernetes namespace name (lower-case letters, digits, '-')");
  if (body.contains("pod")) {
    t.pod = string_field(body, "pod", 253);
    if (!valid_kubernetes_name(t.pod, 253, true))
      bad("\"pod\": '" + t.pod + "' is not a Kubernetes pod name (lower-case letters, digits, '-', '.')");
  } else if (body.contains("pods")) {
    t.pods = pods_field(body.at("pods"));
  } else if (body.contains("service")) {
    t.service = string_field(body, "service", 253);
    if (!valid_service_name(t.service))
      bad("\"service\": '" + t.service +
          "' is not a Kubernetes Service name (at most 63 lower-case letters, digits and '-', beginning with a "
          "letter)");
  } else {
    t.selector = string_field(body, "selector", 1024);
    if (t.selector.empty())
      bad("\"selector\" is empty; give a label selector such as \"app=web\" (an empty one would select every pod)");
    for (char c : t.selector)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        bad("\"selector\" holds a control character; give a label selector such as \"app=web\"");
  }
  if (body.contains("netns")) bad("give either {\"namespace\",\"" + given[0] + "\"} or \"netns\", not both");
  return t;
}

bool is_netns_inode(const json& v) {
  return v.is_number_unsigned() && v.get<std::uint64_t>() != 0 && v.get<std::uint64_t>() <= 0xffffffffu;
}

// "netns": one inode, or an array of distinct ones (one trace of several
// netns, each kept by the BPF filter's map: at most PWRU_MAX_NETNS_SET).
std::vector<std::uint32_t> netns_field(const json& v) {
  constexpr const char* kInode =
      "a network namespace inode number, from 1 to 4294967295 (as pwru --output-json prints it)";
  if (!v.is_array()) {
    if (!is_netns_inode(v)) bad(std::string("\"netns\" must be ") + kInode + ", or an array of them; got " + shown(v));
    return {static_cast<std::uint32_t>(v.get<std::uint64_t>())};
  }
  if (v.empty())
    bad("\"netns\" is an empty array; list the inodes of the netns to trace (1 to " +
        std::to_string(PWRU_MAX_NETNS_SET) + "), or leave \"netns\" out to trace the node");
  if (v.size() > PWRU_MAX_NETNS_SET)
    bad("\"netns\" lists " + std::to_string(v.size()) + " netns; one trace takes at most " +
        std::to_string(PWRU_MAX_NETNS_SET) + ": split them over several traces");
  std::vector<std::uint32_t> inodes;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!is_netns_inode(v[i])) bad("\"netns\"[" + std::to_string(i) + "] must be " + kInode + "; got " + shown(v[i]));
    const auto inode = static_cast<std::uint32_t>(v[i].get<std::uint64_t>());
    if (std::find(inodes.begin(), inodes.end(), inode) != inodes.end())
      bad("\"netns\" lists " + std::to_string(inode) + " twice; list each netns once");
    inodes.push_back(inode);
  }
  return inodes;
}

}  // namespace

TraceTarget parse_trace_target(std::string_view body) { return read_target(parse_body(body)); }

std::chrono::milliseconds parse_duration(std::string_view text, const std::string& field) {
  const auto fail = [&](const std::string& why) -> std::chrono::milliseconds {
    bad("\"" + field + "\": " + why + "; write a duration such as \"30s\", \"2m\" or \"1m30s\"");
  };
  if (text.empty()) return fail("empty");
  if (text.size() > 64) return fail("longer than 64 characters");
  double total_ms = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t number_start = i;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
    if (i == number_start) return fail("'" + std::string(text) + "' has no number before a unit");
    const std::string number(text.substr(number_start, i - number_start));
    if (number.find('.') != number.rfind('.') || number == ".") return fail("'" + number + "' is not a number");
    const std::size_t unit_start = i;
    while (i < text.size() && text[i] >= 'a' && text[i] <= 'z') ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1e3;
    else if (unit == "m")
      scale = 60e3;
    else if (unit == "h")
      scale = 3600e3;
    else
      return fail(unit.empty() ? "'" + std::string(text) + "' has a number without a unit (ms, s, m, h)"
                               : "unknown unit '" + std::string(unit) + "' (ms, s, m, h)");
    // strtod, not std::stod: a number out of a double's range (or too
    // small for one) is an ERANGE here, not an exception mid-request.
    const double value = std::strtod(number.c_str(), nullptr);
    if (!std::isfinite(value)) return fail("'" + number + "' is too large");
    total_ms += value * scale;
    if (total_ms > 1e12) return fail("too long");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(total_ms)));
}

TraceRequest parse_trace_request(std::string_view text, const TraceRequestLimits& limits) {
  const json body = parse_body(text);
  TraceTarget target = read_target(body);
  for (const auto& [key, value] : body.items()) {
    if (!known_fields().count(key)) bad("unknown field " + shown(json(key)) + "; allowed: " + allowed_fields());
  }

  TraceRequest r;
  r.namespace_name = std::move(target.namespace_name);
  r.pod = std::move(target.pod);
  r.pods = std::move(target.pods);
  r.service = std::move(target.service);
  r.selector = std::move(target.selector);
  if (r.pods.size() > limits.max_pods)
    bad("\"pods\" lists " + std::to_string(r.pods.size()) + " pods, over this agent's cap of " +
        std::to_string(limits.max_pods) + " (traces.max_pods_per_trace); split them over several traces");
  r.duration = limits.default_duration;
  r.max_events = limits.default_max_events;
  r.output.json = true;

  // Numbers: only what the field can hold, checked before any conversion
  // (nlohmann keeps integers beyond 2^64-1 as doubles, "-0" as a signed 0).
  if (body.contains("netns")) {
    std::vector<std::uint32_t> inodes = netns_field(body.at("netns"));
    if (inodes.size() == 1)
      r.netns = inodes.front();
    else
      r.netns_set = std::move(inodes);
  }
  if (body.contains("filter")) r.filter = string_field(body, "filter");
  if (body.contains("functions")) {
    r.functions = string_field(body, "functions", 1024);
    try {
      FunctionNameFilter check(r.functions);
    } catch (const UsageError& e) {
      bad(std::string("\"functions\": ") + e.what());
    }
  }
  if (body.contains("track_skb")) r.track_skb = bool_field(body, "track_skb");
  if (body.contains("summary")) r.summary = bool_field(body, "summary");
  if (body.contains("duration")) {
    const json& v = body.at("duration");
    if (v.is_string()) {
      r.duration = parse_duration(v.get<std::string>(), "duration");
    } else if (v.is_number() && v.get<double>() > 0) {
      // Compared as seconds first: 1e308 s has no milliseconds count.
      const double seconds = v.get<double>();
      if (seconds * 1000 > static_cast<double>(limits.max_duration.count()))
        bad("\"duration\" " + shown(v) + " s is over this agent's cap of " + format_seconds(limits.max_duration) +
            " (traces.max_duration_seconds); ask for less");
      r.duration = std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000)));
    } else {
      bad("\"duration\" must be a duration such as \"30s\" (or a number of seconds, more than 0); got " + shown(v));
    }
    if (r.duration.count() <= 0) bad("\"duration\" must be longer than 0 (1ms at least)");
    if (r.duration > limits.max_duration)
      bad("\"duration\" " + format_seconds(r.duration) + " is over this agent's cap of " +
          format_seconds(limits.max_duration) + " (traces.max_duration_seconds); ask for less");
  }
  if (body.contains("max_events")) {
    const json& v = body.at("max_events");
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0)
      bad("\"max_events\" must be a positive integer (at most " + std::to_string(limits.max_events) + "); got " +
          shown(v));
    r.max_events = v.get<std::uint64_t>();
    if (r.max_events > limits.max_events)
      bad("\"max_events\" " + std::to_string(r.max_events) + " is over this agent's cap of " +
          std::to_string(limits.max_events) + " (traces.max_events); ask for less");
  }
  if (body.contains("format")) {
    const std::string format = string_field(body, "format");
    if (format != "json" && format != "text") bad("\"format\" must be \"json\" or \"text\"; got '" + format + "'");
    r.output.json = format == "json";
  }
  if (body.contains("max_events_per_second")) {
    const json& v = body.at("max_events_per_second");
    // Under 1 a second would end the trace at its first event.
    if (!v.is_number() || v.get<double>() < 0 || (v.get<double>() > 0 && v.get<double>() < 1))
      bad("\"max_events_per_second\" must be 1 or more (0 for no cap of the request's own); got " + shown(v));
    r.max_events_per_second = v.get<double>();
  }
  if (!r.output.json && r.fans_out())
    bad(std::string("\"format\": \"text\" cannot be given with \"") + (r.service.empty() ? "selector" : "service") +
        "\": a service trace merges several nodes' streams: JSON only; leave out \"format\"");
  if (body.contains("stack")) r.output.stack = bool_field(body, "stack");
  if (body.contains("caller")) r.output.caller = bool_field(body, "caller");
  if (body.contains("tcp_flags")) r.output.tcp_flags = bool_field(body, "tcp_flags");
  if (body.contains("meta")) r.output.meta = bool_field(body, "meta");
  if (body.contains("tuple")) r.output.tuple = bool_field(body, "tuple");
  if (body.contains("timestamp")) {
    const std::string ts = string_field(body, "timestamp");
    if (ts == "none")
      r.output.timestamp = TimestampMode::None;
    else if (ts == "current")
      r.output.timestamp = TimestampMode::Current;
    else if (ts == "relative")
      r.output.timestamp = TimestampMode::Relative;
    else if (ts == "absolute")
      r.output.timestamp = TimestampMode::Absolute;
    else
      bad("\"timestamp\" must be none, current, relative or absolute; got '" + ts + "'");
  }
  return r;
}

}  // namespace pwru
