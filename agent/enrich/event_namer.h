// Names for what an event points at: its hook (with the drop reason as this
// kernel spells it), its stack frames, and the function that hit the hook.
#pragma once

#include <cstdint>
#include <map>
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
  EventNamer(std::vector<std::string> hook_names, std::map<std::uint64_t, std::string> reasons,
             const Ksyms* ksyms);

  // "netif_receive_skb", "kfree_skb(SKB_DROP_REASON_NO_SOCKET)",
  // "kfree_skb (123)" for a reason this kernel's BTF does not name.
  std::string_view func(const pwru_event& event);

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
};

}  // namespace pwru
