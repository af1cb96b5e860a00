// A trace of several netns at once (pwru_filter_cfg.netns_in_map, the
// filter_netns map) on the running kernel: four netns with ICMP in each,
// two of them in the set. Needs root.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "events/ring_reader.h"
#include "netns_fixture.h"
#include "probe/tracepoint_backend.h"

namespace pwru {
namespace {

using testing::NetnsPair;
using testing::sh;

const KernelBtf& kernel_btf() {
  static const KernelBtf btf = KernelBtf::load();
  return btf;
}

// An attached tracepoint backend and the netns of every event it reported.
class NetnsTrace {
 public:
  NetnsTrace(const pwru_filter_cfg& filter, const std::vector<std::uint32_t>& netns_set)
      : backend_(kernel_btf().skb_tracepoints(), filter, 4u << 20, nullptr, std::nullopt, netns_set),
        reader_(backend_.events_fd(), [this](const RingRecord& r) {
          ++events_by_netns_[r.event.netns];
          if (r.event.tuple.l4_proto == 1) ++icmp_by_netns_[r.event.netns];
          return true;
        }) {
    backend_.attach(nullptr);
  }

  // Reads until every netns in `wanted` has had ICMP events, or 5 s passed;
  // then 300 ms more for stragglers.
  bool wait_for_icmp_in(const std::set<std::uint32_t>& wanted) {
    const auto all_seen = [&] {
      for (std::uint32_t ns : wanted)
        if (!icmp_by_netns_.count(ns)) return false;
      return true;
    };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!all_seen() && std::chrono::steady_clock::now() < deadline) reader_.poll(50);
    const auto settle = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (std::chrono::steady_clock::now() < settle) reader_.poll(50);
    reader_.drain();
    return all_seen();
  }

  const std::map<std::uint32_t, std::uint64_t>& events_by_netns() const { return events_by_netns_; }

  std::string describe() const {
    std::string out;
    for (const auto& [ns, n] : events_by_netns_) out += " netns " + std::to_string(ns) + ": " + std::to_string(n);
    return out.empty() ? " no events" : out;
  }

 private:
  TracepointBackend backend_;
  std::map<std::uint32_t, std::uint64_t> events_by_netns_;
  std::map<std::uint32_t, std::uint64_t> icmp_by_netns_;
  RingReader reader_;
};

// Echo requests from a to b in each pair: every netns of both pairs has traffic.
void ping_across(const NetnsPair& net) { sh(net.exec(net.ns_a, "ping -c 2 -i 0.2 -W 2 " + net.ip_b)); }

TEST(NetnsSetRoot, ASetTraceReportsItsNetnsAndNoOther) {
  NetnsPair one(21), two(22);
  const std::vector<std::uint32_t> set = {one.inode_a, two.inode_a};
  pwru_filter_cfg filter{};
  filter.netns_in_map = 1;
  // The echo request skb crosses the veth into b as the same skb: tracked,
  // it must be forgotten there, not reported in a netns outside the set.
  filter.track_skb = 1;
  filter.track_skb_in_netns = 1;
  NetnsTrace trace(filter, set);
  ping_across(one);
  ping_across(two);
  ASSERT_TRUE(trace.wait_for_icmp_in({one.inode_a, two.inode_a})) << trace.describe();
  for (const auto& [ns, n] : trace.events_by_netns())
    EXPECT_TRUE(ns == one.inode_a || ns == two.inode_a)
        << n << " events of netns " << ns << ", outside the set {" << one.inode_a << "," << two.inode_a
        << "}:" << trace.describe() << " (b netns: " << one.inode_b << ", " << two.inode_b << ")";
}

TEST(NetnsSetRoot, ASingleNetnsTraceBesideItStillReportsOnlyItsOwn) {
  NetnsPair one(23), two(24);
  pwru_filter_cfg filter{};
  filter.netns = one.inode_b;
  filter.track_skb = 1;
  filter.track_skb_in_netns = 1;
  NetnsTrace single(filter, {});
  pwru_filter_cfg set_filter{};
  set_filter.netns_in_map = 1;
  NetnsTrace set(set_filter, {one.inode_a, two.inode_b});
  ping_across(one);
  ping_across(two);
  ASSERT_TRUE(single.wait_for_icmp_in({one.inode_b})) << single.describe();
  EXPECT_EQ(single.events_by_netns().size(), 1u) << single.describe();
  ASSERT_TRUE(set.wait_for_icmp_in({one.inode_a, two.inode_b})) << set.describe();
  for (const auto& [ns, n] : set.events_by_netns())
    EXPECT_TRUE(ns == one.inode_a || ns == two.inode_b) << set.describe();
}

TEST(NetnsSetRoot, ASetWithoutMembersOrOverTheCapIsRefusedBeforeLoading) {
  pwru_filter_cfg filter{};
  filter.netns_in_map = 1;
  EXPECT_THROW(NetnsTrace(filter, {}), SystemError);
  std::vector<std::uint32_t> too_many;
  for (std::uint32_t i = 1; i <= PWRU_MAX_NETNS_SET + 1; ++i) too_many.push_back(i);
  EXPECT_THROW(NetnsTrace(filter, too_many), UsageError);
  // Members without the flag would be ignored in silence by the programs.
  EXPECT_THROW(NetnsTrace(pwru_filter_cfg{}, {1}), SystemError);
}

}  // namespace
}  // namespace pwru
