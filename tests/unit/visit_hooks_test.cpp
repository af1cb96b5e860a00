// The default visit tracepoints: one per stage, found by rule in whatever
// tracepoints a kernel has, not from a list of one kernel's names.
#include "probe/visit_hooks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace pwru {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<SkbTracepoint> tracepoints(const std::vector<std::string>& names) {
  std::vector<SkbTracepoint> out;
  for (const std::string& name : names) out.push_back(SkbTracepoint{name, 0, -1, -1});
  return out;
}

std::vector<std::string> names(const std::vector<SkbTracepoint>& tps) {
  std::vector<std::string> out;
  for (const SkbTracepoint& tp : tps) out.push_back(tp.name);
  return out;
}

// What the kernel has beyond its skb tracepoints: the _exit halves carry no skb.
auto has(std::set<std::string> names) {
  return [names = std::move(names)](const std::string& name) { return names.count(name) > 0; };
}

const std::set<std::string> kExits = {"napi_gro_frags_exit",         "napi_gro_receive_exit", "netif_receive_skb_exit",
                                      "netif_receive_skb_list_exit", "netif_rx_exit",         "netif_rx_ni_exit"};

TEST(StageTracepoints, LeavesOutEntryTwinsAndNetDevXmitOfA618Kernel) {
  const StageTracepoints stages =
      stage_tracepoints(tracepoints({"consume_skb", "kfree_skb", "napi_gro_frags_entry", "napi_gro_receive_entry",
                                     "net_dev_queue", "net_dev_start_xmit", "net_dev_xmit", "netif_receive_skb",
                                     "netif_receive_skb_entry", "netif_receive_skb_list_entry", "netif_rx",
                                     "netif_rx_entry", "qdisc_enqueue", "tcp_retransmit_skb"}),
                        has(kExits));
  EXPECT_THAT(names(stages.kept), ElementsAre("consume_skb", "kfree_skb", "net_dev_queue", "net_dev_start_xmit",
                                              "netif_receive_skb", "netif_rx", "qdisc_enqueue", "tcp_retransmit_skb"));
  ASSERT_EQ(stages.left_out.size(), 6u);
  EXPECT_THAT(stages.left_out[0], HasSubstr("napi_gro_frags_entry: the entry of napi_gro_frags()"));
  EXPECT_THAT(stages.left_out[2], HasSubstr("net_dev_xmit: "));
  EXPECT_THAT(stages.left_out[2], HasSubstr("net_dev_start_xmit counts it"));
}

TEST(StageTracepoints, FollowsTheKernelsOwnEntryExitPairs) {
  // netif_rx_ni_entry (kernels before 5.18) by the same rule; an _entry
  // name without an _exit twin is some other stage and stays.
  const StageTracepoints stages =
      stage_tracepoints(tracepoints({"foo_entry", "netif_receive_skb", "netif_rx", "netif_rx_ni_entry"}), has(kExits));
  EXPECT_THAT(names(stages.kept), ElementsAre("foo_entry", "netif_receive_skb", "netif_rx"));
  ASSERT_EQ(stages.left_out.size(), 1u);
  EXPECT_THAT(stages.left_out[0], HasSubstr("netif_rx_ni_entry"));
}

TEST(StageTracepoints, KeepsTheTwinsWhenTheStageTheyStandForIsMissing) {
  // Without netif_receive_skb the entries are the only receive hooks, and
  // without net_dev_start_xmit net_dev_xmit is the only driver hook.
  const StageTracepoints stages = stage_tracepoints(
      tracepoints({"kfree_skb", "net_dev_xmit", "netif_receive_skb_entry", "netif_rx_entry"}), has(kExits));
  EXPECT_THAT(names(stages.kept),
              ElementsAre("kfree_skb", "net_dev_xmit", "netif_receive_skb_entry", "netif_rx_entry"));
  EXPECT_TRUE(stages.left_out.empty());
}

TEST(StageTracepoints, KeepsEachTracepointsArguments) {
  std::vector<SkbTracepoint> all = tracepoints({"kfree_skb", "netif_rx_entry", "netif_receive_skb"});
  all[0] = SkbTracepoint{"kfree_skb", 0, 2, 1};
  const StageTracepoints stages = stage_tracepoints(all, has(kExits));
  ASSERT_EQ(stages.kept.size(), 2u);
  EXPECT_EQ(stages.kept[0].reason_arg, 2);
  EXPECT_EQ(stages.kept[0].location_arg, 1);
}

TEST(FunctionsApartFromTracepoints, LeavesOutFunctionsNamedLikeACountedTracepoint) {
  std::vector<std::string> left_out = {"earlier: kept"};
  const std::vector<std::string> kept = functions_apart_from_tracepoints(
      {"napi_gro_receive", "netif_receive_skb", "__netif_receive_skb", "netif_rx", "ip_rcv"},
      tracepoints({"kfree_skb", "netif_receive_skb", "netif_rx"}), left_out);
  EXPECT_THAT(kept, ElementsAre("napi_gro_receive", "__netif_receive_skb", "ip_rcv"));
  ASSERT_EQ(left_out.size(), 3u);
  EXPECT_EQ(left_out[0], "earlier: kept");
  EXPECT_THAT(left_out[1], HasSubstr("netif_receive_skb: the tracepoint of the same name counts it"));
  EXPECT_THAT(left_out[2], HasSubstr("netif_rx: "));
}

TEST(FunctionsApartFromTracepoints, KeepsFunctionsWhoseTracepointIsNotCounted) {
  // netif_rx_entry left out by the default does not take netif_rx's place.
  std::vector<std::string> left_out;
  EXPECT_THAT(functions_apart_from_tracepoints({"netif_rx", "napi_gro_receive"}, tracepoints({"kfree_skb"}), left_out),
              ElementsAre("netif_rx", "napi_gro_receive"));
  EXPECT_TRUE(left_out.empty());
}

}  // namespace
}  // namespace pwru
