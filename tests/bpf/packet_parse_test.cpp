// The tracer's packet parsing without traffic: fill_tuple (with the packet's
// identity, pwru_part_ident), fill_tunnel_tuple and capture_packet (bpf/skb_event.bpf.h) run in the kernel with
// BPF_PROG_TEST_RUN on a fake sk_buff around packets built here
// (bpf/pwru_parse_test.bpf.c), and their results are compared with a parse
// in user space written from the protocols, not from the BPF code.
//
// The bytes after the skb's tail are never blank in these tests: a real skb
// buffer holds stale bytes there (or the start of data that lives in page
// fragments), so each test puts something there a careless reader would
// take for packet bytes.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "packet_bytes.h"
#include "pwru_abi.h"
#include "pwru_parse_test.skel.h"

namespace pwru {
namespace {

using testing::Bytes;
using testing::put16;
using testing::put32;

constexpr std::uint16_t kUnset = 0xffff;  // skb header offset "not set"
constexpr std::uint16_t kEthIp = 0x0800;
constexpr std::uint16_t kEthIpv6 = 0x86DD;
constexpr std::uint16_t kEthArp = 0x0806;
constexpr std::uint16_t kEthVlan = 0x8100;
constexpr std::uint16_t kEthQinQ = 0x88A8;
constexpr std::uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58, kGre = 47;
constexpr std::uint8_t kHopByHop = 0, kRouting = 43, kFragment = 44, kAuth = 51, kDestOpts = 60, kNoNext = 59;

// ---- building packets ------------------------------------------------------

void append(Bytes& b, const Bytes& more) { b.insert(b.end(), more.begin(), more.end()); }
std::uint16_t get16(const Bytes& b, std::size_t at) { return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]); }
std::uint32_t get32(const Bytes& b, std::size_t at) { return std::uint32_t{get16(b, at)} << 16 | get16(b, at + 2); }

Bytes ip4_addr(const char* s) {
  in_addr a{};
  if (inet_pton(AF_INET, s, &a) != 1) throw std::invalid_argument(s);
  const auto* p = reinterpret_cast<const std::uint8_t*>(&a);
  return Bytes(p, p + 4);
}
Bytes ip6_addr(const char* s) {
  in6_addr a{};
  if (inet_pton(AF_INET6, s, &a) != 1) throw std::invalid_argument(s);
  return Bytes(a.s6_addr, a.s6_addr + 16);
}

struct L4 {
  std::uint8_t proto;
  Bytes bytes;
};

L4 tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put32(b, 0x01020304);
  put32(b, 0x05060708);
  b.push_back(0x50);
  b.push_back(flags);
  put16(b, 64240);
  put16(b, 0);
  put16(b, 0);
  b.insert(b.end(), {'d', 'a', 't', 'a'});
  return {kTcp, b};
}
L4 udp(std::uint16_t sport, std::uint16_t dport) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, 12);
  put16(b, 0);
  b.insert(b.end(), {'p', 'w', 'r', 'u'});
  return {kUdp, b};
}
// ICMP and ICMPv6 echo: the identifier and sequence sit where ports would.
L4 icmp_echo(std::uint8_t proto, std::uint8_t type) {
  Bytes b{type, 0, 0, 0};
  put16(b, 0x1234);
  put16(b, 7);
  return {proto, b};
}
L4 opaque(std::uint8_t proto) { return {proto, Bytes{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}}; }

struct Ip4Options {
  std::uint8_t ihl = 5;
  std::uint16_t frag = 0;  // flags and offset, host order
};

Bytes ipv4(const char* src, const char* dst, const L4& l4, Ip4Options o = {}) {
  Bytes b;
  b.push_back(static_cast<std::uint8_t>(0x40 | (o.ihl & 0x0f)));
  b.push_back(0);
  const std::size_t header = o.ihl >= 5 ? o.ihl * 4u : 20u;
  put16(b, static_cast<std::uint16_t>(header + l4.bytes.size()));
  put16(b, 0x4242);
  put16(b, o.frag);
  b.push_back(64);
  b.push_back(l4.proto);
  put16(b, 0);
  append(b, ip4_addr(src));
  append(b, ip4_addr(dst));
  // Options: NOPs, then the option list's end, as a sender pads them.
  while (b.size() < header) b.push_back(b.size() + 1 == header ? 0x00 : 0x01);
  append(b, l4.bytes);
  return b;
}

struct Ext {
  std::uint8_t type;
  std::uint16_t frag = 0;  // fragment header: offset (in 8-byte units) << 3 | M flag
  std::uint8_t len8 = 0;   // others: length in 8-byte units, not counting the first
                           // (AH: its ICV, in 4-byte units)
};

// flow_label: with a traffic class next to it (DSCP EF), which the label must not take in.
Bytes ipv6(const char* src, const char* dst, const L4& l4, const std::vector<Ext>& chain = {},
           std::uint32_t flow_label = 0) {
  Bytes exts;
  for (std::size_t i = 0; i < chain.size(); ++i) {
    const std::uint8_t next = i + 1 < chain.size() ? chain[i + 1].type : l4.proto;
    exts.push_back(next);
    if (chain[i].type == kFragment) {
      exts.push_back(0);
      put16(exts, chain[i].frag);
      put32(exts, 0xfeedf00d);
      continue;
    }
    if (chain[i].type == kAuth) {
      // RFC 4302: its length in 4-byte units, not counting the first two.
      const std::size_t total = 12 + 4u * chain[i].len8;
      exts.push_back(static_cast<std::uint8_t>(total / 4 - 2));
      put16(exts, 0);
      put32(exts, 0x1000);                                  // SPI
      put32(exts, 1);                                       // sequence number
      exts.resize(exts.size() + 4u * chain[i].len8, 0x1c);  // ICV
      continue;
    }
    exts.push_back(chain[i].len8);
    // Padding options (PadN) filling the header: no option to act on.
    const std::size_t body = 6 + 8u * chain[i].len8;
    exts.push_back(1);
    exts.push_back(static_cast<std::uint8_t>(body - 2));
    exts.resize(exts.size() + body - 2, 0);
  }
  Bytes b;
  put32(b, 6u << 28 | (flow_label ? 0xb8u << 20 : 0) | (flow_label & 0xfffff));
  put16(b, static_cast<std::uint16_t>(exts.size() + l4.bytes.size()));
  b.push_back(chain.empty() ? l4.proto : chain[0].type);
  b.push_back(64);
  append(b, ip6_addr(src));
  append(b, ip6_addr(dst));
  append(b, exts);
  append(b, l4.bytes);
  return b;
}

Bytes ethernet(std::uint16_t type) {
  Bytes b{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1};
  put16(b, type);
  return b;
}

// ---- the fake skb ----------------------------------------------------------

// An skb as the helpers see it; offsets are from head, as in the kernel.
struct Skb {
  Bytes head;  // the linear buffer up to tail and beyond (past tail: not packet)
  std::uint32_t tail = 0;
  std::uint32_t data_off = 0;
  std::uint32_t len = 0;  // from data, linear or not
  std::uint16_t mac = kUnset;
  std::uint16_t network = kUnset;
  std::uint16_t inner_network = 0;
  std::uint16_t protocol = 0;  // host order
};

// A received frame at the early hooks: MAC header at 0, data at the
// network header, everything linear. `stale` follows tail.
Skb received(std::uint16_t protocol, const Bytes& frame, const Bytes& stale = Bytes(64, 0xa5)) {
  Skb s;
  s.head = frame;
  append(s.head, stale);
  s.tail = static_cast<std::uint32_t>(frame.size());
  s.mac = 0;
  s.network = 14;
  s.data_off = 14;
  s.len = s.tail - s.data_off;
  s.protocol = protocol;
  return s;
}

Skb received_ip(const Bytes& l3, const Bytes& stale = Bytes(64, 0xa5)) {
  const std::uint16_t type = (l3.at(0) >> 4) == 6 ? kEthIpv6 : kEthIp;
  Bytes frame = ethernet(type);
  append(frame, l3);
  return received(type, frame, stale);
}

struct Tuple {
  bool present = false;  // l3_proto set: the helper recognised an IP header
  std::uint16_t l3_proto = 0;
  std::uint8_t l4_proto = 0;
  Bytes saddr = Bytes(16, 0), daddr = Bytes(16, 0);
  std::uint16_t sport = 0, dport = 0;  // host order
  std::uint8_t tcp_flags = 0;

  bool operator==(const Tuple&) const = default;
};

std::string hex(const Bytes& b) {
  std::ostringstream out;
  for (auto c : b) out << std::hex << std::setw(2) << std::setfill('0') << int(c);
  return out.str();
}

void PrintTo(const Tuple& t, std::ostream* out) {
  if (!t.present && t == Tuple{}) {
    *out << "{no tuple}";
    return;
  }
  *out << "{l3 " << std::hex << t.l3_proto << std::dec << " l4 " << int(t.l4_proto) << " " << hex(t.saddr) << ":"
       << t.sport << " > " << hex(t.daddr) << ":" << t.dport << " flags " << int(t.tcp_flags) << "}";
}

Tuple from_bpf(const pwru_tuple& t) {
  Tuple r;
  r.l3_proto = t.l3_proto;
  r.present = t.l3_proto != 0;
  r.l4_proto = t.l4_proto;
  r.saddr.assign(t.saddr, t.saddr + 16);
  r.daddr.assign(t.daddr, t.daddr + 16);
  r.sport = ntohs(t.sport);
  r.dport = ntohs(t.dport);
  r.tcp_flags = t.tcp_flags;
  return r;
}

// pwru_part_ident, host order.
struct Ident {
  std::uint32_t seq = 0, ack = 0, flow_label = 0;
  std::uint16_t ip_id = 0, l4_payload = 0;

  bool operator==(const Ident&) const = default;
};

void PrintTo(const Ident& i, std::ostream* out) {
  *out << "{seq " << std::hex << i.seq << " ack " << i.ack << " flow " << i.flow_label << " id " << i.ip_id << std::dec
       << " payload " << i.l4_payload << "}";
}

struct Capture {
  std::uint32_t packet_len = 0;
  std::uint16_t capture_len = 0;
  std::uint8_t from = PWRU_CAPTURE_NONE;
  Bytes data;  // the capture_len bytes written
  bool wrote_past_len = false;
};

struct Result {
  Tuple tuple;
  Ident ident;
  Tuple tunnel;
  Capture capture;
};

constexpr std::uint8_t kUntouched = 0xcc;

class ParseHarness {
 public:
  // capture_bytes: filter_cfg.capture_bytes, fixed at load as in a trace.
  explicit ParseHarness(std::uint16_t capture_bytes = PWRU_CAPTURE_MAX - 1) {
    skel_ = pwru_parse_test__open();
    if (!skel_) throw std::runtime_error("opening the parse test object failed");
    // The program uses only its globals; the tracer's maps (an 8 MiB ring,
    // a stack map) come with the header and need not exist.
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, skel_->obj) {
      if (map != skel_->maps.bss && map != skel_->maps.rodata) bpf_map__set_autocreate(map, false);
    }
    skel_->rodata->filter_cfg.capture_bytes = capture_bytes;
    if (const int err = pwru_parse_test__load(skel_)) {
      pwru_parse_test__destroy(skel_);
      throw std::runtime_error("loading the parse test program failed: " + std::string(std::strerror(-err)));
    }
  }
  ~ParseHarness() { pwru_parse_test__destroy(skel_); }
  ParseHarness(const ParseHarness&) = delete;
  ParseHarness& operator=(const ParseHarness&) = delete;

  Result run(const Skb& skb) {
    auto* bss = skel_->bss;
    if (skb.head.size() > sizeof(bss->packet)) throw std::runtime_error("test packet too large");
    std::memset(bss->packet, 0, sizeof(bss->packet));
    std::memcpy(bss->packet, skb.head.data(), skb.head.size());
    bss->skb_len = skb.len;
    bss->skb_data_off = skb.data_off;
    bss->skb_tail = skb.tail;
    bss->skb_network_header = skb.network;
    bss->skb_mac_header = skb.mac;
    bss->skb_inner_network_header = skb.inner_network;
    bss->skb_protocol = htons(skb.protocol);
    std::memset(&bss->tuple, kUntouched, sizeof(bss->tuple));
    std::memset(&bss->ident, kUntouched, sizeof(bss->ident));
    std::memset(&bss->tunnel_tuple, kUntouched, sizeof(bss->tunnel_tuple));
    std::memset(&bss->capture, kUntouched, sizeof(bss->capture));
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    const int err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.pwru_parse_run), &opts);
    if (err) throw std::runtime_error("BPF_PROG_TEST_RUN failed: " + std::string(std::strerror(-err)));
    if (bss->layout_ok != 1) throw std::runtime_error("the kernel's sk_buff does not fit the fake skb");
    Result r;
    r.tuple = from_bpf(bss->tuple);
    r.tunnel = from_bpf(bss->tunnel_tuple);
    r.ident = Ident{bss->ident.seq, bss->ident.ack, bss->ident.flow_label, bss->ident.ip_id, bss->ident.l4_payload};
    const auto& c = bss->capture;
    r.capture.packet_len = c.packet_len;
    r.capture.capture_len = c.capture_len;
    r.capture.from = c.capture_from;
    const std::size_t n = std::min<std::size_t>(c.capture_len, sizeof(c.data));
    r.capture.data.assign(c.data, c.data + n);
    r.capture.wrote_past_len =
        std::any_of(c.data + n, c.data + sizeof(c.data), [](std::uint8_t v) { return v != kUntouched; });
    return r;
  }

 private:
  pwru_parse_test* skel_ = nullptr;
};

// ---- the user-space parse ----------------------------------------------------

// What a tuple holds when read correctly from the IP header at `l3`, with
// only the bytes before `end` (skb->tail) being the packet's: nothing when
// the IP header is not all there; addresses without ports when the ports
// are not, or the packet is a later fragment; the upper-layer protocol
// behind any IPv6 extension headers.
// `id` gets what tells the packet from others of its flow: IPv4's ID, IPv6's
// flow label, TCP's sequence and acknowledgement numbers, an ICMP echo's
// identifier and sequence, and the length the IP header gives for what
// follows the IP and extension headers (less TCP's header), never below 0.
Tuple parse_ip(const Bytes& b, std::size_t l3, std::size_t end, int expected_version, Ident* id = nullptr) {
  Ident unused;
  if (!id) id = &unused;
  std::size_t payload = 0;
  const auto set_payload = [&](long n) { id->l4_payload = static_cast<std::uint16_t>(std::max(0L, n)); };
  Tuple t;
  if (l3 >= end) return t;
  const int version = b[l3] >> 4;
  if (expected_version && version != expected_version) return t;
  std::size_t l4;
  if (version == 4) {
    const std::size_t ihl = (b[l3] & 0x0f) * 4u;
    if (end - l3 < 20 || ihl < 20) return t;
    t.present = true;
    t.l3_proto = kEthIp;
    std::copy_n(b.begin() + l3 + 12, 4, t.saddr.begin());
    std::copy_n(b.begin() + l3 + 16, 4, t.daddr.begin());
    t.l4_proto = b[l3 + 9];
    id->ip_id = get16(b, l3 + 4);
    payload = get16(b, l3 + 2);
    set_payload(long(payload) - long(ihl));
    if (get16(b, l3 + 6) & 0x1fff) return t;
    l4 = l3 + ihl;
  } else if (version == 6) {
    if (end - l3 < 40) return t;
    t.present = true;
    t.l3_proto = kEthIpv6;
    std::copy_n(b.begin() + l3 + 8, 16, t.saddr.begin());
    std::copy_n(b.begin() + l3 + 24, 16, t.daddr.begin());
    std::uint8_t next = b[l3 + 6];
    id->flow_label = get32(b, l3) & 0xfffff;
    payload = get16(b, l3 + 4);
    l4 = l3 + 40;
    // The extension headers walked are not the transport's payload.
    const auto walked = [&] { set_payload(long(payload) - long(l4 - l3 - 40)); };
    while (next == kHopByHop || next == kRouting || next == kDestOpts || next == kFragment || next == kAuth) {
      t.l4_proto = next;
      if (next == kFragment) {
        if (l4 + 8 > end) {
          walked();
          return t;
        }
        next = b[l4];
        const bool later_fragment = get16(b, l4 + 2) & 0xfff8;
        l4 += 8;
        if (later_fragment) {
          t.l4_proto = next;
          {
            walked();
            return t;
          }
        }
      } else {
        if (l4 + 2 > end) {
          walked();
          return t;
        }
        const std::uint8_t type = next;
        next = b[l4];
        l4 += type == kAuth ? (b[l4 + 1] + 2u) * 4 : (b[l4 + 1] + 1u) * 8;
      }
    }
    t.l4_proto = next;
    walked();
  } else {
    return t;
  }
  if ((t.l4_proto == kTcp || t.l4_proto == kUdp) && l4 + 4 <= end) {
    t.sport = get16(b, l4);
    t.dport = get16(b, l4 + 2);
    if (t.l4_proto == kTcp && l4 + 14 <= end) {
      t.tcp_flags = b[l4 + 13];
      id->seq = get32(b, l4 + 4);
      id->ack = get32(b, l4 + 8);
      set_payload(long(id->l4_payload) - long((b[l4 + 12] >> 4) * 4));
    }
  }
  // ICMP echo (request or reply) of the IP version it belongs to.
  const bool icmp = version == 4 ? t.l4_proto == kIcmp : t.l4_proto == kIcmpv6;
  if (icmp && l4 + 8 <= end) {
    const std::uint8_t type = b[l4];
    if (version == 4 ? type == 8 || type == 0 : type == 128 || type == 129) id->seq = get32(b, l4 + 4);
  }
  return t;
}

// The tuple of the skb's packet: its protocol says what is at the network
// header; VLAN tags (802.1Q and 802.1ad, nested) are followed to the IP
// header behind them.
Tuple reference_tuple(const Skb& s, Ident* id = nullptr) {
  if (s.network == kUnset) return {};
  std::size_t l3 = s.network;
  std::uint16_t protocol = s.protocol;
  while (protocol == kEthVlan || protocol == kEthQinQ) {
    if (l3 + 4 > s.tail) return {};
    protocol = get16(s.head, l3 + 2);
    l3 += 4;
  }
  if (protocol == kEthIp) return parse_ip(s.head, l3, s.tail, 4, id);
  if (protocol == kEthIpv6) return parse_ip(s.head, l3, s.tail, 6, id);
  return {};
}

Ident reference_ident(const Skb& s) {
  Ident id;
  reference_tuple(s, &id);
  return id;
}

Tuple reference_tunnel_tuple(const Skb& s) {
  if (s.inner_network == 0) return {};
  return parse_ip(s.head, s.inner_network, s.tail, 0);
}

// What --output-pcap should hold: the packet from its network header (from
// its MAC header when it has none), as much of it as is linear, at most
// capture_bytes and what a record holds.
Capture reference_capture(const Skb& s, std::size_t capture_bytes) {
  Capture c;
  std::size_t start;
  if (s.network != kUnset) {
    start = s.network;
    c.from = PWRU_CAPTURE_L3;
  } else if (s.mac != kUnset) {
    start = s.mac;
    c.from = PWRU_CAPTURE_L2;
  } else {
    return Capture{};
  }
  const long packet = long(s.data_off) + long(s.len) - long(start);
  if (packet <= 0 || s.tail <= start) return Capture{};
  const std::size_t n =
      std::min({std::size_t(s.tail - start), std::size_t(packet), capture_bytes, std::size_t(PWRU_CAPTURE_MAX - 1)});
  c.packet_len = static_cast<std::uint32_t>(packet);
  c.capture_len = static_cast<std::uint16_t>(n);
  c.data.assign(s.head.begin() + start, s.head.begin() + start + n);
  return c;
}

void expect_tuple(ParseHarness& h, const Skb& skb, const std::string& what) {
  const Result r = h.run(skb);
  EXPECT_EQ(r.tuple, reference_tuple(skb)) << what;
  EXPECT_EQ(r.ident, reference_ident(skb)) << what;
}

class PacketParse : public ::testing::Test {
 protected:
  ParseHarness harness;
};

// ---- tuples ------------------------------------------------------------------

TEST_F(PacketParse, Ipv4TransportsGiveAddressesPortsAndFlags) {
  const auto syn_ack = received_ip(ipv4("10.0.0.1", "192.168.7.9", tcp(40000, 443, 0x12)));
  const Result r = harness.run(syn_ack);
  // Spelled out once, so that the reference parse is checked too.
  EXPECT_TRUE(r.tuple.present);
  EXPECT_EQ(r.tuple.l3_proto, kEthIp);
  EXPECT_EQ(r.tuple.l4_proto, kTcp);
  EXPECT_EQ(Bytes(r.tuple.saddr.begin(), r.tuple.saddr.begin() + 4), ip4_addr("10.0.0.1"));
  EXPECT_EQ(Bytes(r.tuple.daddr.begin(), r.tuple.daddr.begin() + 4), ip4_addr("192.168.7.9"));
  EXPECT_EQ(r.tuple.sport, 40000);
  EXPECT_EQ(r.tuple.dport, 443);
  EXPECT_EQ(r.tuple.tcp_flags, 0x12);
  EXPECT_EQ(r.tuple, reference_tuple(syn_ack));

  expect_tuple(harness, received_ip(ipv4("1.2.3.4", "5.6.7.8", udp(53, 65535))), "udp");
  expect_tuple(harness, received_ip(ipv4("1.2.3.4", "5.6.7.8", icmp_echo(kIcmp, 8))), "icmp echo: no ports");
  expect_tuple(harness, received_ip(ipv4("1.2.3.4", "5.6.7.8", opaque(kGre))), "gre: no ports");
  expect_tuple(harness, received_ip(ipv4("1.2.3.4", "5.6.7.8", tcp(1, 2, 0xff))), "all tcp flags");
}

TEST_F(PacketParse, Ipv4OptionsMoveTheTransportHeader) {
  for (std::uint8_t ihl = 5; ihl <= 15; ++ihl) {
    const Ip4Options o{.ihl = ihl};
    expect_tuple(harness, received_ip(ipv4("10.1.1.1", "10.2.2.2", tcp(1000 + ihl, 80, 0x02), o)),
                 "tcp, ihl " + std::to_string(ihl));
    expect_tuple(harness, received_ip(ipv4("10.1.1.1", "10.2.2.2", udp(2000 + ihl, 53), o)),
                 "udp, ihl " + std::to_string(ihl));
  }
}

// A header length under 5 words is no IPv4 header (ip_rcv drops it as
// IP_INHDR, a drop pwru users trace); its "transport header" would be
// inside the IP header.
TEST_F(PacketParse, Ipv4HeaderLengthBelowFiveIsNotAHeader) {
  for (std::uint8_t ihl = 0; ihl < 5; ++ihl) {
    expect_tuple(harness, received_ip(ipv4("10.1.1.1", "10.2.2.2", tcp(1000, 80, 0x02), {.ihl = ihl})),
                 "ihl " + std::to_string(ihl));
  }
}

TEST_F(PacketParse, Ipv4FragmentsCarryPortsOnlyInTheFirst) {
  constexpr std::uint16_t kMore = 0x2000, kDontFragment = 0x4000;
  const struct {
    std::uint16_t frag;
    const char* what;
  } cases[] = {
      {kMore, "first fragment"},
      {kMore | 185, "middle fragment"},
      {370, "last fragment"},
      {1, "fragment at offset 8"},
      {0x1fff, "fragment at the largest offset"},
      {kDontFragment, "DF, not a fragment"},
      {kDontFragment | kMore | 3, "DF and MF on a later fragment"},
  };
  for (const auto& c : cases) {
    // A later fragment's payload is data; TCP/UDP-looking bytes there are
    // not ports.
    expect_tuple(harness, received_ip(ipv4("172.16.0.1", "172.16.0.2", tcp(5555, 6666, 0x18), {.frag = c.frag})),
                 std::string("tcp ") + c.what);
    expect_tuple(harness, received_ip(ipv4("172.16.0.1", "172.16.0.2", udp(5555, 6666), {.frag = c.frag})),
                 std::string("udp ") + c.what);
  }
}

TEST_F(PacketParse, Ipv6TransportsGiveAddressesPortsAndFlags) {
  const auto syn = received_ip(ipv6("fd00::1", "2001:db8::ffff:1", tcp(33000, 22, 0x02)));
  const Result r = harness.run(syn);
  EXPECT_EQ(r.tuple.l3_proto, kEthIpv6);
  EXPECT_EQ(r.tuple.l4_proto, kTcp);
  EXPECT_EQ(r.tuple.saddr, ip6_addr("fd00::1"));
  EXPECT_EQ(r.tuple.daddr, ip6_addr("2001:db8::ffff:1"));
  EXPECT_EQ(r.tuple.sport, 33000);
  EXPECT_EQ(r.tuple.dport, 22);
  EXPECT_EQ(r.tuple.tcp_flags, 0x02);
  EXPECT_EQ(r.tuple, reference_tuple(syn));

  expect_tuple(harness, received_ip(ipv6("fe80::1", "ff02::1", udp(546, 547))), "udp");
  expect_tuple(harness, received_ip(ipv6("fd00::1", "fd00::2", icmp_echo(kIcmpv6, 128))), "icmpv6 echo");
  expect_tuple(harness, received_ip(ipv6("fd00::1", "fd00::2", opaque(kNoNext))), "no next header");
}

std::vector<std::pair<std::string, std::vector<Ext>>> extension_chains() {
  return {
      {"hop-by-hop", {{kHopByHop}}},
      {"routing", {{kRouting, 0, 2}}},
      {"destination options", {{kDestOpts, 0, 1}}},
      {"first fragment", {{kFragment, 0x0001}}},
      {"later fragment", {{kFragment, 0x0009}}},
      {"hop-by-hop, routing", {{kHopByHop}, {kRouting, 0, 2}}},
      {"hop-by-hop, dest, routing, fragment", {{kHopByHop}, {kDestOpts}, {kRouting, 0, 2}, {kFragment, 0x0001}}},
      {"six headers", {{kHopByHop}, {kDestOpts}, {kRouting}, {kRouting}, {kDestOpts}, {kFragment}}},
      // AH counts 4-byte units: read as 8-byte ones, either length misses the transport.
      {"AH, 96-bit ICV", {{kAuth, 0, 3}}},
      {"AH, 32-bit ICV", {{kAuth, 0, 1}}},
      {"RFC 8200 order: hop-by-hop, dest, routing, fragment, AH, dest",
       {{kHopByHop}, {kDestOpts}, {kRouting, 0, 2}, {kFragment, 0x0001}, {kAuth, 0, 3}, {kDestOpts}}},
      {"AH, later fragment", {{kAuth, 0, 3}, {kFragment, 0x0101}}},
  };
}

// The upper-layer protocol and its ports come from behind the extension
// headers; a later fragment has the protocol and no ports.
TEST_F(PacketParse, Ipv6ExtensionHeadersAreWalkedToTheTransport) {
  for (const auto& [what, chain] : extension_chains()) {
    expect_tuple(harness, received_ip(ipv6("2001:db8::a", "2001:db8::b", tcp(4000, 80, 0x10), chain)), what + " tcp");
    expect_tuple(harness, received_ip(ipv6("2001:db8::a", "2001:db8::b", udp(4000, 53), chain)), what + " udp");
  }
}

// The walk is bounded (PWRU_IPV6_MAX_EXT_HEADERS, a verifier and per-hit
// cost): a chain that long is walked to its end, one header more stops at
// that header, with the addresses and without ports.
TEST_F(PacketParse, Ipv6ExtensionWalkStopsAtItsBound) {
  std::vector<Ext> chain(PWRU_IPV6_MAX_EXT_HEADERS, Ext{kDestOpts});
  chain.front() = Ext{kHopByHop};
  expect_tuple(harness, received_ip(ipv6("2001:db8::a", "2001:db8::b", tcp(4000, 80, 0x10), chain)),
               "a chain as long as the bound");
  chain.push_back(Ext{kRouting});
  const Result r = harness.run(received_ip(ipv6("2001:db8::a", "2001:db8::b", tcp(4000, 80, 0x10), chain)));
  EXPECT_EQ(r.tuple.l3_proto, kEthIpv6);
  EXPECT_EQ(r.tuple.saddr, ip6_addr("2001:db8::a"));
  EXPECT_EQ(r.tuple.daddr, ip6_addr("2001:db8::b"));
  EXPECT_EQ(r.tuple.l4_proto, kRouting) << "the header the walk stopped at";
  EXPECT_EQ(r.tuple.sport, 0);
  EXPECT_EQ(r.tuple.dport, 0);
  EXPECT_EQ(r.tuple.tcp_flags, 0);
}

Bytes vlan_tag(std::uint16_t tci, std::uint16_t inner_type) {
  Bytes b;
  put16(b, tci);
  put16(b, inner_type);
  return b;
}

// skb->protocol 802.1Q with the tag in the packet (no hardware offload):
// the network header is the tag, the IP header follows it.
Skb tagged(const std::vector<std::pair<std::uint16_t, std::uint16_t>>& tags, const Bytes& l3,
           std::uint16_t outer_type = kEthVlan) {
  Bytes frame = ethernet(outer_type);
  for (const auto& [tci, inner] : tags) append(frame, vlan_tag(tci, inner));
  append(frame, l3);
  return received(outer_type, frame);
}

TEST_F(PacketParse, VlanTaggedFramesGiveTheInnerTuple) {
  expect_tuple(harness, tagged({{100, kEthIp}}, ipv4("10.0.0.1", "10.0.0.2", tcp(1234, 80, 0x02))), "802.1Q ipv4");
  expect_tuple(harness, tagged({{0xe064, kEthIpv6}}, ipv6("fd00::1", "fd00::2", udp(1234, 53))),
               "802.1Q ipv6, priority 7");
  Bytes arp{0, 1, 8, 0, 6, 4, 0, 1};
  arp.resize(28, 0);
  expect_tuple(harness, tagged({{100, kEthArp}}, arp), "802.1Q arp: no tuple");
}

std::vector<std::pair<std::string, Skb>> stacked_vlans() {
  const Bytes inner = ipv4("10.0.0.1", "10.0.0.2", tcp(1234, 80, 0x02));
  return {
      {"802.1Q in 802.1Q, inner PCP 2", tagged({{100, kEthVlan}, {0x40c8, kEthIp}}, inner)},
      {"802.1Q in 802.1Q, inner PCP 3", tagged({{100, kEthVlan}, {0x60c8, kEthIp}}, inner)},
      {"802.1ad", tagged({{100, kEthVlan}, {200, kEthIp}}, inner, kEthQinQ)},
      {"802.1ad, one tag", tagged({{100, kEthIp}}, inner, kEthQinQ)},
      {"802.1ad in 802.1ad, ipv6",
       tagged({{100, kEthQinQ}, {200, kEthIpv6}}, ipv6("fd00::1", "fd00::2", udp(1234, 53)), kEthQinQ)},
  };
}

// QinQ: 802.1ad and 802.1Q tags, stacked, are followed to the IP header;
// a tag's priority bits (PCP 2 or 3) are never taken for a version.
TEST_F(PacketParse, StackedVlanTagsGiveTheInnerTuple) {
  for (const auto& [what, skb] : stacked_vlans()) expect_tuple(harness, skb, what);
}

// PWRU_MAX_VLAN_TAGS tags are followed; behind one more there is no tuple,
// rather than the third tag read as an IP header.
TEST_F(PacketParse, VlanTagsPastTheBoundGiveNoTuple) {
  std::vector<std::pair<std::uint16_t, std::uint16_t>> tags;
  for (int i = 0; i < PWRU_MAX_VLAN_TAGS; ++i) tags.push_back({0x4064, kEthVlan});
  tags.push_back({0x6064, kEthIp});
  const Result r = harness.run(tagged(tags, ipv4("10.0.0.1", "10.0.0.2", tcp(1234, 80, 0x02)), kEthQinQ));
  EXPECT_FALSE(r.tuple.present);
  EXPECT_EQ(r.tuple, Tuple{});
}

// A protocol that says IP, a header that says otherwise: no tuple either way.
TEST_F(PacketParse, NonIpAndMismatchedHeadersGiveNoTuple) {
  const Bytes v4 = ipv4("10.0.0.1", "10.0.0.2", udp(1, 2));
  const Bytes v6 = ipv6("fd00::1", "fd00::2", udp(1, 2));
  Bytes frame = ethernet(kEthIp);
  append(frame, v6);
  expect_tuple(harness, received(kEthIp, frame), "protocol IPv4, IPv6 header");
  frame = ethernet(kEthIpv6);
  append(frame, v4);
  expect_tuple(harness, received(kEthIpv6, frame), "protocol IPv6, IPv4 header");
  frame = ethernet(kEthArp);
  append(frame, v4);
  expect_tuple(harness, received(kEthArp, frame), "protocol ARP, IPv4-looking bytes");

  Skb no_network = received_ip(v4);
  no_network.network = kUnset;
  const Result r = harness.run(no_network);
  EXPECT_FALSE(r.tuple.present);
  EXPECT_EQ(r.tuple, Tuple{});
}

// --output-tunnel: the inner headers of a VXLAN packet, where the
// encapsulating path recorded them.
TEST_F(PacketParse, TunnelTupleComesFromTheInnerNetworkHeader) {
  for (const Bytes& inner_l3 :
       {ipv4("192.168.0.1", "192.168.0.2", tcp(7000, 8000, 0x11)), ipv6("fd00:1::1", "fd00:1::2", udp(7000, 8000))}) {
    Bytes inner_frame = ethernet((inner_l3[0] >> 4) == 6 ? kEthIpv6 : kEthIp);
    append(inner_frame, inner_l3);
    Bytes vxlan{0x08, 0, 0, 0, 0, 0, 42, 0};
    append(vxlan, inner_frame);
    L4 outer_udp = udp(49152, 4789);
    outer_udp.bytes.resize(8);
    append(outer_udp.bytes, vxlan);
    Skb s = received_ip(ipv4("10.0.0.1", "10.0.0.2", outer_udp));
    s.inner_network = static_cast<std::uint16_t>(14 + 20 + 8 + 8 + 14);
    const Result r = harness.run(s);
    EXPECT_EQ(r.tuple, reference_tuple(s));
    EXPECT_EQ(r.tunnel, reference_tunnel_tuple(s));
    EXPECT_TRUE(r.tunnel.present);
    EXPECT_EQ(r.tunnel.sport, 7000);
  }
  const Skb plain = received_ip(ipv4("10.0.0.1", "10.0.0.2", udp(1, 2)));
  EXPECT_EQ(harness.run(plain).tunnel, Tuple{}) << "not tunnel traffic: no inner tuple";
}

// Every cut of a packet's linear data, from no byte of it to all of them.
// The bytes past tail are the rest of the packet, as when it continues in
// page fragments or the buffer held it before: none of it is the linear
// packet the helper was given.
void expect_every_cut(ParseHarness& h, const Skb& whole, const std::string& what) {
  for (std::uint32_t tail = whole.network; tail <= whole.tail; ++tail) {
    Skb cut = whole;
    cut.tail = tail;
    cut.len = tail - cut.data_off;
    const Result r = h.run(cut);
    EXPECT_EQ(r.tuple, reference_tuple(cut)) << what << " cut to " << (tail - whole.network) << " bytes";
    EXPECT_EQ(r.ident, reference_ident(cut)) << what << " cut to " << (tail - whole.network) << " bytes";
  }
}
void expect_every_cut(ParseHarness& h, const Bytes& l3, const std::string& what) {
  expect_every_cut(h, received_ip(l3, Bytes{}), what);
}

// A packet shorter than its headers (a runt PKT_TOO_SMALL drops, headers
// left in page fragments) gets a tuple only from the bytes it holds: none
// without the whole fixed IP header, no ports without them, the extension
// header a cut one stops at.
TEST_F(PacketParse, TruncatedPacketsGiveOnlyWhatTheyHold) {
  expect_every_cut(harness, ipv4("10.0.0.1", "10.0.0.2", tcp(1111, 2222, 0x02), {.ihl = 7}), "ipv4 tcp, ihl 7");
  expect_every_cut(harness, ipv4("10.0.0.1", "10.0.0.2", udp(1111, 2222)), "ipv4 udp");
  expect_every_cut(harness, ipv6("fd00::1", "fd00::2", tcp(1111, 2222, 0x02)), "ipv6 tcp");
  expect_every_cut(harness,
                   ipv6("fd00::1", "fd00::2", tcp(1111, 2222, 0x02),
                        {{kHopByHop}, {kRouting, 0, 2}, {kFragment, 0x0001}, {kAuth, 0, 3}}),
                   "ipv6 tcp behind hop-by-hop, routing, fragment, AH");
  for (const auto& [what, skb] : stacked_vlans()) {
    Skb whole = skb;
    whole.head.resize(whole.tail);
    expect_every_cut(harness, whole, what);
  }
  // The tunnel tuple is bounded by the same tail.
  const Bytes inner = ipv6("fd00:1::1", "fd00:1::2", udp(7000, 8000));
  L4 outer_udp = udp(49152, 4789);
  outer_udp.bytes.resize(8);
  append(outer_udp.bytes, inner);
  Skb whole = received_ip(ipv4("10.0.0.1", "10.0.0.2", outer_udp), Bytes{});
  whole.inner_network = static_cast<std::uint16_t>(14 + 20 + 8);
  for (std::uint32_t tail = whole.inner_network; tail <= whole.tail; ++tail) {
    Skb cut = whole;
    cut.tail = tail;
    EXPECT_EQ(harness.run(cut).tunnel, reference_tunnel_tuple(cut)) << "inner ipv6 cut to " << tail;
  }
}

// The helper needs no more than the IP header and the transport header's
// first 14 bytes, so a cut that keeps those gives the whole packet's tuple.
TEST_F(PacketParse, CutsAfterTheHeadersKeepTheTuple) {
  for (const Bytes& l3 : {ipv4("10.0.0.1", "10.0.0.2", tcp(1111, 2222, 0x02), {.ihl = 6}),
                          ipv6("fd00::1", "fd00::2", tcp(1111, 2222, 0x02))}) {
    const Skb whole = received_ip(l3, Bytes{});
    const std::uint32_t headers = whole.network + ((l3[0] >> 4) == 4 ? 24 : 40) + 14;
    for (std::uint32_t tail = headers; tail <= whole.tail; ++tail) {
      Skb cut = whole;
      cut.tail = tail;
      const Result r = harness.run(cut);
      EXPECT_EQ(r.tuple, reference_tuple(cut)) << "cut to " << tail;
      EXPECT_EQ(r.tuple, reference_tuple(whole)) << "cut to " << tail;
    }
  }
}

// ---- the packet's identity ------------------------------------------------------

// Spelled out once per kind of packet, so that the reference parse is checked too.
TEST_F(PacketParse, IdentityOfIpv4Packets) {
  // The TCP builder: seq 0x01020304, ack 0x05060708, a 20-byte header, 4 data bytes.
  const Skb syn = received_ip(ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 443, 0x18)));
  Ident r = harness.run(syn).ident;
  EXPECT_EQ(r, (Ident{.seq = 0x01020304, .ack = 0x05060708, .ip_id = 0x4242, .l4_payload = 4}));
  EXPECT_EQ(r, reference_ident(syn));

  const Skb dns = received_ip(ipv4("10.0.0.1", "10.0.0.2", udp(5353, 53)));
  r = harness.run(dns).ident;
  EXPECT_EQ(r, (Ident{.ip_id = 0x4242, .l4_payload = 12})) << "UDP: its header and data";
  EXPECT_EQ(r, reference_ident(dns));

  for (std::uint8_t type : {8, 0}) {
    const Skb ping = received_ip(ipv4("10.0.0.1", "10.0.0.2", icmp_echo(kIcmp, type)));
    r = harness.run(ping).ident;
    EXPECT_EQ(r, (Ident{.seq = 0x12340007, .ip_id = 0x4242, .l4_payload = 8})) << "echo type " << int(type);
    EXPECT_EQ(r, reference_ident(ping));
  }
  // Not an echo (destination unreachable): no identifier to take.
  const Skb unreachable = received_ip(ipv4("10.0.0.1", "10.0.0.2", icmp_echo(kIcmp, 3)));
  EXPECT_EQ(harness.run(unreachable).ident, (Ident{.ip_id = 0x4242, .l4_payload = 8}));
  // ICMPv6's type numbers in an IPv4 packet are not an echo.
  expect_tuple(harness, received_ip(ipv4("10.0.0.1", "10.0.0.2", icmp_echo(kIcmpv6, 128))), "icmpv6 in ipv4");
}

TEST_F(PacketParse, IdentityOfIpv6Packets) {
  const Skb syn = received_ip(ipv6("fd00::1", "fd00::2", tcp(33000, 22, 0x02), {}, 0xabcde));
  Ident r = harness.run(syn).ident;
  EXPECT_EQ(r, (Ident{.seq = 0x01020304, .ack = 0x05060708, .flow_label = 0xabcde, .l4_payload = 4}));
  EXPECT_EQ(r, reference_ident(syn));

  // Extension headers are not payload: hop-by-hop (8), routing (24), fragment (8).
  const Skb behind = received_ip(
      ipv6("fd00::1", "fd00::2", udp(546, 547), {{kHopByHop}, {kRouting, 0, 2}, {kFragment, 0x0001}}, 0x12345));
  r = harness.run(behind).ident;
  EXPECT_EQ(r, (Ident{.flow_label = 0x12345, .l4_payload = 12}));
  EXPECT_EQ(r, reference_ident(behind));

  for (std::uint8_t type : {128, 129}) {
    const Skb ping = received_ip(ipv6("fd00::1", "fd00::2", icmp_echo(kIcmpv6, type), {{kDestOpts}}, 7));
    r = harness.run(ping).ident;
    EXPECT_EQ(r, (Ident{.seq = 0x12340007, .flow_label = 7, .l4_payload = 8})) << "echo type " << int(type);
    EXPECT_EQ(r, reference_ident(ping));
  }
  expect_tuple(harness, received_ip(ipv6("fd00::1", "fd00::2", icmp_echo(kIcmp, 8))), "icmp in ipv6");
}

// Every transport behind every extension chain, and every cut of them: the
// identity is as far as the bytes go.
TEST_F(PacketParse, IdentityMatchesTheReferenceEverywhere) {
  for (const auto& [what, chain] : extension_chains()) {
    expect_tuple(harness, received_ip(ipv6("2001:db8::a", "2001:db8::b", tcp(4000, 80, 0x10), chain, 0xfffff)),
                 what + " tcp");
    expect_tuple(harness, received_ip(ipv6("2001:db8::a", "2001:db8::b", icmp_echo(kIcmpv6, 128), chain, 1)),
                 what + " icmpv6");
  }
  expect_every_cut(harness, ipv4("10.0.0.1", "10.0.0.2", icmp_echo(kIcmp, 8), {.ihl = 6}), "ipv4 icmp echo");
  expect_every_cut(harness, ipv6("fd00::1", "fd00::2", icmp_echo(kIcmpv6, 129), {{kDestOpts}}, 0x54321),
                   "ipv6 icmpv6 echo behind destination options");
  expect_every_cut(harness, ipv6("fd00::1", "fd00::2", udp(1, 2), {{kFragment, 0x0009}}, 3), "ipv6 later fragment");
}

// Lengths the IP header does not account for (BIG TCP's tot_len 0, a TCP
// header longer than the packet says) give a payload of 0, not a wrapped one.
TEST_F(PacketParse, IdentityPayloadNeverWraps) {
  Bytes l3 = ipv4("10.0.0.1", "10.0.0.2", tcp(1, 2, 0x10));
  l3[2] = l3[3] = 0;
  Skb s = received_ip(l3);
  EXPECT_EQ(harness.run(s).ident.l4_payload, 0);
  EXPECT_EQ(harness.run(s).ident, reference_ident(s));
  l3 = ipv6("fd00::1", "fd00::2", tcp(1, 2, 0x10), {{kHopByHop}});
  l3[4] = 0;
  l3[5] = 8;  // the hop-by-hop header alone
  s = received_ip(l3);
  EXPECT_EQ(harness.run(s).ident.l4_payload, 0);
  EXPECT_EQ(harness.run(s).ident, reference_ident(s));
}

// ---- capture_packet ------------------------------------------------------------

void expect_capture(const Result& r, const Capture& want, const std::string& what) {
  EXPECT_EQ(r.capture.from, want.from) << what;
  EXPECT_EQ(r.capture.packet_len, want.packet_len) << what;
  EXPECT_EQ(r.capture.capture_len, want.capture_len) << what;
  EXPECT_EQ(hex(r.capture.data), hex(want.data)) << what;
  EXPECT_FALSE(r.capture.wrote_past_len) << what << ": bytes written past capture_len";
}

TEST_F(PacketParse, CaptureHoldsThePacketFromItsNetworkHeader) {
  const Skb s = received_ip(ipv4("10.0.0.1", "10.0.0.2", tcp(1, 2, 0x02)));
  const Result r = harness.run(s);
  EXPECT_EQ(r.capture.from, PWRU_CAPTURE_L3);
  EXPECT_EQ(r.capture.packet_len, s.tail - 14);
  EXPECT_EQ(r.capture.data, Bytes(s.head.begin() + 14, s.head.begin() + s.tail));
  expect_capture(r, reference_capture(s, PWRU_CAPTURE_MAX - 1), "received ipv4");
}

TEST_F(PacketParse, CaptureFollowsWhereSkbDataPoints) {
  const Bytes l3 = ipv6("fd00::1", "fd00::2", udp(1, 2));
  // Transmit path after the MAC header is pushed: data and len from it.
  Skb pushed = received_ip(l3);
  pushed.data_off = 0;
  pushed.len = pushed.tail;
  expect_capture(harness.run(pushed), reference_capture(pushed, PWRU_CAPTURE_MAX - 1), "data at the MAC header");
  // Receive path after the IP header is pulled: data at the transport header.
  Skb pulled = received_ip(l3);
  pulled.data_off = 14 + 40;
  pulled.len = pulled.tail - pulled.data_off;
  expect_capture(harness.run(pulled), reference_capture(pulled, PWRU_CAPTURE_MAX - 1), "data past the IP header");
  // Before eth_type_trans: only a MAC header, so the frame from it.
  Skb l2_only = received_ip(l3);
  l2_only.network = kUnset;
  l2_only.data_off = 0;
  l2_only.len = l2_only.tail;
  const Result r = harness.run(l2_only);
  EXPECT_EQ(r.capture.from, PWRU_CAPTURE_L2);
  expect_capture(r, reference_capture(l2_only, PWRU_CAPTURE_MAX - 1), "MAC header only");
  Skb headerless = l2_only;
  headerless.mac = kUnset;
  expect_capture(harness.run(headerless), Capture{}, "no header at all: nothing");
}

// Non-linear packets: only the linear part is copied, packet_len is the
// whole packet, so the pcap record shows the packet cut, not wrong.
TEST_F(PacketParse, CaptureCopiesTheLinearPartAndTellsTheWholeLength) {
  const Skb whole = received_ip(ipv4("10.0.0.1", "10.0.0.2", udp(1, 2)), Bytes(512, 0x5a));
  for (std::uint32_t tail = 0; tail <= whole.tail; ++tail) {
    Skb s = whole;
    s.tail = tail;
    s.len = whole.len + 1000;  // the rest in fragments
    expect_capture(harness.run(s), reference_capture(s, PWRU_CAPTURE_MAX - 1), "tail " + std::to_string(tail));
  }
}

TEST_F(PacketParse, CaptureOfAZeroLengthPacketIsEmpty) {
  Skb s = received_ip(ipv4("10.0.0.1", "10.0.0.2", udp(1, 2)));
  s.tail = s.network;
  s.len = 0;
  const Result r = harness.run(s);
  expect_capture(r, reference_capture(s, PWRU_CAPTURE_MAX - 1), "zero-length packet");
  EXPECT_EQ(r.capture.from, PWRU_CAPTURE_NONE);
  EXPECT_EQ(r.tuple, Tuple{}) << "no byte of the packet: no tuple";
}

// The record holds PWRU_CAPTURE_MAX - 1 bytes at most, whatever the packet.
TEST_F(PacketParse, CaptureStopsAtTheRecordSize) {
  L4 l4 = udp(1, 2);
  l4.bytes.resize(3000 - 20);
  for (std::size_t i = 8; i < l4.bytes.size(); ++i) l4.bytes[i] = static_cast<std::uint8_t>(i * 7);
  const Skb s = received_ip(ipv4("10.0.0.1", "10.0.0.2", l4));
  const Result r = harness.run(s);
  EXPECT_EQ(r.capture.capture_len, PWRU_CAPTURE_MAX - 1);
  EXPECT_EQ(r.capture.packet_len, 3000u);
  expect_capture(r, reference_capture(s, PWRU_CAPTURE_MAX - 1), "3000-byte packet");
}

TEST(PacketParseCapture, CaptureBytesCapsTheCopy) {
  const Skb s = received_ip(ipv6("fd00::1", "fd00::2", tcp(1, 2, 0x02)));
  for (std::uint16_t cap : {1, 40, 59, 60, 61, 100, PWRU_CAPTURE_MAX}) {
    ParseHarness h(cap);
    const Result r = h.run(s);
    expect_capture(r, reference_capture(s, cap), "capture_bytes " + std::to_string(cap));
    EXPECT_EQ(r.capture.packet_len, s.tail - 14u);
  }
}

}  // namespace
}  // namespace pwru
