// Which skb tracepoints pwru-agent's visit counters use by default: one per
// stage a packet passes, so a packet adds one to each stage it went through
// instead of two where the kernel traces a stage twice.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "btf/kernel_btf.h"

namespace pwru {

struct StageTracepoints {
  std::vector<SkbTracepoint> kept;
  std::vector<std::string> left_out;  // "name: why"
};

// From `skb_tracepoints` (KernelBtf::skb_tracepoints()), leaves out:
// - `X_entry` when `kernel_has_tracepoint("X_exit")` and netif_receive_skb is
//   among them: the pair brackets a receive API a driver calls (netif_rx,
//   netif_receive_skb, napi_gro_receive, ...); the skb handed in is counted
//   where the stack takes it, at netif_rx and netif_receive_skb (with GRO,
//   once per merged skb). The _exit tracepoints carry no skb, so they are
//   never counted: the pair is told apart from other *_entry names by BTF.
// - net_dev_xmit when net_dev_start_xmit is among them: it fires after the
//   driver's ndo_start_xmit, which may already have freed the skb it reads;
//   net_dev_start_xmit counts the same packet just before.
// Everything else, kfree_skb included, is kept in its order.
StageTracepoints stage_tracepoints(const std::vector<SkbTracepoint>& skb_tracepoints,
                                   const std::function<bool(const std::string&)>& kernel_has_tracepoint);

// Kprobe backends: `functions` without those named like one of `counted`
// tracepoints (the catalogue's netif_receive_skb, netif_rx). Visits are
// labelled by name, so both hooks would add up in one series, counting the
// packets that pass both twice. Each one left out goes to `left_out` as
// "name: why".
std::vector<std::string> functions_apart_from_tracepoints(const std::vector<std::string>& functions,
                                                          const std::vector<SkbTracepoint>& counted,
                                                          std::vector<std::string>& left_out);

}  // namespace pwru
