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

std::string_view EventNamer::hook_name(const pwru_event& e) const {
  return e.hook_id < hook_names_.size() ? std::string_view(hook_names_[e.hook_id]) : std::string_view();
}

std::string EventNamer::reason_name(const pwru_event& e) const {
  if (!e.has_drop_reason) return {};
  auto reason = reasons_.find(e.drop_reason);
  return reason != reasons_.end() ? reason->second : std::to_string(e.drop_reason);
}

std::string EventNamer::location_function(const pwru_event& e) const {
  if (!e.drop_location || !ksyms_) return {};
  return ksyms_->nearest(e.drop_location);
}

std::vector<std::string> EventNamer::stack_names(const std::vector<std::uint64_t>& ips) const {
  static const Ksyms no_symbols;
  const Ksyms& syms = ksyms_ ? *ksyms_ : no_symbols;
  std::vector<std::string> out;
  out.reserve(ips.size());
  bool leading = true;
  for (std::uint64_t ip : ips) {
    std::string name = syms.name_or_hex(ip);
    if (leading && is_tracing_machinery(name)) continue;
    leading = false;
    out.push_back(std::move(name));
  }
  return out;
}

bool EventNamer::is_tracing_machinery(std::string_view frame) {
  // The JITed program ("bpf_prog_<tag>_<name> [bpf]"), the tracepoint's
  // BPF runner and iterator, the kprobe/fprobe/ftrace entry paths, and
  // addresses no symbol covers (trampolines).
  static constexpr std::array<std::string_view, 14> prefixes = {
      "bpf_",           "__bpf_",    "__traceiter_",  "trace_call_bpf", "perf_",   "__probestub_", "0x",
      "kprobe_",        "__kprobe",  "fprobe",        "ftrace_",        "arch_ftrace", "rethook", "optimized_callback"};
  for (std::string_view prefix : prefixes)
    if (frame.substr(0, prefix.size()) == prefix) return true;
  return false;
}

std::string EventNamer::caller(const std::vector<std::string>& stack, std::string_view hook) {
  for (const std::string& frame : stack)
    if (!is_tracing_machinery(frame) && frame != hook) return frame;
  return "";
}

}  // namespace pwru
