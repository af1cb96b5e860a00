// The JSON body of POST /v1/traces, checked field by field: what to trace
// (a pod, a netns inode, or the whole node), the pcap filter, limits and
// output options. Every mistake is a RequestError(400) naming the field.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "output/event_formatter.h"

namespace pwru {

struct TraceRequestLimits {
  std::chrono::milliseconds default_duration{30000};
  std::chrono::milliseconds max_duration{600000};
  std::uint64_t default_max_events = 10000;
  std::uint64_t max_events = 1000000;
  std::uint32_t max_pods = 16;  // "pods": traces.max_pods_per_trace
};

struct TraceRequest {
  std::string namespace_name;  // with pod, pods, service or selector
  std::string pod;
  // Pods of this node in one trace (one BPF netns set), each event labelled
  // with its pod: 1 to traces.max_pods_per_trace distinct names.
  std::vector<std::string> pods;
  // Every pod a Service selects, or a label selector selects, on whatever
  // node: a fan-out to those nodes' agents. Parsed here, run elsewhere.
  std::string service;                 // a DNS-1035 label
  std::string selector;                // left to the API server to parse
  std::optional<std::uint32_t> netns;  // the inode, as pwru --output-json prints it
  std::string filter;                  // pcap expression; "" = every packet
  std::string functions;               // RE2 regex over kprobe function names (whole name); "" = all
  bool track_skb = false;              // pwru's --filter-track-skb
  bool summary = false;                // pwru --summary: journeys in the final summary line
  // "netns" as an array of 2 to PWRU_MAX_NETNS_SET distinct inodes (one
  // trace of several netns); an array of one is `netns`.
  std::vector<std::uint32_t> netns_set;
  std::chrono::milliseconds duration{0};
  std::uint64_t max_events = 0;
  double max_events_per_second = 0;  // 0: none asked for
  OutputOptions output;              // json unless "format": "text"

  bool names_pod() const { return !pod.empty(); }
  bool fans_out() const { return !service.empty() || !selector.empty(); }
};

// What a request asks to trace: a pod, pods, a Service or a selector in a
// namespace, or (all empty) the node or a netns, which take the node's right.
struct TraceTarget {
  std::string namespace_name;
  std::string pod;
  std::vector<std::string> pods;
  std::string service;
  std::string selector;

  bool fans_out() const { return !service.empty() || !selector.empty(); }
};

// The first step, before the caller is authorized: JSON syntax and the
// target fields only, none of the checks that would tell a caller without
// rights something about this agent (its caps). RequestError(400).
TraceTarget parse_trace_target(std::string_view body);

// Every field. Any body the JSON parser refuses (syntax, a number beyond a
// double, nesting over 32 deep) is a RequestError(400) naming the byte or
// the field, as is every value out of its field's range.
TraceRequest parse_trace_request(std::string_view body, const TraceRequestLimits& limits);

// "30s", "1m30s", "500ms", "2h", "1.5s": Go's time.ParseDuration units from
// ms to h. Throws RequestError(400) naming `field`.
std::chrono::milliseconds parse_duration(std::string_view text, const std::string& field);

}  // namespace pwru
