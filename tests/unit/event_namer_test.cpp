#include <gtest/gtest.h>

#include <sstream>

#include "enrich/event_namer.h"

namespace pwru {
namespace {

TEST(EventNamer, DropReasonsFromTheKernelTable) {
  EventNamer namer({"consume_skb", "kfree_skb"}, {{2, "SKB_DROP_REASON_NOT_SPECIFIED"}, {3, "SKB_DROP_REASON_NO_SOCKET"}},
                   nullptr);
  pwru_event e{};
  e.hook_id = 0;
  EXPECT_EQ(namer.func(e), "consume_skb");
  e.hook_id = 1;
  e.has_drop_reason = 1;
  e.drop_reason = 3;
  EXPECT_EQ(namer.func(e), "kfree_skb(SKB_DROP_REASON_NO_SOCKET)");
  e.drop_reason = 999;
  EXPECT_EQ(namer.func(e), "kfree_skb (999)");
  e.hook_id = 7;
  EXPECT_EQ(namer.func(e), "?");
}

TEST(EventNamer, CallerSkipsTracingMachinery) {
  EXPECT_EQ(EventNamer::caller({"bpf_prog_abc_pwru_tp_00 [bpf]", "bpf_trace_run3", "__bpf_trace_kfree_skb",
                                "sk_skb_reason_drop", "udp_queue_rcv_one_skb"},
                               "kfree_skb"),
            "sk_skb_reason_drop");
  EXPECT_EQ(EventNamer::caller({"0xffffffffa0000000", "__traceiter_kfree_skb"}, "kfree_skb"), "");
  // A kprobe's stack starts in the probed function: its caller comes next.
  EXPECT_EQ(EventNamer::caller({"fprobe_handler", "ip_rcv", "__netif_receive_skb_one_core"}, "ip_rcv"),
            "__netif_receive_skb_one_core");
}

TEST(EventNamer, StackStartsAtTheFunctionThatHitTheHook) {
  std::istringstream kallsyms(
      "ffffffff81000000 t bpf_trace_run1\n"
      "ffffffff81001000 t __dev_queue_xmit\n"
      "ffffffff81002000 t bpf_fake_but_deeper\n"
      "ffffffffa0000000 t bpf_prog_0123_pwru_tp_05\t[bpf]\n");
  const Ksyms ksyms = Ksyms::parse(kallsyms);
  EventNamer namer({}, {}, &ksyms);
  const auto stack = namer.stack_names({0xffffffffa0000010, 0xffffffff81000010, 0xffffffff81001010, 0xffffffff81002010});
  ASSERT_EQ(stack.size(), 2u);
  EXPECT_EQ(stack[0], "__dev_queue_xmit");
  // Only leading machinery goes: deeper frames stay whatever their names.
  EXPECT_EQ(stack[1], "bpf_fake_but_deeper");
}

}  // namespace
}  // namespace pwru
