// Names for what an event points at: its hook (with the drop reason as this
// kernel spells it), its stack frames, and the function that hit the hook.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "enrich/ksyms.h"
#include "pwru_abi.h"

namespace pwru {

class EventNamer {
 public:
  // hook_names[hook_id]; reasons from the kernel's enum skb_drop_reason.
  EventNamer(std::vector<std::string> hook_names, std::map<std::uint64_t, std::string> reasons, const Ksyms* ksyms);

  // "netif_receive_skb", "kfree_skb(SKB_DROP_REASON_NO_SOCKET)",
  // "kfree_skb (123)" for a reason this kernel's BTF does not name; a drop
  // from the hook given to print_drops_as() carries that function's name.
  std::string_view func(const pwru_event& event);

  // pwru names a drop after the kernel function it probes for drops and that
  // function's reason argument: "kfree_skb_reason(SKB_DROP_REASON_NO_SOCKET)",
  // "sk_skb_reason_drop(...)" on 6.11+. The kfree_skb tracepoint fires inside
  // that function with the same reason, so naming its drops the same way
  // lets pwru users' greps find them on every backend.
  void print_drops_as(std::uint16_t drop_hook, std::string drop_function);
  // func() without the drop reason: the name the event is printed under.
  std::string_view printed_hook(const pwru_event& event) const;

  // Frame names, innermost first, without the BPF and tracing frames that
  // sit between the hook and the program: the first one left is the kernel
  // function that hit the hook.
  std::vector<std::string> stack_names(const std::vector<std::uint64_t>& ips) const;

  // Who called into the hook: the first frame of a trimmed stack that is not
  // the hook itself (a kprobe's stack starts in the probed function; a
  // tracepoint's in the function that hit it).
  static std::string caller(const std::vector<std::string>& stack_names, std::string_view hook);
  // The hook's bare name: func() without a drop reason.
  std::string_view hook_name(const pwru_event& event) const;
  // The drop reason as this kernel names it ("SKB_DROP_REASON_NO_SOCKET"),
  // its number for one the BTF does not name, "" without a reason.
  std::string reason_name(const pwru_event& event) const;
  // The function the event's drop/free location is in; "" when the hook
  // has no location or no symbol covers it.
  std::string location_function(const pwru_event& event) const;
  static bool is_tracing_machinery(std::string_view frame);

 private:
  std::vector<std::string> hook_names_;
  std::map<std::uint64_t, std::string> reasons_;
  const Ksyms* ksyms_;
  std::unordered_map<std::uint64_t, std::string> drop_names_;  // (hook << 32 | reason) -> name
  std::optional<std::uint16_t> drop_hook_;
  std::string drop_function_;
};

// pwru's PROCESS column names the executable, read from /proc when the line
// is printed (github.com/tklauser/ps: the /proc/PID/exe link, else the
// process's comm). pwru prints "<empty>" for a PID /proc no longer has; the
// comm the kernel recorded in the event says more, so it is printed instead.
class ProgramNamer {
 public:
  explicit ProgramNamer(std::string proc_root = "/proc");

  // "/usr/bin/ping"; the event's comm for a process without a readable
  // executable (kernel threads, a deleted binary), one that has exited, and
  // PID 0 (the idle task, which /proc never lists).
  std::string_view program(const pwru_event& event);
  // The netns inode of the event's task (/proc/PID/ns/net); 0 when it has
  // exited or cannot be read.
  std::uint32_t task_netns(const pwru_event& event);

 private:
  std::string lookup(std::uint32_t pid, std::string_view comm) const;

  std::string proc_root_;
  // PID -> (comm, program). An exec changes the comm nearly always, so the
  // comm guards against a PID whose program has changed since.
  std::unordered_map<std::uint32_t, std::pair<std::string, std::string>> cache_;
  std::unordered_map<std::uint32_t, std::pair<std::string, std::uint32_t>> netns_cache_;  // PID -> (comm, inode)
};

}  // namespace pwru
