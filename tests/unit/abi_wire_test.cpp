// The wire-format constants of bpf/pwru_abi.h against the C library's and
// the kernel UAPI's own definitions. The BPF programs cannot include these
// headers next to vmlinux_min.h, so they use ours: a wrong offset here would
// make fill_tuple_at read the wrong bytes of every packet. These checks run
// when unit_tests compiles; the test below only makes the file show up in
// the unit tier's list.
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>

#include <cstddef>

#include "pwru_abi.h"

static_assert(PWRU_ETH_P_IP == ETH_P_IP);
static_assert(PWRU_ETH_P_IPV6 == ETH_P_IPV6);
static_assert(PWRU_ETH_P_ARP == ETH_P_ARP);
static_assert(PWRU_ETH_P_8021Q == ETH_P_8021Q);
static_assert(PWRU_ETH_HLEN == ETH_HLEN);
static_assert(PWRU_ETH_TYPE_AT == offsetof(struct ethhdr, h_proto));

static_assert(PWRU_IPPROTO_ICMP == IPPROTO_ICMP);
static_assert(PWRU_IPPROTO_TCP == IPPROTO_TCP);
static_assert(PWRU_IPPROTO_UDP == IPPROTO_UDP);
static_assert(PWRU_IPPROTO_ICMPV6 == IPPROTO_ICMPV6);

static_assert(PWRU_IPV4_FRAG_AT == offsetof(struct iphdr, frag_off));
static_assert(PWRU_IPV4_FRAG_OFFSET_MASK == IP_OFFMASK);
static_assert(PWRU_IPV4_PROTOCOL_AT == offsetof(struct iphdr, protocol));
static_assert(PWRU_IPV4_ADDRS_AT == offsetof(struct iphdr, saddr));
static_assert(PWRU_IPV4_ADDR_LEN == sizeof(in_addr));
// fill_tuple_at reads both IPv4 addresses with one read.
static_assert(offsetof(struct iphdr, daddr) == PWRU_IPV4_ADDRS_AT + PWRU_IPV4_ADDR_LEN);
static_assert(PWRU_IPV4_IHL_UNIT * 5 == sizeof(struct iphdr), "IHL 5 is the header without options");

static_assert(PWRU_IPV6_NEXTHDR_AT == offsetof(struct ip6_hdr, ip6_nxt));
static_assert(PWRU_IPV6_ADDRS_AT == offsetof(struct ip6_hdr, ip6_src));
static_assert(PWRU_IPV6_ADDR_LEN == sizeof(in6_addr));
// ...and both IPv6 addresses with one read.
static_assert(offsetof(struct ip6_hdr, ip6_dst) == PWRU_IPV6_ADDRS_AT + PWRU_IPV6_ADDR_LEN);
static_assert(PWRU_IPV6_HLEN == sizeof(struct ip6_hdr));

// The ports are read as one pair for TCP and UDP alike.
static_assert(PWRU_L4_PORTS_AT == offsetof(struct tcphdr, th_sport));
static_assert(offsetof(struct tcphdr, th_dport) == PWRU_L4_PORTS_AT + sizeof(std::uint16_t));
static_assert(PWRU_L4_PORTS_AT == offsetof(struct udphdr, uh_sport));
static_assert(offsetof(struct udphdr, uh_dport) == PWRU_L4_PORTS_AT + sizeof(std::uint16_t));
static_assert(PWRU_TCP_FLAGS_AT == offsetof(struct tcphdr, th_flags));

namespace {

// The flag bits tcp_flags_string names, bit 0 first, are the byte at
// PWRU_TCP_FLAGS_AT as the C library defines them.
TEST(AbiWire, TcpFlagBitsAreTheHeadersByte) {
  struct tcphdr header {};
  header.th_flags = TH_SYN | TH_ACK;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(&header);
  EXPECT_EQ(bytes[PWRU_TCP_FLAGS_AT], (1u << 1) | (1u << 4));
}

}  // namespace
