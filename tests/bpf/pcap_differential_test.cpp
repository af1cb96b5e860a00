// Differential test of the pcap filter path: for every expression in
// pcap_expressions.txt and every packet of a corpus built here, libpcap's
// own interpreter (pcap_offline_filter) and our translated eBPF, run in the
// kernel with BPF_PROG_TEST_RUN, must give the same verdict, in the L2
// (Ethernet frame) and the L3 (bare IP packet) form.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "packet_bytes.h"
#include "pcap_harness.h"

#ifndef PWRU_PCAP_EXPRESSIONS
#error "PWRU_PCAP_EXPRESSIONS must name the expressions file"
#endif

namespace pwru {
namespace {

using testing::Bytes;
using testing::put16;
using testing::put32;

struct Packet {
  std::string name;
  Bytes frame;  // what the L2 form sees
  Bytes l3;     // what the L3 form sees: the frame without its link header
};

void put(Bytes& b, std::initializer_list<std::uint8_t> bytes) { b.insert(b.end(), bytes); }
void put_ip4(Bytes& b, const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  const auto* p = reinterpret_cast<const std::uint8_t*>(&a);
  b.insert(b.end(), p, p + 4);
}
void put_ip6(Bytes& b, const char* s) {
  in6_addr a{};
  inet_pton(AF_INET6, s, &a);
  b.insert(b.end(), a.s6_addr, a.s6_addr + 16);
}

struct L4 {
  std::uint8_t proto;
  Bytes bytes;
};

L4 tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags, std::size_t payload = 0) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put32(b, 1000);
  put32(b, flags & 0x10 ? 2000 : 0);
  put(b, {0x50, flags});
  put16(b, 64240);
  put16(b, 0);  // checksum: filters do not look at it
  put16(b, 0);
  b.resize(b.size() + payload, 'x');
  return {6, b};
}
L4 udp(std::uint16_t sport, std::uint16_t dport, const std::string& payload = "pwru") {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, static_cast<std::uint16_t>(8 + payload.size()));
  put16(b, 0);
  b.insert(b.end(), payload.begin(), payload.end());
  return {17, b};
}
L4 icmp(std::uint8_t type, std::uint8_t code) {
  Bytes b{type, code, 0, 0, 0, 1, 0, 1};
  b.resize(b.size() + 56, 0x42);
  return {1, b};
}
L4 icmp6(std::uint8_t type) {
  Bytes b{type, 0, 0, 0, 0, 1, 0, 1};
  b.resize(b.size() + 32, 0x43);
  return {58, b};
}

struct Ip4Opts {
  std::uint8_t ttl = 64;
  std::uint16_t frag = 0;  // flags + offset, host order
  int option_words = 0;
};

Bytes ip4(const char* src, const char* dst, const L4& l4, Ip4Opts o = {}) {
  Bytes b;
  const int ihl = 5 + o.option_words;
  put(b, {static_cast<std::uint8_t>(0x40 | ihl), 0x10});
  put16(b, static_cast<std::uint16_t>(ihl * 4 + l4.bytes.size()));
  put16(b, 0x1234);
  put16(b, o.frag);
  put(b, {o.ttl, l4.proto});
  put16(b, 0);
  put_ip4(b, src);
  put_ip4(b, dst);
  for (int i = 0; i < o.option_words; ++i) put(b, {0x01, 0x01, 0x01, 0x01});  // NOPs
  b.insert(b.end(), l4.bytes.begin(), l4.bytes.end());
  return b;
}

Bytes ip6(const char* src, const char* dst, const L4& l4, bool hop_by_hop = false, std::uint8_t hops = 64) {
  Bytes b;
  put32(b, 0x60000000);
  const std::size_t ext = hop_by_hop ? 8 : 0;
  put16(b, static_cast<std::uint16_t>(l4.bytes.size() + ext));
  put(b, {static_cast<std::uint8_t>(hop_by_hop ? 0 : l4.proto), hops});
  put_ip6(b, src);
  put_ip6(b, dst);
  if (hop_by_hop) put(b, {l4.proto, 0, 1, 4, 0, 0, 0, 0});
  b.insert(b.end(), l4.bytes.begin(), l4.bytes.end());
  return b;
}

Bytes ether(const char* dst, const char* src, std::uint16_t type, const Bytes& payload, int vlan = -1) {
  Bytes b;
  unsigned m[6];
  for (const char* mac : {dst, src}) {
    std::sscanf(mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]);
    for (unsigned v : m) b.push_back(static_cast<std::uint8_t>(v));
  }
  if (vlan >= 0) {
    put16(b, 0x8100);
    put16(b, static_cast<std::uint16_t>(vlan));
  }
  put16(b, type);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes arp(std::uint16_t op, const char* sender, const char* target) {
  Bytes b;
  put16(b, 1);
  put16(b, 0x0800);
  put(b, {6, 4});
  put16(b, op);
  put(b, {0x02, 0, 0, 0, 0, 0x01});
  put_ip4(b, sender);
  put(b, {0, 0, 0, 0, 0, 0});
  put_ip4(b, target);
  return b;
}

constexpr const char* kMacA = "02:00:00:00:00:01";
constexpr const char* kMacB = "02:00:00:00:00:02";

std::vector<Packet> corpus() {
  std::vector<Packet> out;
  auto add = [&](std::string name, const Bytes& l3, std::uint16_t type = 0x0800, const char* dst = kMacB,
                 const char* src = kMacA, int vlan = -1) {
    out.push_back(Packet{name, ether(dst, src, type, l3, vlan), l3});
  };
  auto add6 = [&](std::string name, const Bytes& l3, const char* dst = kMacB) { add(name, l3, 0x86dd, dst); };

  add("ip4 tcp syn 10.1.2.3:40000->192.168.1.1:443", ip4("10.1.2.3", "192.168.1.1", tcp(40000, 443, 0x02)));
  add("ip4 tcp synack 192.168.1.1:443->10.1.2.3:40000", ip4("192.168.1.1", "10.1.2.3", tcp(443, 40000, 0x12)));
  add("ip4 tcp ack+data 10.1.2.3:40000->192.168.1.1:443", ip4("10.1.2.3", "192.168.1.1", tcp(40000, 443, 0x18, 100)));
  add("ip4 tcp fin 172.16.5.4:22->10.9.9.9:51000", ip4("172.16.5.4", "10.9.9.9", tcp(22, 51000, 0x11)));
  add("ip4 tcp rst 8.8.8.8:80->10.1.2.3:1234", ip4("8.8.8.8", "10.1.2.3", tcp(80, 1234, 0x04)));
  add("ip4 tcp 8080 with options", ip4("10.1.2.3", "10.9.9.9", tcp(5001, 8080, 0x10, 20), Ip4Opts{64, 0, 3}));
  add("ip4 tcp ttl 1", ip4("10.1.2.3", "192.168.1.1", tcp(1000, 80, 0x02), Ip4Opts{1}));
  add("ip4 udp dns query 10.1.2.3->8.8.8.8:53", ip4("10.1.2.3", "8.8.8.8", udp(5353, 53)));
  add("ip4 udp dns reply 8.8.8.8:53->10.1.2.3", ip4("8.8.8.8", "10.1.2.3", udp(53, 5353, std::string(200, 'r'))));
  add("ip4 udp dhcp broadcast", ip4("0.0.0.0", "255.255.255.255", udp(68, 67)), 0x0800, "ff:ff:ff:ff:ff:ff");
  add("ip4 udp 5050 pwru payload", ip4("192.168.1.1", "172.16.5.4", udp(5050, 9999, "pwru!")));
  add("ip4 udp multicast", ip4("10.1.2.3", "224.0.0.251", udp(5353, 5353)), 0x0800, "01:00:5e:00:00:fb");
  add("ip4 icmp echo 10.1.2.3->8.8.8.8", ip4("10.1.2.3", "8.8.8.8", icmp(8, 0)));
  add("ip4 icmp echoreply 8.8.8.8->10.1.2.3", ip4("8.8.8.8", "10.1.2.3", icmp(0, 0)));
  add("ip4 icmp port unreachable", ip4("192.168.1.1", "10.1.2.3", icmp(3, 3)));
  add("ip4 first fragment (MF)",
      ip4("10.1.2.3", "192.168.1.1", udp(7000, 443, std::string(64, 'f')), Ip4Opts{64, 0x2000}));
  add("ip4 later fragment (offset 8)", ip4("10.1.2.3", "192.168.1.1", udp(7000, 443), Ip4Opts{64, 0x0008}));
  add("ip4 DF set", ip4("10.1.2.3", "192.168.1.1", tcp(40000, 80, 0x02), Ip4Opts{64, 0x4000}));
  add("ip4 other proto (gre)", ip4("10.1.2.3", "10.9.9.9", L4{47, Bytes(24, 0)}));
  {
    Bytes t = ip4("10.1.2.3", "192.168.1.1", tcp(40000, 443, 0x02));
    t.resize(20 + 6);  // cut inside the TCP header: ports there, flags not
    add("ip4 tcp truncated in tcp header", t);
    Bytes t2 = ip4("10.1.2.3", "192.168.1.1", tcp(40000, 443, 0x02));
    t2.resize(12);  // cut inside the IP header
    add("ip4 truncated in ip header", t2);
  }
  add6("ip6 tcp syn 2001:db8::1->2001:db8::2:443", ip6("2001:db8::1", "2001:db8::2", tcp(40000, 443, 0x02)));
  add6("ip6 udp 53 fe80::1->2001:db8::1", ip6("fe80::1", "2001:db8::1", udp(5353, 53)));
  add6("ip6 icmp6 echo", ip6("2001:db8::1", "2001:db8::2", icmp6(128)));
  add6("ip6 icmp6 echoreply", ip6("2001:db8::2", "2001:db8::1", icmp6(129)));
  add6("ip6 hop-by-hop then tcp 80", ip6("2001:db8::1", "2001:db8::2", tcp(1234, 80, 0x02), true));
  add6("ip6 multicast udp", ip6("fe80::1", "ff02::1", udp(546, 547)), "33:33:00:00:00:01");
  add6("ip6 loopback tcp 22", ip6("::1", "::1", tcp(50000, 22, 0x10, 10)));
  {
    Bytes t = ip6("2001:db8::1", "2001:db8::2", tcp(40000, 443, 0x02));
    t.resize(30);
    add6("ip6 truncated in header", t);
  }
  add("arp request 10.1.2.3 -> 10.9.9.9", arp(1, "10.1.2.3", "10.9.9.9"), 0x0806, "ff:ff:ff:ff:ff:ff");
  add("arp reply 10.9.9.9 -> 10.1.2.3", arp(2, "10.9.9.9", "10.1.2.3"), 0x0806, kMacA, kMacB);
  add("vlan 100 ip4 tcp 443", ip4("10.1.2.3", "192.168.1.1", tcp(40000, 443, 0x02)), 0x0800, kMacB, kMacA, 100);
  add("vlan 200 ip4 udp 53", ip4("10.1.2.3", "8.8.8.8", udp(5353, 53)), 0x0800, kMacB, kMacA, 200);
  add("vlan 100 arp", arp(1, "10.1.2.3", "10.9.9.9"), 0x0806, "ff:ff:ff:ff:ff:ff", kMacA, 100);
  add("ip4 minimal (no payload)", ip4("10.1.2.3", "10.9.9.9", L4{6, {}}));
  out.push_back(Packet{"empty", {}, {}});
  out.push_back(Packet{"runt ether (10 bytes)", Bytes(10, 0xff), Bytes(4, 0x45)});
  return out;
}

std::vector<std::string> expressions() {
  std::ifstream in(PWRU_PCAP_EXPRESSIONS);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    out.push_back(line == "<empty>" ? "" : line);
  }
  return out;
}

bool libpcap_verdict(const CbpfProgram& program, const Bytes& bytes) {
  std::vector<struct bpf_insn> insns;
  for (const CbpfInsn& in : program) insns.push_back(bpf_insn{in.code, in.jt, in.jf, in.k});
  struct bpf_program fp {
    static_cast<unsigned>(insns.size()), insns.data()
  };
  struct pcap_pkthdr hdr {};
  hdr.caplen = hdr.len = static_cast<bpf_u_int32>(bytes.size());
  static const std::uint8_t empty = 0;
  return pcap_offline_filter(&fp, &hdr, bytes.empty() ? &empty : bytes.data()) != 0;
}

std::string hex(const Bytes& b) {
  std::string s;
  char buf[4];
  for (std::uint8_t v : b) {
    std::snprintf(buf, sizeof(buf), "%02x", v);
    s += buf;
  }
  return s;
}

TEST(PcapDifferential, KernelVerdictsEqualLibpcapOnEveryPacket) {
  const auto exprs = expressions();
  ASSERT_GE(exprs.size(), 200u) << "expressions file " << PWRU_PCAP_EXPRESSIONS;
  const auto packets = corpus();
  std::size_t compared = 0, matches_l2 = 0, mismatches = 0;
  for (const std::string& expr : exprs) {
    CompiledPcap compiled;
    try {
      compiled = compile_pcap(expr);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "libpcap rejected '" << expr << "': " << e.what();
      continue;
    }
    auto shared = std::make_shared<const CompiledPcap>(compiled);
    std::unique_ptr<testing::PcapHarness> harness;
    try {
      harness = std::make_unique<testing::PcapHarness>(shared);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "'" << expr << "' did not load: " << e.what() << "\nL2 cBPF:\n" << cbpf_listing(compiled.l2);
      continue;
    }
    for (const Packet& p : packets) {
      const bool want_l2 = libpcap_verdict(compiled.l2, p.frame);
      const bool want_l3 = compiled.l3_rejects_all ? false : libpcap_verdict(compiled.l3, p.l3);
      const bool got_l2 = harness->run(p.frame).l2;
      const bool got_l3 = harness->run(p.l3).l3;
      compared += 2;
      matches_l2 += want_l2;
      if (got_l2 != want_l2 || got_l3 != want_l3) {
        ++mismatches;
        if (mismatches <= 25)
          ADD_FAILURE() << "expression '" << expr << "', packet '" << p.name << "'\n  L2 libpcap=" << want_l2
                        << " ebpf=" << got_l2 << "  frame " << hex(p.frame) << "\n  L3 libpcap=" << want_l3
                        << " ebpf=" << got_l3 << "  packet " << hex(p.l3) << "\nL2 cBPF:\n"
                        << cbpf_listing(compiled.l2);
      }
    }
  }
  EXPECT_EQ(mismatches, 0u);
  // The corpus must exercise both outcomes, or the comparison proves little.
  EXPECT_GT(matches_l2, compared / 20);
  EXPECT_LT(matches_l2, compared / 2);
  std::printf("compared %zu verdicts (%zu expressions x %zu packets x L2/L3), %zu L2 matches, %zu mismatches\n",
              compared, exprs.size(), packets.size(), matches_l2, mismatches);
}

// Hand-checked verdicts, so a bug shared by libpcap's reading and ours
// (e.g. a corpus builder error) cannot hide everything.
TEST(PcapDifferential, KnownVerdicts) {
  const auto packets = corpus();
  auto verdict = [&](const std::string& expr, const std::string& name) {
    testing::PcapHarness h(std::make_shared<const CompiledPcap>(compile_pcap(expr)));
    for (const Packet& p : packets)
      if (p.name == name) return h.run(p.frame).l2;
    ADD_FAILURE() << "no packet " << name;
    return false;
  };
  EXPECT_TRUE(verdict("tcp and port 443", "ip4 tcp syn 10.1.2.3:40000->192.168.1.1:443"));
  EXPECT_FALSE(verdict("tcp and port 443", "ip4 udp dns query 10.1.2.3->8.8.8.8:53"));
  EXPECT_TRUE(verdict("tcp[tcpflags] & tcp-syn != 0", "ip4 tcp synack 192.168.1.1:443->10.1.2.3:40000"));
  EXPECT_FALSE(verdict("tcp[tcpflags] & tcp-syn != 0", "ip4 tcp fin 172.16.5.4:22->10.9.9.9:51000"));
  EXPECT_TRUE(verdict("arp", "arp request 10.1.2.3 -> 10.9.9.9"));
  EXPECT_TRUE(verdict("vlan 100", "vlan 100 ip4 tcp 443"));
  EXPECT_FALSE(verdict("vlan 100", "vlan 200 ip4 udp 53"));
  EXPECT_TRUE(verdict("ip6 and tcp and port 443", "ip6 tcp syn 2001:db8::1->2001:db8::2:443"));
  EXPECT_FALSE(verdict("tcp[tcpflags] & tcp-syn != 0", "ip4 tcp truncated in tcp header"));
  EXPECT_TRUE(verdict("", "arp request 10.1.2.3 -> 10.9.9.9"));
}

}  // namespace
}  // namespace pwru
