// The wire-format constants of bpf/pwru_abi.h against the C library's and
// the kernel UAPI's own definitions. The BPF programs cannot include these
// headers next to vmlinux_min.h, so they use ours: a wrong offset here would
// make fill_tuple_at read the wrong bytes of every packet. These checks run
// when unit_tests compiles; the test below only makes the file show up in
// the unit tier's list.
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/ip_icmp.h>
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
// The packet's identity (pwru_part_ident) comes from the same 20 bytes.
static_assert(PWRU_IPV4_TOT_LEN_AT == offsetof(struct iphdr, tot_len));
static_assert(PWRU_IPV4_ID_AT == offsetof(struct iphdr, id));
static_assert(PWRU_IPV4_ID_AT + sizeof(std::uint16_t) <= PWRU_IPV4_MIN_HLEN);

static_assert(PWRU_IPV6_NEXTHDR_AT == offsetof(struct ip6_hdr, ip6_nxt));
static_assert(PWRU_IPV6_ADDRS_AT == offsetof(struct ip6_hdr, ip6_src));
static_assert(PWRU_IPV6_ADDR_LEN == sizeof(in6_addr));
// ...and both IPv6 addresses with one read.
static_assert(offsetof(struct ip6_hdr, ip6_dst) == PWRU_IPV6_ADDRS_AT + PWRU_IPV6_ADDR_LEN);
static_assert(PWRU_IPV6_HLEN == sizeof(struct ip6_hdr));
// ip6_flow is version, traffic class and flow label, in that order.
static_assert(offsetof(struct ip6_hdr, ip6_flow) == 0);
static_assert(PWRU_IPV6_PAYLOAD_LEN_AT == offsetof(struct ip6_hdr, ip6_plen));
// fill_tuple_at takes both from the first PWRU_IPV4_MIN_HLEN bytes it reads of either version.
static_assert(PWRU_IPV6_PAYLOAD_LEN_AT + sizeof(std::uint16_t) <= PWRU_IPV4_MIN_HLEN);

// The ports are read as one pair for TCP and UDP alike.
static_assert(PWRU_L4_PORTS_AT == offsetof(struct tcphdr, th_sport));
static_assert(offsetof(struct tcphdr, th_dport) == PWRU_L4_PORTS_AT + sizeof(std::uint16_t));
static_assert(PWRU_L4_PORTS_AT == offsetof(struct udphdr, uh_sport));
static_assert(offsetof(struct udphdr, uh_dport) == PWRU_L4_PORTS_AT + sizeof(std::uint16_t));
static_assert(PWRU_TCP_FLAGS_AT == offsetof(struct tcphdr, th_flags));
// Sequence, acknowledgement and data offset are inside the 14 bytes read for the flags.
static_assert(PWRU_TCP_SEQ_AT == offsetof(struct tcphdr, th_seq));
static_assert(PWRU_TCP_ACK_AT == offsetof(struct tcphdr, th_ack));
static_assert(PWRU_TCP_DOFF_AT < PWRU_TCP_FLAGS_AT && PWRU_TCP_ACK_AT + 4 <= PWRU_TCP_FLAGS_AT);

static_assert(PWRU_ICMP_ECHO_REQUEST == ICMP_ECHO);
static_assert(PWRU_ICMP_ECHO_REPLY == ICMP_ECHOREPLY);
static_assert(PWRU_ICMP_ECHO_ID_AT == offsetof(struct icmphdr, un.echo.id));
static_assert(PWRU_ICMP_ECHO_ID_AT + 2 == offsetof(struct icmphdr, un.echo.sequence));
static_assert(PWRU_ICMP_ECHO_HLEN == sizeof(struct icmphdr));
static_assert(PWRU_ICMPV6_ECHO_REQUEST == ICMP6_ECHO_REQUEST);
static_assert(PWRU_ICMPV6_ECHO_REPLY == ICMP6_ECHO_REPLY);
static_assert(PWRU_ICMP_ECHO_ID_AT == offsetof(struct icmp6_hdr, icmp6_id));
static_assert(PWRU_ICMP_ECHO_ID_AT + 2 == offsetof(struct icmp6_hdr, icmp6_seq));
static_assert(PWRU_ICMP_ECHO_HLEN == sizeof(struct icmp6_hdr));

namespace {

// The flag bits tcp_flags_string names, bit 0 first, are the byte at
// PWRU_TCP_FLAGS_AT as the C library defines them.
TEST(AbiWire, TcpFlagBitsAreTheHeadersByte) {
  struct tcphdr header {};
  header.th_flags = TH_SYN | TH_ACK;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(&header);
  EXPECT_EQ(bytes[PWRU_TCP_FLAGS_AT], (1u << 1) | (1u << 4));
}

// The data offset is the high half of its byte, in 4-byte words; the flow
// label the low 20 bits of the IPv6 header's first word.
TEST(AbiWire, TcpDataOffsetAndFlowLabelBits) {
  struct tcphdr tcp {};
  tcp.th_off = 11;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(&tcp);
  EXPECT_EQ(bytes[PWRU_TCP_DOFF_AT] >> PWRU_TCP_DOFF_SHIFT, 11);
  struct ip6_hdr ip6 {};
  ip6.ip6_flow = htonl(0x6b8abcde);
  EXPECT_EQ(ntohl(ip6.ip6_flow) & PWRU_IPV6_FLOW_LABEL_MASK, 0xabcdeu);
  static_assert(PWRU_IPV6_FLOW_LABEL_MASK == (1u << 20) - 1, "RFC 8200: a 20-bit label");
}

}  // namespace
