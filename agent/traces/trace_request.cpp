#include "traces/trace_request.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <regex>
#include <set>

#include "common/error.h"

namespace pwru {

namespace {

using json = nlohmann::json;

const std::set<std::string>& known_fields() {
  static const std::set<std::string> fields = {"namespace", "pod",    "netns",  "filter",    "functions",
                                               "track_skb", "duration", "max_events", "format", "stack",
                                               "caller",    "tcp_flags", "meta",   "tuple",     "timestamp",
                                               "summary"};
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

// Kubernetes names: DNS labels (namespaces) and subdomains (pods).
bool valid_kubernetes_name(const std::string& name, std::size_t max_len) {
  if (name.empty() || name.size() > max_len) return false;
  static const std::regex pattern("[a-z0-9]([-a-z0-9.]*[a-z0-9])?");
  return std::regex_match(name, pattern);
}

}  // namespace

std::chrono::milliseconds parse_duration(std::string_view text, const std::string& field) {
  const auto fail = [&](const std::string& why) -> std::chrono::milliseconds {
    bad("\"" + field + "\": " + why + "; write a duration such as \"30s\", \"2m\" or \"1m30s\"");
  };
  if (text.empty()) return fail("empty");
  double total_ms = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t number_start = i;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
    if (i == number_start) return fail("'" + std::string(text) + "' has no number before a unit");
    const std::string number(text.substr(number_start, i - number_start));
    if (number.find('.') != number.rfind('.') || number == ".")
      return fail("'" + number + "' is not a number");
    const std::size_t unit_start = i;
    while (i < text.size() && text[i] >= 'a' && text[i] <= 'z') ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    double scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1e3;
    else if (unit == "m") scale = 60e3;
    else if (unit == "h") scale = 3600e3;
    else return fail(unit.empty() ? "'" + std::string(text) + "' has a number without a unit (ms, s, m, h)"
                                  : "unknown unit '" + std::string(unit) + "' (ms, s, m, h)");
    total_ms += std::stod(number) * scale;
    if (total_ms > 1e12) return fail("too long");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(total_ms)));
}

TraceRequest parse_trace_request(std::string_view text, const TraceRequestLimits& limits) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::parse_error& e) {
    bad(std::string("the body is not valid JSON (") + e.what() +
        "); send an object such as {\"namespace\":\"shop\",\"pod\":\"web-0\",\"filter\":\"tcp port 80\"}");
  }
  if (!body.is_object()) bad("the body must be a JSON object; got " + std::string(body.type_name()));
  for (const auto& [key, value] : body.items()) {
    if (!known_fields().count(key)) bad("unknown field \"" + key + "\"; allowed: " + allowed_fields());
  }

  TraceRequest r;
  r.duration = limits.default_duration;
  r.max_events = limits.default_max_events;
  r.output.json = true;

  const bool has_ns = body.contains("namespace");
  const bool has_pod = body.contains("pod");
  if (has_ns != has_pod) bad("\"namespace\" and \"pod\" go together: name the pod as {\"namespace\":\"shop\",\"pod\":\"web-0\"}");
  if (has_pod) {
    r.namespace_name = string_field(body, "namespace", 253);
    r.pod = string_field(body, "pod", 253);
    if (!valid_kubernetes_name(r.namespace_name, 63))
      bad("\"namespace\": '" + r.namespace_name + "' is not a Kubernetes namespace name (lower-case letters, digits, '-')");
    if (!valid_kubernetes_name(r.pod, 253))
      bad("\"pod\": '" + r.pod + "' is not a Kubernetes pod name (lower-case letters, digits, '-', '.')");
  }
  if (body.contains("netns")) {
    if (has_pod) bad("give either {\"namespace\",\"pod\"} or \"netns\", not both");
    const json& v = body.at("netns");
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0 || v.get<std::uint64_t>() > 0xffffffffu)
      bad("\"netns\" must be a network namespace inode number (as pwru --output-json prints it); got " + shown(v));
    r.netns = static_cast<std::uint32_t>(v.get<std::uint64_t>());
  }
  if (body.contains("filter")) r.filter = string_field(body, "filter");
  if (body.contains("functions")) {
    r.functions = string_field(body, "functions", 1024);
    try {
      std::regex check(r.functions, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      bad("\"functions\": '" + r.functions + "' is not a valid regular expression (" + e.what() + ")");
    }
  }
  if (body.contains("track_skb")) r.track_skb = bool_field(body, "track_skb");
  if (body.contains("summary")) r.summary = bool_field(body, "summary");
  if (body.contains("duration")) {
    const json& v = body.at("duration");
    if (v.is_string()) {
      r.duration = parse_duration(v.get<std::string>(), "duration");
    } else if (v.is_number() && v.get<double>() > 0 && v.get<double>() < 1e9) {
      r.duration = std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(v.get<double>() * 1000)));
    } else {
      bad("\"duration\" must be a duration such as \"30s\" (or a number of seconds); got " + shown(v));
    }
    if (r.duration.count() <= 0) bad("\"duration\" must be longer than 0");
    if (r.duration > limits.max_duration)
      bad("\"duration\" " + format_seconds(r.duration) + " is over this agent's cap of " +
          format_seconds(limits.max_duration) + " (traces.max_duration_seconds); ask for less");
  }
  if (body.contains("max_events")) {
    const json& v = body.at("max_events");
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0)
      bad("\"max_events\" must be a positive integer; got " + shown(v));
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
  if (body.contains("stack")) r.output.stack = bool_field(body, "stack");
  if (body.contains("caller")) r.output.caller = bool_field(body, "caller");
  if (body.contains("tcp_flags")) r.output.tcp_flags = bool_field(body, "tcp_flags");
  if (body.contains("meta")) r.output.meta = bool_field(body, "meta");
  if (body.contains("tuple")) r.output.tuple = bool_field(body, "tuple");
  if (body.contains("timestamp")) {
    const std::string ts = string_field(body, "timestamp");
    if (ts == "none") r.output.timestamp = TimestampMode::None;
    else if (ts == "current") r.output.timestamp = TimestampMode::Current;
    else if (ts == "relative") r.output.timestamp = TimestampMode::Relative;
    else if (ts == "absolute") r.output.timestamp = TimestampMode::Absolute;
    else bad("\"timestamp\" must be none, current, relative or absolute; got '" + ts + "'");
  }
  return r;
}

}  // namespace pwru
