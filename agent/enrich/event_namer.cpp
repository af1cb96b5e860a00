#include "enrich/event_namer.h"

#include <array>

namespace pwru {

EventNamer::EventNamer(std::vector<std::string> hook_names,
                       std::map<std::uint64_t, std::string> reasons, const Ksyms* ksyms)
    : hook_names_(std::move(hook_names)), reasons_(std::move(reasons)), ksyms_(ksyms) {}

std::string_view EventNamer::func(const pwru_event& e) {
  static const std::string unknown = "?";
  if (e.hook_id >= hook_names_.size()) return unknown;
  const std::string& hook = hook_names_[e.hook_id];
  if (!e.has_drop_reason) return hook;
  const std::uint64_t key = (std::uint64_t{e.hook_id} << 32) | e.drop_reason;
  auto it = drop_names_.find(key);
  if (it != drop_names_.end()) return it->second;
  auto reason = reasons_.find(e.drop_reason);
  std::string name = reason != reasons_.end() ? hook + "(" + reason->second + ")"
                                              : hook + " (" + std::to_string(e.drop_reason) + ")";
  return drop_names_.emplace(key, std::move(name)).first->second;
}

std::vector<std::string> EventNamer::stack_names(const std::vector<std::uint64_t>& ips) const {
  std::vector<std::string> out;
  out.reserve(ips.size());
  for (std::uint64_t ip : ips) out.push_back(ksyms_ ? ksyms_->name_or_hex(ip) : Ksyms{}.name_or_hex(ip));
  return out;
}

std::string EventNamer::caller(const std::vector<std::string>& stack) {
  // Frames of the tracing path between the tracepoint and the program.
  static constexpr std::array<std::string_view, 7> machinery = {
      "bpf_", "__bpf_", "__traceiter_", "trace_call_bpf", "perf_", "__probestub_", "0x"};
  for (const std::string& frame : stack) {
    bool skip = false;
    for (std::string_view prefix : machinery)
      if (std::string_view(frame).substr(0, prefix.size()) == prefix) skip = true;
    if (!skip) return frame;
  }
  return "";
}

}  // namespace pwru
