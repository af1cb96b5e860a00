/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-skb work every backend shares: metadata filters, then (only for
 * skbs that pass) ring-buffer reservation and event fill. Backends differ
 * only in how they find the skb and the hook id; they include this file.
 */
#ifndef PWRU_SKB_EVENT_BPF_H
#define PWRU_SKB_EVENT_BPF_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "pwru_abi.h"
#include "pcap_stub.bpf.h"

/* Protocol numbers and header offsets: pwru_abi.h, shared with user space. */
/* skb->network_header / transport_header value meaning "not set". */
#define PWRU_HDR_UNSET 0xffff

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* user space resizes this before load (--ring-size) */
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, PWRU_CNT_MAX);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PWRU_MAX_STACK_DEPTH * sizeof(__u64));
	__uint(max_entries, 16384);
} stacks SEC(".maps");

/*
 * pwru-agent's counters. Not preallocated: trace sessions never write them
 * and keep max_entries at 1, and the agent's entries cost memory only once
 * a (netns, hook) pair has been seen. Per-CPU values keep the hot path free
 * of shared cache lines.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pwru_drop_key);
	__type(value, struct pwru_count);
	__uint(max_entries, 1); /* user space sizes it before load */
} drop_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pwru_visit_key);
	__type(value, struct pwru_count);
	__uint(max_entries, 1);
} visit_counts SEC(".maps");

/*
 * visit_counts costs a hash lookup per packet per hook, which showed in TCP
 * throughput; most packets hit a few hot (netns, hook) pairs, which these
 * per-CPU slots serve with plain memory accesses instead.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pwru_visit_cache);
	__uint(max_entries, 1);
} visit_cache SEC(".maps");

/*
 * --filter-track-skb: addresses of skbs that matched the filters once, so
 * that their later events are reported even when the filters no longer
 * match (NAT or decapsulation changed the headers). Forgotten where the skb
 * is freed; LRU, so an address whose free no hook saw cannot fill the map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, __u8);
	__uint(max_entries, 16384);
} tracked_skbs SEC(".maps");

/*
 * The netns a trace of several netns keeps (pwru_filter_cfg.netns_in_map):
 * keys are netns inodes, written by user space before any program is
 * attached and never changed after. Sized by user space (1 entry when unused).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 1);
} filter_netns SEC(".maps");

/*
 * --output-skb / --output-skb-shared-info: a BTF rendering per event is too
 * big for the ring record, so it goes into these maps under the event's
 * dump_id and user space takes it out. LRU: texts of events the ring lost
 * are evicted instead of filling the maps. Sized by user space (1 entry
 * when unused).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct pwru_btf_text);
	__uint(max_entries, 1);
} print_skb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct pwru_btf_text);
	__uint(max_entries, 1);
} print_shinfo SEC(".maps");

/* Where a rendering is built: too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pwru_btf_text);
	__uint(max_entries, 1);
} btf_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} dump_seq SEC(".maps");

const volatile struct pwru_filter_cfg filter_cfg = {};
const volatile struct pwru_count_cfg count_cfg = {};

static __always_inline void count(__u32 which)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &which);
	if (value)
		*value += 1;
}

/*
 * Metadata reads. Where the skb is a BTF pointer the verifier trusts
 * (tp_btf arguments; the object defines PWRU_SKB_IS_BTF_PTR), plain loads
 * are allowed: the verifier turns them into exception-guarded loads that
 * cost a fraction of a bpf_probe_read_kernel() call, and this path runs for
 * every skb at every hook, filtered or not. Elsewhere (kprobes) the skb is
 * a bare number and every read goes through the helper.
 */
#ifdef PWRU_SKB_IS_BTF_PTR
#define PWRU_SKB_READ(skb, ...) ((skb)->__VA_ARGS__)
#define PWRU_DEV_READ(dev, ...) ((dev)->__VA_ARGS__)
#define PWRU_NET_INUM(possible_net) ((possible_net).net->ns.inum)
#else
#define PWRU_SKB_READ(skb, ...) BPF_CORE_READ(skb, __VA_ARGS__)
#define PWRU_DEV_READ(dev, ...) BPF_CORE_READ(dev, __VA_ARGS__)
#define PWRU_NET_INUM(possible_net) BPF_CORE_READ(&(possible_net), net, ns.inum)
#endif

static __always_inline __u32 skb_netns(struct sk_buff *skb)
{
	struct net_device *dev = PWRU_SKB_READ(skb, dev);
	__u32 netns = dev ? PWRU_NET_INUM(dev->nd_net) : 0;
	/* Locally generated skbs may not have a device yet: use the socket's. */
	if (netns == 0) {
		struct sock *sk = PWRU_SKB_READ(skb, sk);
		if (sk)
			netns = PWRU_NET_INUM(sk->__sk_common.skc_net);
	}
	return netns;
}

static __always_inline __u32 skb_ifindex(struct sk_buff *skb)
{
	struct net_device *dev = PWRU_SKB_READ(skb, dev);
	return dev ? PWRU_DEV_READ(dev, ifindex) : 0;
}

/* Whether the trace is limited to some netns at all. */
static __always_inline bool netns_filtered(void)
{
	return filter_cfg.netns || filter_cfg.netns_in_map;
}

/*
 * Whether an skb of netns `ns` is the trace's, when netns_filtered(). One
 * netns is a compare with rodata; only a set pays for a hash lookup. The
 * flag is rodata too: the verifier removes the branch a trace cannot take.
 */
static __always_inline bool netns_wanted(__u32 ns)
{
	if (filter_cfg.netns_in_map)
		return bpf_map_lookup_elem(&filter_netns, &ns) != NULL;
	return ns == filter_cfg.netns;
}

/* Cheapest checks first; none of them touches packet data. */
static __always_inline bool skb_passes_meta_filters(struct sk_buff *skb)
{
	if (netns_filtered() && !netns_wanted(skb_netns(skb)))
		return false;
	if (filter_cfg.mark_mask &&
	    (PWRU_SKB_READ(skb, mark) & filter_cfg.mark_mask) != filter_cfg.mark)
		return false;
	if (filter_cfg.ifindex && skb_ifindex(skb) != filter_cfg.ifindex)
		return false;
	return true;
}

/*
 * The pcap filter: on the frame from the MAC header when the skb has an
 * Ethernet-sized one in front of its network header, otherwise on the
 * packet from the network header (the transmit path before the device,
 * L3 devices). pwru decides by mac_len, which the receive path only sets
 * in __netif_receive_skb_core, after the netif_rx and netif_receive_skb
 * tracepoints; there an ARP frame has no network header the L3 filter
 * could match, and `arp` saw only its free.
 */
static __always_inline bool skb_passes_pcap(struct sk_buff *skb)
{
	if (!filter_cfg.has_pcap)
		return true;
	/* head through the helper: the filter does arithmetic on it, which the
	 * verifier refuses on a BTF pointer. */
	unsigned long head = (unsigned long)BPF_CORE_READ(skb, head);
	unsigned long data_end = head + PWRU_SKB_READ(skb, tail);
	__u16 mac = PWRU_SKB_READ(skb, mac_header);
	__u16 network = PWRU_SKB_READ(skb, network_header);
	if (mac != PWRU_HDR_UNSET && (network == PWRU_HDR_UNSET || network >= mac + PWRU_ETH_HLEN))
		return pwru_pcap_filter_l2((void *)(head + mac), (void *)data_end);
	if (network == PWRU_HDR_UNSET)
		return false;
	return pwru_pcap_filter_l3((void *)(head + network), (void *)data_end);
}

static __always_inline void fill_tuple_ident_at(unsigned char *head, unsigned long l3_off, unsigned long end,
						__u8 expected_version, struct pwru_tuple *tuple,
						struct pwru_part_ident *id);

/* The packet's tuple and, when id is not NULL, its identity (id zeroed by
 * the caller). */
static __always_inline void fill_tuple(struct sk_buff *skb, struct pwru_tuple *tuple, struct pwru_part_ident *id)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned long l3_off = PWRU_SKB_READ(skb, network_header);
	if (l3_off == PWRU_HDR_UNSET || !head)
		return;
	/* The linear data ends at tail; what follows is stale bytes or room
	 * for later data, never this packet's headers (a runt that
	 * PKT_TOO_SMALL drops, headers left in page fragments). */
	unsigned long end = PWRU_SKB_READ(skb, tail);
	/* Only skbs that say they carry IP get a tuple: netlink and other
	 * non-IP skbs have stale bytes where an IP header would be. Tags still
	 * in the packet (no offload took them) each name what follows them;
	 * the next header's version nibble alone took a tag with priority 2
	 * or 3 for IPv4 or IPv6. */
	__be16 protocol = PWRU_SKB_READ(skb, protocol);
	for (int tag = 0; tag < PWRU_MAX_VLAN_TAGS; tag++) {
		if (protocol != bpf_htons(PWRU_ETH_P_8021Q) && protocol != bpf_htons(PWRU_ETH_P_8021AD))
			break;
		if (l3_off + PWRU_VLAN_HLEN > end ||
		    bpf_probe_read_kernel(&protocol, sizeof(protocol), head + l3_off + PWRU_VLAN_PROTO_AT))
			return;
		l3_off += PWRU_VLAN_HLEN;
	}
	__u8 expected_version;
	if (protocol == bpf_htons(PWRU_ETH_P_IP))
		expected_version = 4;
	else if (protocol == bpf_htons(PWRU_ETH_P_IPV6))
		expected_version = 6;
	else
		return;
	fill_tuple_ident_at(head, l3_off, end, expected_version, tuple, id);
}

/* --output-tunnel: the tuple of the headers inside the encapsulation, where
 * the encapsulating path recorded them (skb->inner_network_header; 0 when
 * the skb is not tunnel traffic). */
static __always_inline void fill_tunnel_tuple(struct sk_buff *skb, struct pwru_tuple *tuple)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned long inner = PWRU_SKB_READ(skb, inner_network_header);
	if (inner == 0 || !head)
		return;
	/* No identity: the stitching keys on the headers the nodes route by. */
	fill_tuple_ident_at(head, inner, PWRU_SKB_READ(skb, tail), 0, tuple, NULL);
}

/* The next header values that are IPv6 extension headers, as bits. */
#define PWRU_IPV6_EXT_HEADERS                                                                  \
	((1ULL << PWRU_IPV6_NEXTHDR_HOP) | (1ULL << PWRU_IPV6_NEXTHDR_ROUTING) |               \
	 (1ULL << PWRU_IPV6_NEXTHDR_FRAGMENT) | (1ULL << PWRU_IPV6_NEXTHDR_AUTH) |             \
	 (1ULL << PWRU_IPV6_NEXTHDR_DEST))
_Static_assert(PWRU_IPV6_NEXTHDR_DEST < 64, "the extension header bits fit one word");

static __always_inline bool ipv6_is_extension(__u8 next)
{
	return next < 64 && ((PWRU_IPV6_EXT_HEADERS >> next) & 1);
}

/* id->l4_payload less `bytes` of headers, never below 0. */
static __always_inline void ident_take(struct pwru_part_ident *id, unsigned long bytes)
{
	id->l4_payload = id->l4_payload > bytes ? id->l4_payload - bytes : 0;
}

/*
 * The tuple of the IP header at head + l3_off, from the bytes before
 * head + end alone: no tuple when the fixed IP header is cut, no ports when
 * they are. expected_version 0 trusts the header's own version nibble.
 * Few helper calls: each costs more than the arithmetic around it, on every
 * traced hit.
 *
 * id (NULL: none, and clang drops its code) gets the packet's identity from
 * the same bytes; only an ICMP echo costs one read more.
 */
static __always_inline void fill_tuple_ident_at(unsigned char *head, unsigned long l3_off, unsigned long end,
						__u8 expected_version, struct pwru_tuple *tuple,
						struct pwru_part_ident *id)
{
	/* Both versions' headers are at least this long, and IPv4's fields
	 * are all in it: one read. */
	__u8 ip[PWRU_IPV4_MIN_HLEN] __attribute__((aligned(8)));
	if (l3_off + sizeof(ip) > end || bpf_probe_read_kernel(ip, sizeof(ip), head + l3_off))
		return;
	__u8 version = ip[0] >> PWRU_IP_VERSION_SHIFT;
	if (expected_version && version != expected_version)
		return;
	/* Offsets as wide as pointers: no zero-extension on every sum. */
	unsigned long l4_off;
	__u8 l4_proto;
	if (version == 4) {
		__u8 ihl = ip[0] & PWRU_IPV4_IHL_MASK;
		/* Under 5 words is no header (ip_rcv drops it): its "transport
		 * header" would lie inside the IP header. */
		if (ihl < PWRU_IPV4_MIN_HLEN / PWRU_IPV4_IHL_UNIT)
			return;
		__builtin_memcpy(tuple->saddr, ip + PWRU_IPV4_ADDRS_AT, PWRU_IPV4_ADDR_LEN);
		__builtin_memcpy(tuple->daddr, ip + PWRU_IPV4_ADDRS_AT + PWRU_IPV4_ADDR_LEN, PWRU_IPV4_ADDR_LEN);
		l4_proto = ip[PWRU_IPV4_PROTOCOL_AT];
		tuple->l4_proto = l4_proto;
		tuple->l3_proto = PWRU_ETH_P_IP;
		if (id) {
			__be16 v;
			__builtin_memcpy(&v, ip + PWRU_IPV4_ID_AT, sizeof(v));
			id->ip_id = bpf_ntohs(v);
			__builtin_memcpy(&v, ip + PWRU_IPV4_TOT_LEN_AT, sizeof(v));
			id->l4_payload = bpf_ntohs(v);
			ident_take(id, ihl * PWRU_IPV4_IHL_UNIT);
		}
		/* Later fragments carry no L4 header: leave the ports at 0. */
		__be16 frag;
		__builtin_memcpy(&frag, ip + PWRU_IPV4_FRAG_AT, sizeof(frag));
		if (bpf_ntohs(frag) & PWRU_IPV4_FRAG_OFFSET_MASK)
			return;
		/* Computed from IHL, not transport_header: on the receive path the
		 * transport header still equals the network header at the early hooks. */
		l4_off = l3_off + ihl * PWRU_IPV4_IHL_UNIT;
	} else if (version == 6) {
		/* saddr and daddr at once: adjacent on the wire and in pwru_tuple
		 * (asserted in pwru_abi.h). */
		if (l3_off + PWRU_IPV6_HLEN > end ||
		    bpf_probe_read_kernel(tuple->saddr, 2 * PWRU_IPV6_ADDR_LEN, head + l3_off + PWRU_IPV6_ADDRS_AT))
			return;
		tuple->l3_proto = PWRU_ETH_P_IPV6;
		if (id) {
			__be32 first;
			__builtin_memcpy(&first, ip, sizeof(first));
			id->flow_label = bpf_ntohl(first) & PWRU_IPV6_FLOW_LABEL_MASK;
			__be16 v;
			__builtin_memcpy(&v, ip + PWRU_IPV6_PAYLOAD_LEN_AT, sizeof(v));
			id->l4_payload = bpf_ntohs(v);
		}
		l4_off = l3_off + PWRU_IPV6_HLEN;
		/* The transport is behind the extension headers (bounded: pwru_abi.h).
		 * A cut one stops the walk with its own type as l4_proto, which
		 * has no ports. */
		l4_proto = ip[PWRU_IPV6_NEXTHDR_AT];
		for (int i = 0; i < PWRU_IPV6_MAX_EXT_HEADERS && ipv6_is_extension(l4_proto); i++) {
			/* next header, length, the fragment header's frag_off */
			__u8 ext[PWRU_IPV6_FRAG_AT + 2] __attribute__((aligned(4)));
			bool fragment = l4_proto == PWRU_IPV6_NEXTHDR_FRAGMENT;
			if (l4_off + (fragment ? PWRU_IPV6_FRAG_HLEN : PWRU_IPV6_EXT_LEN_AT + 1) > end ||
			    bpf_probe_read_kernel(ext, sizeof(ext), head + l4_off))
				break;
			if (fragment) {
				__be16 frag;
				__builtin_memcpy(&frag, ext + PWRU_IPV6_FRAG_AT, sizeof(frag));
				if (bpf_ntohs(frag) & PWRU_IPV6_FRAG_OFFSET_MASK) {
					/* A later fragment: its payload's start is data, not ports. */
					tuple->l4_proto = ext[PWRU_IPV6_EXT_NEXTHDR_AT];
					if (id)
						ident_take(id, l4_off + PWRU_IPV6_FRAG_HLEN - l3_off - PWRU_IPV6_HLEN);
					return;
				}
				l4_off += PWRU_IPV6_FRAG_HLEN;
			} else {
				/* Both length units leave out the first 8 bytes. */
				unsigned long shift = l4_proto == PWRU_IPV6_NEXTHDR_AUTH ? PWRU_IPV6_AUTH_LEN_SHIFT
										 : PWRU_IPV6_EXT_LEN_SHIFT;
				l4_off += 8 + ((unsigned long)ext[PWRU_IPV6_EXT_LEN_AT] << shift);
			}
			l4_proto = ext[PWRU_IPV6_EXT_NEXTHDR_AT];
		}
		tuple->l4_proto = l4_proto;
		/* The extension headers walked are not the transport's. */
		if (id)
			ident_take(id, l4_off - l3_off - PWRU_IPV6_HLEN);
	} else {
		return;
	}

	if (id && (version == 4 ? l4_proto == PWRU_IPPROTO_ICMP : l4_proto == PWRU_IPPROTO_ICMPV6)) {
		/* Echo's identifier and sequence: what tells one ping from the next. */
		__u8 icmp[PWRU_ICMP_ECHO_HLEN] __attribute__((aligned(8)));
		if (l4_off + sizeof(icmp) > end || bpf_probe_read_kernel(icmp, sizeof(icmp), head + l4_off))
			return;
		__u8 type = icmp[0];
		if (version == 4 ? type == PWRU_ICMP_ECHO_REQUEST || type == PWRU_ICMP_ECHO_REPLY
				 : type == PWRU_ICMPV6_ECHO_REQUEST || type == PWRU_ICMPV6_ECHO_REPLY) {
			__be32 echo;
			__builtin_memcpy(&echo, icmp + PWRU_ICMP_ECHO_ID_AT, sizeof(echo));
			id->seq = bpf_ntohl(echo);
		}
		return;
	}
	if (l4_proto != PWRU_IPPROTO_TCP && l4_proto != PWRU_IPPROTO_UDP)
		return;
	/* Ports, and TCP's flags when they are there (nearly always): one read. */
	__u8 l4[PWRU_TCP_FLAGS_AT + 1] __attribute__((aligned(8)));
	if (l4_proto == PWRU_IPPROTO_TCP && l4_off + sizeof(l4) <= end) {
		if (bpf_probe_read_kernel(l4, sizeof(l4), head + l4_off))
			return;
		tuple->tcp_flags = l4[PWRU_TCP_FLAGS_AT];
		if (id) {
			__be32 v;
			__builtin_memcpy(&v, l4 + PWRU_TCP_SEQ_AT, sizeof(v));
			id->seq = bpf_ntohl(v);
			__builtin_memcpy(&v, l4 + PWRU_TCP_ACK_AT, sizeof(v));
			id->ack = bpf_ntohl(v);
			ident_take(id, (unsigned long)(l4[PWRU_TCP_DOFF_AT] >> PWRU_TCP_DOFF_SHIFT) * 4);
		}
	} else if (l4_off + PWRU_L4_PORTS_AT + 4 > end ||
		   bpf_probe_read_kernel(l4, PWRU_L4_PORTS_AT + 4, head + l4_off)) {
		return;
	}
	__builtin_memcpy(&tuple->sport, l4 + PWRU_L4_PORTS_AT, sizeof(tuple->sport));
	__builtin_memcpy(&tuple->dport, l4 + PWRU_L4_PORTS_AT + 2, sizeof(tuple->dport));
}

static __always_inline void fill_tuple_at(unsigned char *head, unsigned long l3_off, unsigned long end,
					  __u8 expected_version, struct pwru_tuple *tuple)
{
	fill_tuple_ident_at(head, l3_off, end, expected_version, tuple, NULL);
}

static __always_inline bool skb_passes_filters(struct sk_buff *skb)
{
	if (!skb_passes_meta_filters(skb) || !skb_passes_pcap(skb)) {
		count(PWRU_CNT_FILTERED);
		return false;
	}
	return true;
}

/*
 * --output-pcap: the packet's first bytes, from its network header (or its
 * MAC header when it has none yet), as far as the linear data goes. Paged
 * data is not copied; packet_len still says how long the packet is, so the
 * pcap record shows it truncated rather than wrong.
 */
static __always_inline void capture_packet(struct sk_buff *skb, struct pwru_part_capture *rec)
{
	rec->packet_len = 0;
	rec->capture_len = 0;
	rec->capture_from = PWRU_CAPTURE_NONE;
	rec->pad = 0;
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 network = BPF_CORE_READ(skb, network_header);
	__u16 mac = BPF_CORE_READ(skb, mac_header);
	__u16 start;
	__u8 from;
	if (network != PWRU_HDR_UNSET) {
		start = network;
		from = PWRU_CAPTURE_L3;
	} else if (mac != PWRU_HDR_UNSET) {
		start = mac;
		from = PWRU_CAPTURE_L2;
	} else {
		return;
	}
	/* skb->len counts from skb->data, which moves as headers are pushed
	 * and pulled; the packet from `start` is that plus the difference. */
	long data_off = (long)(BPF_CORE_READ(skb, data) - head);
	long packet = (long)BPF_CORE_READ(skb, len) + data_off - start;
	__u32 tail = BPF_CORE_READ(skb, tail);
	if (packet <= 0 || tail <= start)
		return;
	__u32 n = tail - start;
	if (n > (__u64)packet)
		n = packet;
	if (n > filter_cfg.capture_bytes)
		n = filter_cfg.capture_bytes;
	/* The mask is what the verifier reads the bound from: clang compares
	 * copies of n and would pass an unbounded original, and would drop a
	 * plain-C mask it can prove changes nothing, so it is written in asm.
	 * The copy holds at most PWRU_CAPTURE_MAX - 1 bytes. */
	if (n >= PWRU_CAPTURE_MAX)
		n = PWRU_CAPTURE_MAX - 1;
	asm volatile("%0 &= %1" : "+r"(n) : "i"(PWRU_CAPTURE_MAX - 1));
	if (bpf_probe_read_kernel(rec->data, n, head + start))
		return;
	rec->capture_from = from;
	rec->capture_len = n;
	rec->packet_len = packet;
}

/* Renders the object at ptr (BTF type type_id) into map under id; false
 * when it could not (counted when the map refused it). */
static __always_inline bool store_btf_text(void *map, __u64 id, void *ptr, __u32 type_id)
{
	__u32 zero = 0;
	struct pwru_btf_text *text = bpf_map_lookup_elem(&btf_scratch, &zero);
	if (!text || !type_id)
		return false;
	struct btf_ptr p = {.ptr = ptr, .type_id = type_id};
	text->len = bpf_snprintf_btf(text->text, sizeof(text->text), &p, sizeof(p), 0);
	if (text->len < 0)
		return false;
	if (bpf_map_update_elem(map, &id, text, BPF_ANY)) {
		count(PWRU_CNT_DUMP_LOST);
		return false;
	}
	return true;
}

/* --output-skb-cb copies qdisc_skb_cb->data whole into the part. */
_Static_assert(sizeof(((struct qdisc_skb_cb *)0)->data) == PWRU_SIZEOF_FIELD(struct pwru_part_cb, cb),
	       "pwru_part_cb.cb holds qdisc_skb_cb->data");

/* The record's part `part` (a PWRU_PART_* bit set in parts). */
#define PWRU_EVENT_PART(event, parts, part) ((void *)(event) + pwru_part_offset(parts, part))

/* --output-skb, --output-skb-shared-info, --output-skb-cb, --output-tunnel:
 * fills the parts of them that `parts` has. */
static __always_inline void fill_extra_outputs(struct sk_buff *skb, struct pwru_event_core *event, __u8 parts)
{
	const __u8 flags = filter_cfg.output_flags;
	if (parts & PWRU_PART_CB) {
		struct pwru_part_cb *part = PWRU_EVENT_PART(event, parts, PWRU_PART_CB);
		unsigned long cb = (unsigned long)skb + bpf_core_field_offset(struct sk_buff, cb) +
				   bpf_core_field_offset(struct qdisc_skb_cb, data);
		/* zeroes the part when it fails */
		bpf_probe_read_kernel(part->cb, sizeof(part->cb), (void *)cb);
		part->pad = 0;
	}
	if (parts & PWRU_PART_TUNNEL) {
		struct pwru_part_tunnel *part = PWRU_EVENT_PART(event, parts, PWRU_PART_TUNNEL);
		__builtin_memset(part, 0, sizeof(*part));
		fill_tunnel_tuple(skb, &part->tuple);
	}
	if (!(parts & PWRU_PART_DUMP))
		return;
	struct pwru_part_dump *dump = PWRU_EVENT_PART(event, parts, PWRU_PART_DUMP);
	dump->dump_id = 0;
	__u32 zero = 0;
	__u32 *seq = bpf_map_lookup_elem(&dump_seq, &zero);
	if (!seq)
		return;
	/* Unique across CPUs without atomics: the CPU in the high half. */
	__u64 id = ((__u64)(bpf_get_smp_processor_id() + 1) << 32) | (*seq)++;
	bool stored = false;
	if (flags & PWRU_OUT_SKB)
		stored |= store_btf_text(&print_skb, id, skb, bpf_core_type_id_kernel(struct sk_buff));
	if (flags & PWRU_OUT_SHINFO) {
		/* skb_shared_info sits at head + end (end is an offset on 64-bit). */
		unsigned long shinfo = (unsigned long)BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, end);
		stored |= store_btf_text(&print_shinfo, id, (void *)shinfo,
					 bpf_core_type_id_kernel(struct skb_shared_info));
	}
	if (stored)
		dump->dump_id = id;
}

/* Who and when: the fields every event has, whatever it describes. */
static __always_inline void fill_event_origin(struct pwru_event_core *event, __u64 addr, __u16 hook_id)
{
	event->skb_addr = addr;
	event->ts_ns = bpf_ktime_get_ns();
	event->pid = bpf_get_current_pid_tgid() >> 32;
	event->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(event->comm, sizeof(event->comm));
	event->hook_id = hook_id;
}

static __always_inline void fill_event_device(struct pwru_event_core *event, struct net_device *dev)
{
	if (!dev)
		return;
	event->ifindex = BPF_CORE_READ(dev, ifindex);
	event->mtu = BPF_CORE_READ(dev, mtu);
	bpf_probe_read_kernel_str(event->ifname, sizeof(event->ifname), &dev->name);
}

/* The optional parts of this trace's records (pwru_abi.h), from rodata:
 * the verifier sees a constant, so each record size is one too. */
static __always_inline __u8 event_parts(void)
{
	const __u8 flags = filter_cfg.output_flags;
	__u8 parts = 0;
	if (filter_cfg.want_stack)
		parts |= PWRU_PART_STACK;
	if (flags & (PWRU_OUT_SKB | PWRU_OUT_SHINFO))
		parts |= PWRU_PART_DUMP;
	if (flags & PWRU_OUT_CB)
		parts |= PWRU_PART_CB;
	if (flags & PWRU_OUT_TUNNEL)
		parts |= PWRU_PART_TUNNEL;
	if (flags & PWRU_OUT_IDENT)
		parts |= PWRU_PART_IDENT;
	if (filter_cfg.capture_bytes)
		parts |= PWRU_PART_CAPTURE;
	return parts;
}

/* Reserves and fills one event for an skb that already passed (or, when it
 * is tracked, skipped) the filters: the core, then only the parts the
 * trace's options need; with --output-pcap the packet's bytes last. */
static __always_inline void emit_skb_event(void *ctx, struct sk_buff *skb, __u16 hook_id,
					   bool has_reason, __u32 reason, __u64 location)
{
	const __u8 parts = event_parts();
	struct pwru_event_core *event = bpf_ringbuf_reserve(&events, pwru_record_size(parts), 0);
	if (!event) {
		count(PWRU_CNT_LOST);
		return;
	}
	__builtin_memset(event, 0, sizeof(*event));
	event->parts = parts;

	fill_event_origin(event, (__u64)skb, hook_id);
	event->netns = skb_netns(skb);
	event->mark = BPF_CORE_READ(skb, mark);
	event->len = BPF_CORE_READ(skb, len);
	event->protocol = BPF_CORE_READ(skb, protocol);
	fill_event_device(event, BPF_CORE_READ(skb, dev));
	event->has_drop_reason = has_reason;
	event->drop_reason = reason;
	event->drop_location = location;
	struct pwru_part_ident *ident = NULL;
	if (parts & PWRU_PART_IDENT) {
		ident = PWRU_EVENT_PART(event, parts, PWRU_PART_IDENT);
		__builtin_memset(ident, 0, sizeof(*ident));
	}
	fill_tuple(skb, &event->tuple, ident);

	if (parts & PWRU_PART_STACK) {
		struct pwru_part_stack *stack = PWRU_EVENT_PART(event, parts, PWRU_PART_STACK);
		stack->stack_id = bpf_get_stackid(ctx, &stacks, 0);
		if (stack->stack_id < 0)
			count(PWRU_CNT_STACK_FAIL);
	}
	if (parts & (PWRU_PART_DUMP | PWRU_PART_CB | PWRU_PART_TUNNEL))
		fill_extra_outputs(skb, event, parts);
	if (parts & PWRU_PART_CAPTURE)
		capture_packet(skb, PWRU_EVENT_PART(event, parts, PWRU_PART_CAPTURE));

	bpf_ringbuf_submit(event, 0);
	count(PWRU_CNT_EVENTS);
}

/* Adds one packet of `len` bytes to `key`'s entry, creating it; a full map
 * is counted in `overflow`, never silently ignored. */
static __always_inline void add_count(void *map, const void *key, __u32 len, __u32 overflow)
{
	struct pwru_count *c = bpf_map_lookup_elem(map, key);
	if (!c) {
		struct pwru_count first = {.packets = 1, .bytes = len};
		if (bpf_map_update_elem(map, key, &first, BPF_NOEXIST) == 0)
			return;
		/* Another CPU may have created it meanwhile (-EEXIST). */
		c = bpf_map_lookup_elem(map, key);
		if (!c) {
			count(overflow);
			return;
		}
	}
	c->packets += 1;
	c->bytes += len;
}

/*
 * The visit cache slot of (netns, hook_id) on this CPU, counted into when it
 * is free or already holds that key; false when another key holds it.
 *
 * Multiplicative hashing spreads consecutive netns inodes; a netns's hooks
 * then take consecutive slots (hook ids are dense), so the slots one netns's
 * packets touch share a dozen cache lines instead of one line each. The
 * data copies of a busy flow evict the slots between hits: scattered slots
 * cost a cache miss per hit, clustered ones mostly do not (bpf stats, TCP
 * over veth: ~15 ns less of ~90 ns per hit).
 */
static __always_inline bool count_visit_cached(struct pwru_visit_cache *cache, __u32 netns, __u16 hook_id,
					       __u32 len)
{
	__u32 index = (netns * 0x9E3779B1u + (__u32)hook_id) & (count_cfg.visit_cache_slots - 1);
	struct pwru_visit_slot *slot = &cache->slot[index & (PWRU_VISIT_CACHE_SLOTS - 1)];
	/* The key as one word (its pad is 0): one load and one compare. */
	const struct pwru_visit_key key = {.netns = netns, .hook_id = hook_id};
	__u64 want;
	__builtin_memcpy(&want, &key, sizeof(want));
	__u64 *slot_key = (__u64 *)&slot->key;
	if (slot->packets == 0)
		*slot_key = want;
	else if (*slot_key != want)
		return false;
	slot->packets += 1;
	slot->bytes += len;
	return true;
}

/*
 * pwru-agent's counting, the per-hit cost of its always-on programs: every
 * instruction here runs for every skb at every hook. The per-CPU cache is
 * looked up first, while only the skb is live, so that clang keeps fewer
 * values across the call (the verifier inlines it, clang cannot know).
 */
static __always_inline void count_skb(struct sk_buff *skb, __u16 hook_id, bool has_reason, __u32 reason,
				      __u64 location)
{
	__u32 zero = 0;
	struct pwru_visit_cache *cache = count_cfg.visit_cache_slots ? bpf_map_lookup_elem(&visit_cache, &zero) : NULL;
	__u32 netns = skb_netns(skb);
	__u32 len = PWRU_SKB_READ(skb, len);
	if (!cache || !count_visit_cached(cache, netns, hook_id, len)) {
		struct pwru_visit_key key = {.netns = netns, .hook_id = hook_id};
		add_count(&visit_counts, &key, len, PWRU_CNT_VISITS_OVERFLOW);
	}
	if (has_reason) {
		struct pwru_drop_key drop = {.netns = netns, .reason = reason, .location = location};
		add_count(&drop_counts, &drop, len, PWRU_CNT_DROPS_OVERFLOW);
	}
}

/* Filters, then reports (or, for the agent, counts). True when the skb
 * passed the filters and was reported. */
static __always_inline bool report_skb(void *ctx, struct sk_buff *skb, __u16 hook_id,
				       bool has_reason, __u32 reason, __u64 location)
{
	if (!skb)
		return false;
	if (count_cfg.count_only) {
		count_skb(skb, hook_id, has_reason, reason, location);
		return false;
	}
	__u64 addr = (__u64)skb;
	bool tracked = filter_cfg.track_skb && bpf_map_lookup_elem(&tracked_skbs, &addr);
	if (tracked && filter_cfg.track_skb_in_netns && !netns_wanted(skb_netns(skb))) {
		/* It left the traced netns, or its address now holds another
		 * netns's skb whose free this backend could not see (the
		 * tracepoints miss most TCP/UDP frees): either way not the
		 * trace's packet any more. */
		bpf_map_delete_elem(&tracked_skbs, &addr);
		return false;
	}
	if (!tracked) {
		if (!skb_passes_filters(skb))
			return false;
		__u8 one = 1;
		if (filter_cfg.track_skb && bpf_map_update_elem(&tracked_skbs, &addr, &one, BPF_ANY))
			count(PWRU_CNT_TRACK_FULL);
	}
	emit_skb_event(ctx, skb, hook_id, has_reason, reason, location);
	return true;
}

/* The skb at `addr` is being freed: a later skb at the same address is
 * another packet, which must match the filters on its own. */
static __always_inline void forget_tracked_skb(struct sk_buff *skb)
{
	__u64 addr = (__u64)skb;
	if (filter_cfg.track_skb)
		bpf_map_delete_elem(&tracked_skbs, &addr);
}

#endif /* PWRU_SKB_EVENT_BPF_H */
