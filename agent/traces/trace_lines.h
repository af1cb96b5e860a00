// What every kind of trace (one node's, a fan-out's) writes and names the
// same way: its NDJSON lines, its id, its start time in listings.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace pwru {

// One NDJSON line. Strings may quote what a client sent (filters, pod
// names), which need not be valid UTF-8: replaced, never a throw mid-stream.
std::string json_line(const nlohmann::json& value);

// "tr-" or "fo-" and 12 random hex digits: ids a caller cannot guess from
// another trace's.
std::string new_trace_id(std::string_view prefix);

// "2026-12-02T14:00:28Z", for GET /v1/traces.
std::string iso_time(std::chrono::system_clock::time_point t);

}  // namespace pwru
