#include "enrich/event_namer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>

namespace pwru {

EventNamer::EventNamer(std::vector<std::string> hook_names, std::map<std::uint64_t, std::string> reasons,
                       const Ksyms* ksyms)
    : hook_names_(std::move(hook_names)), reasons_(std::move(reasons)), ksyms_(ksyms) {}

std::string_view EventNamer::func(const pwru_event& e) {
  static const std::string unknown = "?";
  if (e.hook_id >= hook_names_.size()) return unknown;
  const std::string& hook = e.hook_id == drop_hook_ ? drop_function_ : hook_names_[e.hook_id];
  if (!e.has_drop_reason) return hook_names_[e.hook_id];
  const std::uint64_t key = (std::uint64_t{e.hook_id} << 32) | e.drop_reason;
  auto it = drop_names_.find(key);
  if (it != drop_names_.end()) return it->second;
  auto reason = reasons_.find(e.drop_reason);
  std::string name =
      reason != reasons_.end() ? hook + "(" + reason->second + ")" : hook + " (" + std::to_string(e.drop_reason) + ")";
  return drop_names_.emplace(key, std::move(name)).first->second;
}

void EventNamer::print_drops_as(std::uint16_t drop_hook, std::string drop_function) {
  drop_hook_ = drop_hook;
  drop_function_ = std::move(drop_function);
  drop_names_.clear();
}

std::string_view EventNamer::printed_hook(const pwru_event& e) const {
  if (e.has_drop_reason && e.hook_id == drop_hook_) return drop_function_;
  return hook_name(e);
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
      "bpf_",    "__bpf_",   "__traceiter_", "trace_call_bpf", "perf_",       "__probestub_", "0x",
      "kprobe_", "__kprobe", "fprobe",       "ftrace_",        "arch_ftrace", "rethook",      "optimized_callback"};
  for (std::string_view prefix : prefixes)
    if (frame.substr(0, prefix.size()) == prefix) return true;
  return false;
}

std::string EventNamer::caller(const std::vector<std::string>& stack, std::string_view hook) {
  for (const std::string& frame : stack)
    if (!is_tracing_machinery(frame) && frame != hook) return frame;
  return "";
}

namespace {

constexpr std::size_t kMaxCachedPrograms = 4096;
constexpr std::string_view kDeletedSuffix = " (deleted)";

}  // namespace

ProgramNamer::ProgramNamer(std::string proc_root) : proc_root_(std::move(proc_root)) {}

std::string_view ProgramNamer::program(const pwru_event& e) {
  std::size_t comm_len = 0;
  while (comm_len < sizeof(e.comm) && e.comm[comm_len] != '\0') ++comm_len;
  const std::string_view comm(e.comm, comm_len);
  auto it = cache_.find(e.pid);
  if (it != cache_.end() && it->second.first == comm) return it->second.second;
  if (cache_.size() >= kMaxCachedPrograms) cache_.clear();
  auto& entry = cache_[e.pid];
  entry = {std::string(comm), lookup(e.pid, comm)};
  return entry.second;
}

std::uint32_t ProgramNamer::task_netns(const pwru_event& e) {
  std::size_t comm_len = 0;
  while (comm_len < sizeof(e.comm) && e.comm[comm_len] != '\0') ++comm_len;
  const std::string_view comm(e.comm, comm_len);
  auto it = netns_cache_.find(e.pid);
  if (it != netns_cache_.end() && it->second.first == comm) return it->second.second;
  if (netns_cache_.size() >= kMaxCachedPrograms) netns_cache_.clear();
  struct stat st {};
  const std::string path = proc_root_ + "/" + std::to_string(e.pid) + "/ns/net";
  const std::uint32_t inode = e.pid != 0 && stat(path.c_str(), &st) == 0 ? static_cast<std::uint32_t>(st.st_ino) : 0;
  netns_cache_[e.pid] = {std::string(comm), inode};
  return inode;
}

std::string ProgramNamer::lookup(std::uint32_t pid, std::string_view comm) const {
  const std::string dir = proc_root_ + "/" + std::to_string(pid);
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) return std::string(comm);
  char target[4096];
  const ssize_t n = readlink((dir + "/exe").c_str(), target, sizeof(target));
  // pwru resolves the link with filepath.EvalSymlinks, which fails for a
  // deleted binary ("/path (deleted)") and falls back to the comm.
  if (n <= 0 || static_cast<std::size_t>(n) >= sizeof(target)) return std::string(comm);
  std::string_view path(target, static_cast<std::size_t>(n));
  if (path.size() >= kDeletedSuffix.size() && path.substr(path.size() - kDeletedSuffix.size()) == kDeletedSuffix)
    return std::string(comm);
  return std::string(path);
}

}  // namespace pwru
