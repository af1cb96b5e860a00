// pwru-agent's count-only hooks on the running kernel: real drops and
// visits inside namespaces the test creates land in the counter maps with
// the right netns, reason and dropping function.
#include "probe/counting_probes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "enrich/ksyms.h"
#include "events/counter_maps.h"
#include "netns_fixture.h"

namespace pwru {
namespace {

std::uint32_t reason_value(const KernelBtf& btf, const std::string& name) {
  for (const auto& [value, n] : btf.enum_values("skb_drop_reason"))
    if (n == name) return static_cast<std::uint32_t>(value);
  ADD_FAILURE() << name << " not in this kernel's enum skb_drop_reason";
  return 0;
}

// The tracepoint backend (this kernel has no kprobes; the guests test those)
// on the tracepoints given, kfree_skb added by CountingProbes.
CountingSpec tracepoint_spec(std::vector<std::string> tracepoints,
                             CounterMapSizes sizes = {16384, 16384, PWRU_VISIT_CACHE_SLOTS}) {
  CountingSpec spec;
  spec.backend = "tracepoint";
  spec.all_tracepoints = false;
  spec.tracepoints = std::move(tracepoints);
  spec.sizes = sizes;
  return spec;
}

BpfCounterSource counter_source(const CountingProbes& probes) {
  return BpfCounterSource(
      CounterMapFds{probes.drop_counts_fd(), probes.visit_counts_fd(), probes.visit_cache_fd(), probes.counters_fd()});
}

TEST(CountingProbes, UdpToAClosedPortCountsANoSocketDropInItsNetns) {
  const KernelBtf btf = KernelBtf::load();
  const Ksyms ksyms = Ksyms::load();
  CountingProbes probes(btf, ksyms, tracepoint_spec({"netif_receive_skb", "net_dev_queue"}));
  const std::vector<std::string> hooks = probes.hook_names();
  ASSERT_EQ(hooks.size(), 3u);  // kfree_skb added for drops
  EXPECT_NE(std::find(hooks.begin(), hooks.end(), "kfree_skb"), hooks.end());
  const AttachReport report = probes.attach(nullptr);
  ASSERT_EQ(report.attached, 3u);

  testing::NetnsPair pair(7);
  const BpfCounterSource source = counter_source(probes);
  constexpr int kDatagrams = 5;
  constexpr std::size_t kPayload = 100;
  for (int i = 0; i < kDatagrams; ++i) testing::send_udp(pair.path_a(), pair.ip_b, 9, kPayload);

  const CounterSnapshot snap = source.read();
  const std::uint32_t no_socket = reason_value(btf, "SKB_DROP_REASON_NO_SOCKET");
  std::uint64_t drops = 0, bytes = 0;
  std::string function;
  for (const DropCount& d : snap.drops) {
    if (d.netns != pair.inode_b || d.reason != no_socket) continue;
    drops += d.packets;
    bytes += d.bytes;
    function = ksyms.nearest(d.location);
  }
  EXPECT_EQ(drops, static_cast<std::uint64_t>(kDatagrams));
  // skb->len where it was dropped: UDP has pulled the IP header, so payload
  // plus the 8-byte UDP header.
  EXPECT_EQ(bytes, kDatagrams * (kPayload + 8));
  EXPECT_FALSE(function.empty()) << "the drop location is in no kallsyms function";
  // Visits: netif_receive_skb in B saw them all, net_dev_queue in A sent them.
  std::map<std::pair<std::uint32_t, std::string>, std::uint64_t> visits;
  for (const VisitCount& v : snap.visits) visits[{v.netns, hooks.at(v.hook_id)}] += v.packets;
  EXPECT_GE((visits[{pair.inode_b, "netif_receive_skb"}]), static_cast<std::uint64_t>(kDatagrams));
  EXPECT_GE((visits[{pair.inode_a, "net_dev_queue"}]), static_cast<std::uint64_t>(kDatagrams));
  EXPECT_EQ(snap.drops_overflow_packets, 0u);

  // Counters only grow, and only by what happened.
  testing::send_udp(pair.path_a(), pair.ip_b, 9, kPayload);
  std::uint64_t drops_after = 0;
  for (const DropCount& d : source.read().drops)
    if (d.netns == pair.inode_b && d.reason == no_socket) drops_after += d.packets;
  EXPECT_EQ(drops_after, drops + 1);
}

TEST(CountingProbes, AFullMapCountsWhatItCouldNotKeep) {
  const KernelBtf btf = KernelBtf::load();
  // Room for one key each, no cache in front.
  CountingProbes probes(btf, Ksyms{}, tracepoint_spec({"net_dev_queue"}, CounterMapSizes{1, 1, 0}));
  probes.attach(nullptr);
  testing::NetnsPair pair(8);
  // Two namespaces sending: two visit keys for a map of one.
  testing::send_udp(pair.path_a(), pair.ip_b, 9);
  testing::send_udp(pair.path_b(), pair.ip_a, 9);
  const CounterSnapshot snap = counter_source(probes).read();
  EXPECT_EQ(snap.visits.size(), 1u);
  EXPECT_GE(snap.visits_overflow_packets, 1u);
}

TEST(CountingProbes, KeysInTheCacheAndInTheHashMapAddUp) {
  const KernelBtf btf = KernelBtf::load();
  // One slot: the first key takes it, the rest go to the hash map.
  CountingProbes probes(btf, Ksyms{}, tracepoint_spec({"net_dev_queue"}, CounterMapSizes{64, 64, 1}));
  probes.attach(nullptr);
  testing::NetnsPair pair(9);
  const BpfCounterSource source = counter_source(probes);
  const auto sent_from = [&](std::uint32_t netns) {
    std::uint64_t n = 0;
    for (const VisitCount& v : source.read().visits)
      if (v.netns == netns && v.hook_id == 0) n += v.packets;
    return n;
  };
  const std::uint64_t a0 = sent_from(pair.inode_a), b0 = sent_from(pair.inode_b);
  for (int i = 0; i < 3; ++i) {
    testing::send_udp(pair.path_a(), pair.ip_b, 9);
    testing::send_udp(pair.path_b(), pair.ip_a, 9);
  }
  // The veth pair also carries neighbour discovery: at least what we sent.
  EXPECT_GE(sent_from(pair.inode_a) - a0, 3u);
  EXPECT_GE(sent_from(pair.inode_b) - b0, 3u);
  EXPECT_EQ(source.read().visits_overflow_packets, 0u);
}

TEST(CountingProbes, UnknownTracepointIsAUsageErrorListingTheKnownOnes) {
  const KernelBtf btf = KernelBtf::load();
  try {
    CountingProbes probes(btf, Ksyms{}, tracepoint_spec({"no_such_tracepoint"}));
    FAIL() << "accepted an unknown tracepoint";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_tracepoint"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("kfree_skb"), std::string::npos);
  }
}

}  // namespace
}  // namespace pwru
