#include <gtest/gtest.h>

#include "probe/kprobe_backend.h"
#include "probe/tracepoint_backend.h"

namespace pwru {
namespace {

std::vector<std::string> names(const std::vector<SkbTracepoint>& tps) {
  std::vector<std::string> out;
  for (const SkbTracepoint& tp : tps) out.push_back(tp.name);
  return out;
}

TEST(TracepointsBesideKprobes, OnlyTheDropTracepointStays) {
  const std::vector<SkbTracepoint> all = {{"net_dev_queue", 0, -1, -1},
                                          {"consume_skb", 0, -1, -1},
                                          {"kfree_skb", 0, 2, 1},
                                          {"netif_receive_skb", 0, -1, -1}};
  const std::vector<SkbTracepoint> kept = tracepoints_beside_kprobes(all);
  EXPECT_EQ(names(kept), std::vector<std::string>{"kfree_skb"});
  EXPECT_EQ(kept[0].reason_arg, 2);
  EXPECT_EQ(kept[0].location_arg, 1);
}

TEST(TracepointsBesideKprobes, KfreeSkbWithoutAReasonBefore517StaysToo) {
  const std::vector<SkbTracepoint> kept =
      tracepoints_beside_kprobes({{"kfree_skb", 0, -1, 1}, {"net_dev_xmit", 0, -1, -1}});
  EXPECT_EQ(names(kept), std::vector<std::string>{"kfree_skb"});
}

// pwru's rule (ENOENT, EADDRNOTAVAIL) and the kernel's other "cannot probe
// that function" answers are skipped; anything else is the trace's error.
TEST(KernelCannotProbe, OnlyRefusalsOfTheFunctionAreSkipped) {
  for (int err : {ENOENT, EADDRNOTAVAIL, EINVAL, EILSEQ}) EXPECT_TRUE(kernel_cannot_probe(err)) << err;
  for (int err : {EPERM, EACCES, EMFILE, ENOMEM, EBUSY, E2BIG, 0}) EXPECT_FALSE(kernel_cannot_probe(err)) << err;
}

}  // namespace
}  // namespace pwru
