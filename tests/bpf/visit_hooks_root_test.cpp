// counters.visit_hooks on the running kernel: the default leaves out the
// entry twins this kernel's BTF pairs with an _exit and net_dev_xmit, and
// "all" keeps every skb tracepoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "btf/kernel_btf.h"
#include "enrich/ksyms.h"
#include "probe/counting_probes.h"

namespace pwru {
namespace {

CountingSpec spec_with(CountingSpec::VisitHooks hooks) {
  CountingSpec spec;
  spec.backend = "tracepoint";
  spec.visit_hooks = hooks;
  return spec;
}

bool has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST(VisitHooks, DefaultCountsEachStageOnceOnThisKernel) {
  const KernelBtf btf = KernelBtf::load();
  const CountingProbes probes(btf, Ksyms{}, spec_with(CountingSpec::VisitHooks::kStages));
  const std::vector<std::string> hooks = probes.hook_names();
  for (const char* kept :
       {"kfree_skb", "consume_skb", "netif_rx", "netif_receive_skb", "net_dev_queue", "net_dev_start_xmit"})
    EXPECT_TRUE(has(hooks, kept)) << kept;
  // Every kernel since 5.x has these entry/exit pairs (6.18: five of them).
  for (const char* twin : {"netif_rx_entry", "netif_receive_skb_entry", "napi_gro_receive_entry", "net_dev_xmit"})
    EXPECT_FALSE(has(hooks, twin)) << twin;
  for (const SkbTracepoint& tp : btf.skb_tracepoints()) {
    const bool entry = tp.name.size() > 6 && tp.name.compare(tp.name.size() - 6, 6, "_entry") == 0;
    if (entry) {
      EXPECT_FALSE(has(hooks, tp.name)) << tp.name << " has an _exit twin on every kernel so far";
    }
  }
  EXPECT_EQ(hooks.size() + probes.left_out_tracepoints().size(), btf.skb_tracepoints().size());
}

TEST(VisitHooks, AllCountsEverySkbTracepoint) {
  const KernelBtf btf = KernelBtf::load();
  const CountingProbes probes(btf, Ksyms{}, spec_with(CountingSpec::VisitHooks::kAll));
  EXPECT_EQ(probes.hook_names().size(), btf.skb_tracepoints().size());
  EXPECT_TRUE(has(probes.hook_names(), "net_dev_xmit"));
  EXPECT_TRUE(probes.left_out_tracepoints().empty());
}

TEST(VisitHooks, AListIsTakenAsWritten) {
  const KernelBtf btf = KernelBtf::load();
  CountingSpec spec = spec_with(CountingSpec::VisitHooks::kStages);
  spec.all_tracepoints = false;
  spec.tracepoints = {"netif_rx_entry", "net_dev_xmit"};
  const CountingProbes probes(btf, Ksyms{}, spec);
  EXPECT_EQ(probes.hook_names(), (std::vector<std::string>{"netif_rx_entry", "net_dev_xmit", "kfree_skb"}));
}

}  // namespace
}  // namespace pwru
