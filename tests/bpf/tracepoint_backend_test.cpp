// The tracepoint backend on the running kernel: real programs, real traffic
// between network namespaces this test creates, events asserted field by
// field. Needs root; a missing capability fails with the kernel's reason.
#include "probe/tracepoint_backend.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "btf/kernel_btf.h"
#include "enrich/ksyms.h"
#include "events/ring_reader.h"
#include "eventually.h"
#include "netns_fixture.h"
#include "output/event_formatter.h"

namespace pwru {
namespace {

using testing::NetnsPair;
using testing::send_udp;
using testing::sh;

const KernelBtf& kernel_btf() {
  static const KernelBtf btf = KernelBtf::load();
  return btf;
}

// A loaded, attached backend plus everything it reported.
class Trace {
 public:
  explicit Trace(pwru_filter_cfg filter, std::uint32_t ring_bytes = 4u << 20)
      : backend_(kernel_btf().skb_tracepoints(), filter, ring_bytes),
        reader_(backend_.events_fd(), [this](const RingRecord& r) {
          events_.push_back(r.event);
          packets_.emplace_back(r.packet.begin(), r.packet.end());
          packet_lens_.push_back(r.packet_len);
          return true;
        }) {
    report_ = backend_.attach(nullptr);
  }

  // Polls until pred holds for the collected events or the deadline passes.
  bool wait_for(const std::function<bool(const std::vector<pwru_event>&)>& pred,
                std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      reader_.poll(50);
      if (pred(events_)) return true;
    }
    return pred(events_);
  }
  // Gives stragglers time to arrive, then reads everything.
  void settle(std::chrono::milliseconds d = std::chrono::milliseconds(300)) {
    const auto deadline = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < deadline) reader_.poll(50);
    reader_.drain();
  }

  std::string hook(const pwru_event& e) const { return backend_.hooks().at(e.hook_id).name; }
  std::set<std::string> hooks_seen(const std::function<bool(const pwru_event&)>& match) const {
    std::set<std::string> out;
    for (const auto& e : events_)
      if (match(e)) out.insert(hook(e));
    return out;
  }
  const std::vector<pwru_event>& events() const { return events_; }
  // Per event: the captured bytes and the packet's whole length (capture_bytes).
  const std::vector<std::vector<std::uint8_t>>& packets() const { return packets_; }
  const std::vector<std::uint32_t>& packet_lens() const { return packet_lens_; }
  const AttachReport& report() const { return report_; }
  TracepointBackend& backend() { return backend_; }

 private:
  TracepointBackend backend_;
  std::vector<pwru_event> events_;
  std::vector<std::vector<std::uint8_t>> packets_;
  std::vector<std::uint32_t> packet_lens_;
  RingReader reader_;
  AttachReport report_;
};

bool is_v4(const pwru_event& e, const std::string& src, const std::string& dst, std::uint8_t proto) {
  return e.tuple.l3_proto == PWRU_ETH_P_IP && e.tuple.l4_proto == proto &&
         format_addr(PWRU_ETH_P_IP, e.tuple.saddr) == src && format_addr(PWRU_ETH_P_IP, e.tuple.daddr) == dst;
}

std::string describe(const Trace& t) {
  std::string out;
  for (const auto& e : t.events())
    out += t.hook(e) + " netns=" + std::to_string(e.netns) + " if=" + e.ifname + " mark=" + std::to_string(e.mark) +
           " " + format_tuple(e.tuple, true) + "\n";
  return out;
}

pwru_filter_cfg netns_filter(std::uint32_t inode) {
  pwru_filter_cfg f{};
  f.netns = inode;
  return f;
}

TEST(TracepointBackend, AttachesEveryDiscoveredSkbTracepoint) {
  const auto tps = kernel_btf().skb_tracepoints();
  ASSERT_GE(tps.size(), 10u) << "kernel BTF lists too few skb tracepoints";
  bool kfree_has_reason = false;
  for (const auto& tp : tps)
    if (tp.name == "kfree_skb") kfree_has_reason = tp.reason_arg >= 0 && tp.location_arg >= 0;
  EXPECT_TRUE(kfree_has_reason) << "kfree_skb should carry a drop reason and a location";
  Trace t(pwru_filter_cfg{});
  EXPECT_EQ(t.report().attached, tps.size());
  EXPECT_TRUE(t.report().skipped.empty()) << t.report().skipped.front();
}

TEST(TracepointBackend, IcmpBetweenNamespacesOnTransmitAndReceivePaths) {
  NetnsPair net(1);
  Trace t(netns_filter(net.inode_a));
  sh(net.exec(net.ns_a, "ping -c 2 -i 0.2 -W 2 " + net.ip_b));
  auto icmp_out = [&](const pwru_event& e) { return is_v4(e, net.ip_a, net.ip_b, 1); };
  auto icmp_back = [&](const pwru_event& e) { return is_v4(e, net.ip_b, net.ip_a, 1); };
  ASSERT_TRUE(t.wait_for([&](const auto&) {
    return !t.hooks_seen(icmp_back).empty() && !t.hooks_seen(icmp_out).empty();
  })) << describe(t);
  t.settle();
  for (const auto& e : t.events()) ASSERT_EQ(e.netns, net.inode_a) << "netns filter leaked:\n" << describe(t);

  const auto out_hooks = t.hooks_seen(icmp_out);
  const auto back_hooks = t.hooks_seen(icmp_back);
  EXPECT_TRUE(out_hooks.count("net_dev_queue") || out_hooks.count("net_dev_start_xmit")) << describe(t);
  EXPECT_TRUE(back_hooks.count("netif_receive_skb") || back_hooks.count("netif_receive_skb_entry") ||
              back_hooks.count("napi_gro_receive_entry"))
      << describe(t);
  bool saw_device = false;
  for (const auto& e : t.events()) {
    if (!icmp_out(e) || t.hook(e) != "net_dev_start_xmit") continue;
    saw_device = true;
    EXPECT_STREQ(e.ifname, net.veth_a.c_str());
    EXPECT_EQ(e.ifindex, net.ifindex_a);
    EXPECT_EQ(e.mtu, 1500u);
    EXPECT_EQ(ntohs(e.protocol), 0x0800);
    EXPECT_EQ(e.len, 98u);  // 14 + 20 + 8 + 56
    EXPECT_GT(e.pid, 0u);
    EXPECT_STREQ(e.comm, "ping");
    EXPECT_NE(e.skb_addr, 0u);
    EXPECT_NE(e.ts_ns, 0u);
  }
  EXPECT_TRUE(saw_device) << describe(t);
}

TEST(TracepointBackend, UdpTupleAndClosedPortDropsWithNoSocket) {
  NetnsPair net(2);
  Trace t(netns_filter(net.inode_b));
  send_udp(net.path_a(), net.ip_b, 9999);
  auto dropped = [&](const pwru_event& e) {
    return t.hook(e) == "kfree_skb" && is_v4(e, net.ip_a, net.ip_b, 17) && ntohs(e.tuple.dport) == 9999;
  };
  ASSERT_TRUE(t.wait_for([&](const auto& evs) { return std::any_of(evs.begin(), evs.end(), dropped); })) << describe(t);
  const auto reasons = kernel_btf().enum_values("skb_drop_reason");
  const Ksyms ksyms = Ksyms::load();
  for (const auto& e : t.events()) {
    if (!dropped(e)) continue;
    ASSERT_TRUE(e.has_drop_reason);
    ASSERT_TRUE(reasons.count(e.drop_reason)) << e.drop_reason;
    EXPECT_EQ(reasons.at(e.drop_reason), "SKB_DROP_REASON_NO_SOCKET");
    EXPECT_NE(e.drop_location, 0u);
    // The location points into the UDP receive path.
    EXPECT_NE(ksyms.nearest(e.drop_location).find("udp"), std::string::npos) << ksyms.nearest(e.drop_location);
    EXPECT_NE(ntohs(e.tuple.sport), 0);
    EXPECT_EQ(e.netns, net.inode_b);
  }
}

// --output-pcap's capture: every event of the datagram carries its IPv4
// packet from the network header, whole (it is small and linear), on the
// transmit path as on the receive path; without capture_bytes, nothing.
TEST(TracepointBackend, CaptureCopiesThePacketFromItsNetworkHeader) {
  NetnsPair net(2);
  pwru_filter_cfg filter = netns_filter(net.inode_b);
  filter.capture_bytes = 1500;
  Trace t(filter);
  constexpr std::size_t kPayload = 100;
  send_udp(net.path_a(), net.ip_b, 9998, kPayload);
  auto datagram = [&](const pwru_event& e) { return is_v4(e, net.ip_a, net.ip_b, 17) && ntohs(e.tuple.dport) == 9998; };
  ASSERT_TRUE(t.wait_for([&](const auto& evs) {
    return std::any_of(evs.begin(), evs.end(),
                       [&](const pwru_event& e) { return datagram(e) && t.hook(e) == "kfree_skb"; });
  })) << describe(t);
  std::size_t checked = 0;
  for (std::size_t i = 0; i < t.events().size(); ++i) {
    const pwru_event& e = t.events()[i];
    if (!datagram(e) || t.hook(e) == "icmp_send" || t.hook(e) == "kfree_skb") continue;  // after the UDP pull
    const auto& p = t.packets()[i];
    SCOPED_TRACE(t.hook(e));
    ASSERT_EQ(e.capture_from, PWRU_CAPTURE_L3);
    ASSERT_EQ(p.size(), 20 + 8 + kPayload);
    EXPECT_EQ(t.packet_lens()[i], p.size());
    EXPECT_EQ(p[0] >> 4, 4);
    EXPECT_EQ(p[9], 17);
    EXPECT_EQ(0, std::memcmp(&p[12], e.tuple.saddr, 4));
    EXPECT_EQ(0, std::memcmp(&p[16], e.tuple.daddr, 4));
    EXPECT_EQ((p[22] << 8) | p[23], 9998);
    ++checked;
  }
  EXPECT_GE(checked, 3u) << describe(t);

  Trace plain(netns_filter(net.inode_b));
  send_udp(net.path_a(), net.ip_b, 9998, kPayload);
  ASSERT_TRUE(plain.wait_for([&](const auto& evs) { return std::any_of(evs.begin(), evs.end(), datagram); }));
  for (std::size_t i = 0; i < plain.events().size(); ++i) {
    EXPECT_EQ(plain.events()[i].capture_from, PWRU_CAPTURE_NONE);
    EXPECT_TRUE(plain.packets()[i].empty());
  }
}

TEST(TracepointBackend, NetfilterDropRuleGivesNetfilterDrop) {
  NetnsPair net(3);
  sh(net.exec(net.ns_b, "nft add table inet pwt"));
  sh(net.exec(net.ns_b, "nft 'add chain inet pwt in { type filter hook input priority 0; }'"));
  sh(net.exec(net.ns_b, "nft add rule inet pwt in udp dport 7777 drop"));
  Trace t(netns_filter(net.inode_b));
  send_udp(net.path_a(), net.ip_b, 7777);
  const auto reasons = kernel_btf().enum_values("skb_drop_reason");
  auto nf_drop = [&](const pwru_event& e) {
    return e.has_drop_reason && ntohs(e.tuple.dport) == 7777 && reasons.count(e.drop_reason) &&
           reasons.at(e.drop_reason) == "SKB_DROP_REASON_NETFILTER_DROP";
  };
  EXPECT_TRUE(t.wait_for([&](const auto& evs) { return std::any_of(evs.begin(), evs.end(), nf_drop); })) << describe(t);
}

TEST(TracepointBackend, TcpHandshakeTuplesAndFlags) {
  NetnsPair net(4);
  Trace t(netns_filter(net.inode_a));
  // A listener in ns_b and one bounded connection from ns_a.
  sh(net.exec(net.ns_b, "sh -c 'timeout 5 nc -l -p 8080 >/dev/null 2>&1 &'"));
  const auto listening = [&] { return !sh(net.exec(net.ns_b, "ss -Hltn 'sport = :8080'")).empty(); };
  ASSERT_TRUE(testing::eventually(listening, std::chrono::seconds(4))) << "the listener in ns_b never listened";
  sh(net.exec(net.ns_a, "sh -c 'echo hello | timeout 3 nc -N -w 1 " + net.ip_b + " 8080'"));
  auto syn = [&](const pwru_event& e) {
    return is_v4(e, net.ip_a, net.ip_b, 6) && ntohs(e.tuple.dport) == 8080 && (e.tuple.tcp_flags & 0x02) &&
           !(e.tuple.tcp_flags & 0x10);
  };
  auto synack = [&](const pwru_event& e) {
    return is_v4(e, net.ip_b, net.ip_a, 6) && ntohs(e.tuple.sport) == 8080 && (e.tuple.tcp_flags & 0x12) == 0x12;
  };
  EXPECT_TRUE(t.wait_for([&](const auto& evs) {
    return std::any_of(evs.begin(), evs.end(), syn) && std::any_of(evs.begin(), evs.end(), synack);
  })) << describe(t);
}

TEST(TracepointBackend, Ipv6Tuple) {
  NetnsPair net(5);
  Trace t(netns_filter(net.inode_a));
  sh(net.exec(net.ns_a, "ping -6 -c 1 -W 2 " + net.ip6_b));
  auto v6 = [&](const pwru_event& e) {
    return e.tuple.l3_proto == PWRU_ETH_P_IPV6 && e.tuple.l4_proto == 58 &&
           format_addr(PWRU_ETH_P_IPV6, e.tuple.saddr) == "[" + net.ip6_a + "]" &&
           format_addr(PWRU_ETH_P_IPV6, e.tuple.daddr) == "[" + net.ip6_b + "]";
  };
  EXPECT_TRUE(t.wait_for([&](const auto& evs) { return std::any_of(evs.begin(), evs.end(), v6); })) << describe(t);
}

TEST(TracepointBackend, MarkFilterKeepsOnlyMatchingMarks) {
  NetnsPair net(6);
  sh(net.exec(net.ns_a, "nft add table inet pwt"));
  sh(net.exec(net.ns_a, "nft 'add chain inet pwt out { type route hook output priority 0; }'"));
  sh(net.exec(net.ns_a, "nft add rule inet pwt out udp dport 6001 meta mark set 0x2a"));
  auto flow = [&](const pwru_event& e) { return is_v4(e, net.ip_a, net.ip_b, 17) && ntohs(e.tuple.dport) == 6001; };
  {
    pwru_filter_cfg f = netns_filter(net.inode_a);
    f.mark = 0x2a;
    f.mark_mask = 0xffffffff;
    Trace t(f);
    send_udp(net.path_a(), net.ip_b, 6001);
    send_udp(net.path_a(), net.ip_b, 6002);  // unmarked: must not show
    ASSERT_TRUE(t.wait_for([&](const auto& evs) { return std::any_of(evs.begin(), evs.end(), flow); })) << describe(t);
    t.settle();
    for (const auto& e : t.events()) {
      EXPECT_EQ(e.mark & 0xffffffff, 0x2au) << describe(t);
      EXPECT_NE(ntohs(e.tuple.dport), 6002) << describe(t);
    }
  }
  {
    pwru_filter_cfg f = netns_filter(net.inode_a);
    f.mark = 0x2b;
    f.mark_mask = 0xff;
    Trace t(f);
    send_udp(net.path_a(), net.ip_b, 6001);
    t.settle(std::chrono::milliseconds(500));
    for (const auto& e : t.events()) EXPECT_FALSE(flow(e)) << describe(t);
  }
}

TEST(TracepointBackend, IfnameFilterKeepsOnlyThatDevice) {
  NetnsPair net(7);
  pwru_filter_cfg f = netns_filter(net.inode_b);
  f.ifindex = net.ifindex_b;
  Trace t(f);
  sh(net.exec(net.ns_b, "ping -c 1 -W 2 127.0.0.1"));  // lo in ns_b: excluded
  sh(net.exec(net.ns_a, "ping -c 1 -W 2 " + net.ip_b));
  ASSERT_TRUE(t.wait_for([&](const auto& evs) {
    return std::any_of(evs.begin(), evs.end(), [&](const pwru_event& e) { return is_v4(e, net.ip_a, net.ip_b, 1); });
  })) << describe(t);
  t.settle();
  for (const auto& e : t.events()) {
    EXPECT_EQ(e.ifindex, net.ifindex_b) << describe(t);
    EXPECT_FALSE(is_v4(e, "127.0.0.1", "127.0.0.1", 1)) << describe(t);
  }
}

TEST(TracepointBackend, EventsThatDoNotFitAreCounted) {
  NetnsPair net(8);
  // The smallest ring (one page) fills after a few dozen events; nobody reads it.
  TracepointBackend backend(kernel_btf().skb_tracepoints(), netns_filter(net.inode_a), 4096);
  backend.attach(nullptr);
  for (int i = 0; i < 100; ++i) send_udp(net.path_a(), net.ip_b, 5000);
  backend.detach();
  const auto counters = read_counters(backend.counters_fd());
  EXPECT_GT(counters[PWRU_CNT_LOST], 0u);
  EXPECT_GT(counters[PWRU_CNT_EVENTS], 0u);
  EXPECT_LE(counters[PWRU_CNT_EVENTS] * sizeof(pwru_event_core), 4096u);
}

// Counts raw tracepoint links whose program is one of ours.
int our_links() {
  int count = 0;
  __u32 id = 0;
  while (bpf_link_get_next_id(id, &id) == 0) {
    const int fd = bpf_link_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_link_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
      const int prog_fd = bpf_prog_get_fd_by_id(info.prog_id);
      bpf_prog_info pinfo{};
      __u32 plen = sizeof(pinfo);
      if (prog_fd >= 0 && bpf_obj_get_info_by_fd(prog_fd, &pinfo, &plen) == 0 &&
          std::string(pinfo.name).rfind("pwru_tp_", 0) == 0)
        ++count;
      if (prog_fd >= 0) close(prog_fd);
    }
    close(fd);
  }
  return count;
}

TEST(TracepointBackend, NothingStaysAttachedAfterDetachOrDestruction) {
  const int before = our_links();
  {
    TracepointBackend backend(kernel_btf().skb_tracepoints(), pwru_filter_cfg{}, 1 << 16);
    const AttachReport r = backend.attach(nullptr);
    EXPECT_EQ(our_links(), before + static_cast<int>(r.attached));
    backend.detach();
    EXPECT_EQ(our_links(), before);
    backend.attach(nullptr);
  }  // destroyed while attached
  EXPECT_EQ(our_links(), before);
}

TEST(TracepointBackend, AProgramTheVerifierRefusesIsSkippedNotFatal) {
  auto tps = kernel_btf().skb_tracepoints();
  const std::size_t real = tps.size();
  // netif_receive_skb has one argument: reading a sixth is refused.
  tps.push_back(SkbTracepoint{"netif_receive_skb", 5, -1, -1});
  TracepointBackend backend(tps, pwru_filter_cfg{}, 1 << 16);
  const AttachReport r = backend.attach(nullptr);
  EXPECT_EQ(r.attached, real);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].find("netif_receive_skb: the kernel refused"), std::string::npos) << r.skipped[0];
  EXPECT_EQ(backend.hooks().size(), real);
}

TEST(TracepointBackend, CancelledAttachStopsEarly) {
  TracepointBackend backend(kernel_btf().skb_tracepoints(), pwru_filter_cfg{}, 1 << 16);
  int calls = 0;
  const AttachReport r = backend.attach([&] { return ++calls > 3; });
  EXPECT_EQ(r.attached, 3u);
}

}  // namespace
}  // namespace pwru
