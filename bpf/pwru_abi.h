/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of everything that crosses the kernel/user boundary:
 * included by the BPF programs (clang -target bpf) and by agent/ (C++20).
 * Every struct is laid out with explicit padding so both compilers agree
 * byte for byte; the static asserts at the bottom fail the build of either
 * side if a field is added without updating the size.
 */
#ifndef PWRU_ABI_H
#define PWRU_ABI_H

#ifdef __cplusplus
#include <cstdint>
#define PWRU_U8 std::uint8_t
#define PWRU_U16 std::uint16_t
#define PWRU_U32 std::uint32_t
#define PWRU_U64 std::uint64_t
#define PWRU_S8 std::int8_t
#define PWRU_S32 std::int32_t
#define PWRU_S64 std::int64_t
#define PWRU_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define PWRU_U8 __u8
#define PWRU_U16 __u16
#define PWRU_U32 __u32
#define PWRU_U64 __u64
#define PWRU_S8 __s8
#define PWRU_S32 __s32
#define PWRU_S64 __s64
#define PWRU_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
/* Both compilers have the builtin; neither side needs <stddef.h> for it. */
#define PWRU_OFFSETOF(type, member) __builtin_offsetof(type, member)
#define PWRU_SIZEOF_FIELD(type, member) sizeof(((type *)0)->member)

#define PWRU_IFNAMSIZ 16
#define PWRU_COMM_LEN 16
/* Upper bound on hooks one tracepoint object can carry (program slots). */
#define PWRU_MAX_TP_SLOTS 64
/* Upper bound on the netns one trace filters on (filter_netns entries). */
#define PWRU_MAX_NETNS_SET 64
/* Max frames kept per stack trace, as pwru. */
#define PWRU_MAX_STACK_DEPTH 50
/* "Argument not present" marker for the argument positions of a hook. */
#define PWRU_ARG_NONE (-1)

/* pcap filter stubs (bpf/pcap_stub.bpf.h): markers the loader looks for,
 * and the size of the no-op block a translated filter must fit into. */
#define PWRU_PCAP_MAGIC_L2 0x5043324c /* "PC2L" */
#define PWRU_PCAP_MAGIC_L3 0x5043334c /* "PC3L" */
#define PWRU_PCAP_STUB_INSNS 4096

/* --output-pcap: the room for packet bytes after an event (one less is copied at most). */
#define PWRU_CAPTURE_MAX 2048
/* pwru_part_capture.capture_from: where the copied bytes start. */
#define PWRU_CAPTURE_NONE 0
#define PWRU_CAPTURE_L3 1 /* the network header (IP, IPv6, ARP) */
#define PWRU_CAPTURE_L2 2 /* the MAC header, for skbs without a network header */

/* --output-skb / --output-skb-shared-info: room for one BTF rendering. */
#define PWRU_BTF_TEXT_MAX 4096
/* pwru_filter_cfg.output_flags */
#define PWRU_OUT_SKB (1 << 0)    /* --output-skb: struct sk_buff through BTF */
#define PWRU_OUT_SHINFO (1 << 1) /* --output-skb-shared-info */
#define PWRU_OUT_CB (1 << 2)     /* --output-skb-cb: qdisc_skb_cb->data, as __sk_buff->cb[] */
#define PWRU_OUT_TUNNEL (1 << 3) /* --output-tunnel: the inner headers' tuple */
#define PWRU_OUT_IDENT (1 << 4)  /* --summary, merged traces: the packet's identity (pwru_part_ident) */

/*
 * Wire formats: what the BPF programs parse (skb_event.bpf.h: fill_tuple_at,
 * the pcap filter's choice of L2 or L3) and user space prints, named once
 * here because the kernel's UAPI headers cannot be included next to
 * vmlinux_min.h. *_AT is a byte offset from the start of that header.
 * tests/unit/abi_wire_test.cpp checks each against the C library's headers.
 */
/* Ethertypes in host order, as stored in pwru_tuple.l3_proto. */
#define PWRU_ETH_P_IP 0x0800
#define PWRU_ETH_P_IPV6 0x86DD
#define PWRU_ETH_P_ARP 0x0806
#define PWRU_ETH_P_8021Q 0x8100
#define PWRU_ETH_P_8021AD 0x88A8 /* the outer (service) tag of QinQ */
#define PWRU_ETH_HLEN 14
#define PWRU_ETH_TYPE_AT 12 /* ethhdr.h_proto */
#define PWRU_VLAN_HLEN 4
#define PWRU_VLAN_PROTO_AT 2 /* after the TCI: the EtherType of what follows the tag */
/* IPPROTO_* values, as stored in pwru_tuple.l4_proto. */
#define PWRU_IPPROTO_ICMP 1
#define PWRU_IPPROTO_TCP 6
#define PWRU_IPPROTO_UDP 17
#define PWRU_IPPROTO_ICMPV6 58
/* The version nibble is the first byte's high half in IPv4 and IPv6 alike. */
#define PWRU_IP_VERSION_SHIFT 4
#define PWRU_IPV4_MIN_HLEN 20 /* the header without options */
#define PWRU_IPV4_TOT_LEN_AT 2 /* tot_len, network order: header and payload */
#define PWRU_IPV4_ID_AT 4 /* id, network order */
#define PWRU_IPV4_IHL_MASK 0x0f /* low half of the first byte: header length in 4-byte words */
#define PWRU_IPV4_IHL_UNIT 4
#define PWRU_IPV4_FRAG_AT 6 /* frag_off, network order: flags and fragment offset */
#define PWRU_IPV4_FRAG_OFFSET_MASK 0x1fff /* nonzero: a later fragment, no L4 header */
#define PWRU_IPV4_PROTOCOL_AT 9
#define PWRU_IPV4_ADDRS_AT 12 /* saddr, then daddr right after it */
#define PWRU_IPV4_ADDR_LEN 4
#define PWRU_IPV6_FLOW_LABEL_MASK 0xfffff /* of the first 32 bits, host order */
#define PWRU_IPV6_PAYLOAD_LEN_AT 4 /* payload_len, network order: everything after the fixed header */
#define PWRU_IPV6_NEXTHDR_AT 6
#define PWRU_IPV6_ADDRS_AT 8 /* saddr, then daddr right after it */
#define PWRU_IPV6_ADDR_LEN 16
#define PWRU_IPV6_HLEN 40
/* IPv6 extension headers (next header values) that stand between the IPv6
 * header and the transport header. */
#define PWRU_IPV6_NEXTHDR_HOP 0
#define PWRU_IPV6_NEXTHDR_ROUTING 43
#define PWRU_IPV6_NEXTHDR_FRAGMENT 44
#define PWRU_IPV6_NEXTHDR_AUTH 51
#define PWRU_IPV6_NEXTHDR_DEST 60
/* Each starts with next header, then its length: in 8-byte units not
 * counting the first 8 bytes, except AH's, in 4-byte units not counting the
 * first 8. The fragment header's length is fixed. */
#define PWRU_IPV6_EXT_NEXTHDR_AT 0
#define PWRU_IPV6_EXT_LEN_AT 1
#define PWRU_IPV6_EXT_LEN_SHIFT 3
#define PWRU_IPV6_AUTH_LEN_SHIFT 2
#define PWRU_IPV6_FRAG_HLEN 8
#define PWRU_IPV6_FRAG_AT 2 /* frag_off, network order: offset << 3, then the M flag */
#define PWRU_IPV6_FRAG_OFFSET_MASK 0xfff8 /* nonzero: a later fragment, no L4 header */
/*
 * How far fill_tuple follows header chains; each step costs a helper call
 * on every traced hit. Two tags are QinQ (802.1ad, then 802.1Q, or two
 * 802.1Q). Six extension headers are RFC 8200's recommended order in full
 * (hop-by-hop, destination options, routing, fragment, AH, destination
 * options). Behind a third tag there is no tuple; a longer extension chain's
 * tuple has the addresses, the header type the walk stopped at as l4_proto,
 * and no ports.
 */
#define PWRU_MAX_VLAN_TAGS 2
#define PWRU_IPV6_MAX_EXT_HEADERS 6
/* TCP and UDP both start with source port, then destination port. */
#define PWRU_L4_PORTS_AT 0
#define PWRU_TCP_FLAGS_AT 13 /* FIN .. CWR, bit 0 first */
#define PWRU_TCP_SEQ_AT 4
#define PWRU_TCP_ACK_AT 8
#define PWRU_TCP_DOFF_AT 12 /* data offset in the high half: header length in 4-byte words */
#define PWRU_TCP_DOFF_SHIFT 4
/* ICMP and ICMPv6 echo: type, code, checksum, then identifier and sequence. */
#define PWRU_ICMP_ECHO_HLEN 8
#define PWRU_ICMP_ECHO_ID_AT 4 /* identifier, then sequence, both network order */
#define PWRU_ICMP_ECHO_REPLY 0
#define PWRU_ICMP_ECHO_REQUEST 8
#define PWRU_ICMPV6_ECHO_REQUEST 128
#define PWRU_ICMPV6_ECHO_REPLY 129

struct pwru_tuple {
	PWRU_U8 saddr[16]; /* IPv4 uses the first 4 bytes */
	PWRU_U8 daddr[16];
	PWRU_U16 sport; /* network byte order, as on the wire */
	PWRU_U16 dport; /* network byte order */
	PWRU_U16 l3_proto; /* host order: PWRU_ETH_P_IP / PWRU_ETH_P_IPV6, 0 if none */
	PWRU_U8 l4_proto; /* IPPROTO_* */
	PWRU_U8 tcp_flags; /* byte 13 of the TCP header */
};

/*
 * A ring record is a fixed core, then the optional parts the trace asked
 * for, in PWRU_PART_* bit order, each present only when its bit is set in
 * core.parts. A plain trace pays for the core alone; the parts are chosen
 * once per trace from pwru_filter_cfg (rodata), so every reservation size is
 * a constant the verifier knows.
 */
#define PWRU_PART_STACK (1 << 0)   /* struct pwru_part_stack: --output-stack / --output-caller */
#define PWRU_PART_DUMP (1 << 1)    /* struct pwru_part_dump: --output-skb / --output-skb-shared-info */
#define PWRU_PART_CB (1 << 2)      /* struct pwru_part_cb: --output-skb-cb */
#define PWRU_PART_TUNNEL (1 << 3)  /* struct pwru_part_tunnel: --output-tunnel */
#define PWRU_PART_IDENT (1 << 4)   /* struct pwru_part_ident: PWRU_OUT_IDENT */
#define PWRU_PART_CAPTURE (1 << 5) /* struct pwru_part_capture: --output-pcap; always last */
#define PWRU_PARTS_KNOWN 0x3f

struct pwru_event_core {
	PWRU_U64 skb_addr;
	PWRU_U64 ts_ns; /* bpf_ktime_get_ns() */
	PWRU_U64 drop_location; /* kfree_skb's location: return address into the dropping function */
	PWRU_U32 pid; /* thread group id */
	PWRU_U32 cpu;
	char comm[PWRU_COMM_LEN];
	PWRU_U32 netns; /* inode of the skb's network namespace */
	PWRU_U32 mark;
	PWRU_U32 ifindex;
	PWRU_U32 mtu;
	PWRU_U32 len;
	PWRU_U32 drop_reason; /* enum skb_drop_reason value, 0 when not a drop */
	char ifname[PWRU_IFNAMSIZ];
	PWRU_U16 protocol; /* skb->protocol, network byte order */
	PWRU_U16 hook_id; /* index into the hook table user space built */
	PWRU_U8 has_drop_reason; /* 1 when the hook carries a drop reason */
	PWRU_U8 parts; /* PWRU_PART_*: the optional parts after the core */
	struct pwru_tuple tuple;
	PWRU_U16 pad;
};

struct pwru_part_stack {
	PWRU_S64 stack_id; /* id in the stack map, < 0 when the map refused it */
};

struct pwru_part_dump {
	/* Key of this event's texts in the print_skb / print_shinfo maps; 0
	 * when none was stored. */
	PWRU_U64 dump_id;
};

struct pwru_part_cb {
	PWRU_U32 cb[5]; /* qdisc_skb_cb->data, as __sk_buff->cb[] */
	PWRU_U32 pad;
};

struct pwru_part_tunnel {
	struct pwru_tuple tuple; /* from skb->inner_network_header; zero when not tunnel traffic */
};

/*
 * What tells this packet from its neighbours of the same flow, read from the
 * header bytes the tuple already reads (and, for ICMP echo, 8 more): enough
 * to recognise the packet on another node after NAT changed its tuple
 * (agent/journey/stitch.h). Fields a packet does not have stay 0. Host order.
 */
struct pwru_part_ident {
	PWRU_U32 seq; /* TCP sequence number; ICMP/ICMPv6 echo: identifier << 16 | sequence */
	PWRU_U32 ack; /* TCP acknowledgement number */
	PWRU_U32 flow_label; /* IPv6 */
	PWRU_U16 ip_id; /* IPv4 identification */
	/* The bytes after the IP header and the extension headers walked, less
	 * TCP's header: TCP's data, UDP's header and data, ICMP's message. 0
	 * when the IP header's length is less (BIG TCP's 0). */
	PWRU_U16 l4_payload;
};

/* The packet's first bytes from capture_from; the rest of the record. */
struct pwru_part_capture {
	PWRU_U32 packet_len; /* the whole packet's length from capture_from (linear or not) */
	PWRU_U16 capture_len; /* bytes of data that hold packet bytes */
	PWRU_U8 capture_from; /* PWRU_CAPTURE_* */
	PWRU_U8 pad;
	PWRU_U8 data[PWRU_CAPTURE_MAX];
};

/* The layout of a record with `parts`: where `part` starts (present or
 * not), and the whole size. Shared by the writer and the reader. */
#ifdef __cplusplus
#define PWRU_LAYOUT_FN static constexpr
#else
#define PWRU_LAYOUT_FN static inline __attribute__((always_inline))
#endif

PWRU_LAYOUT_FN PWRU_U32 pwru_part_offset(PWRU_U32 parts, PWRU_U32 part)
{
	PWRU_U32 offset = (PWRU_U32)sizeof(struct pwru_event_core);
	if ((parts & PWRU_PART_STACK) && part > PWRU_PART_STACK)
		offset += (PWRU_U32)sizeof(struct pwru_part_stack);
	if ((parts & PWRU_PART_DUMP) && part > PWRU_PART_DUMP)
		offset += (PWRU_U32)sizeof(struct pwru_part_dump);
	if ((parts & PWRU_PART_CB) && part > PWRU_PART_CB)
		offset += (PWRU_U32)sizeof(struct pwru_part_cb);
	if ((parts & PWRU_PART_TUNNEL) && part > PWRU_PART_TUNNEL)
		offset += (PWRU_U32)sizeof(struct pwru_part_tunnel);
	if ((parts & PWRU_PART_IDENT) && part > PWRU_PART_IDENT)
		offset += (PWRU_U32)sizeof(struct pwru_part_ident);
	return offset;
}

PWRU_LAYOUT_FN PWRU_U32 pwru_record_size(PWRU_U32 parts)
{
	return pwru_part_offset(parts, PWRU_PART_CAPTURE) +
	       ((parts & PWRU_PART_CAPTURE) ? (PWRU_U32)sizeof(struct pwru_part_capture) : 0);
}

/* One BTF rendering (bpf_snprintf_btf) of a kernel object. */
struct pwru_btf_text {
	PWRU_S32 len; /* what the rendering needed; more than PWRU_BTF_TEXT_MAX - 1 means cut */
	PWRU_U32 pad;
	char text[PWRU_BTF_TEXT_MAX];
};

/* Per-hook settings fixed at load time (rodata), one entry per program slot. */
struct pwru_hook_cfg {
	PWRU_S8 skb_arg; /* position of struct sk_buff * among the tracepoint args */
	PWRU_S8 reason_arg; /* position of enum skb_drop_reason, or PWRU_ARG_NONE */
	PWRU_S8 location_arg; /* position of the drop location, or PWRU_ARG_NONE */
	PWRU_U8 frees_skb; /* the skb is freed here (kfree_skb, consume_skb): --filter-track-skb forgets it */
	PWRU_U16 hook_id;
	PWRU_U16 pad2;
};

/* The tracer's filters and output switches, fixed at load time (rodata
 * filter_cfg). pwru-agent's counting programs leave it all zero. */
struct pwru_filter_cfg {
	PWRU_U32 netns; /* 0: any */
	PWRU_U32 mark;
	PWRU_U32 mark_mask; /* 0: mark not filtered */
	PWRU_U32 ifindex; /* 0: any */
	PWRU_U8 want_stack; /* capture a stack id for --output-stack / --output-caller */
	PWRU_U8 has_pcap; /* run the injected pcap filter (bpf/pcap_stub.bpf.h) */
	PWRU_U8 track_skb_by_stack; /* kprobe backends: --filter-track-skb-by-stackid */
	PWRU_U8 track_skb; /* --filter-track-skb: a matched skb is reported until freed, filters or not */
	PWRU_U8 track_skb_in_netns; /* ...but only while it is in a traced netns (the agent's scoped traces) */
	PWRU_U8 output_flags; /* PWRU_OUT_* */
	PWRU_U16 capture_bytes; /* --output-pcap: packet bytes copied per event (<= PWRU_CAPTURE_MAX); 0: none */
	/* netns is 0 and the traced netns are the keys of the filter_netns map
	 * (the agent's traces of several netns): a hash lookup per skb, which
	 * traces of one netns never make (their compare is on netns). */
	PWRU_U8 netns_in_map;
	PWRU_U8 pad[7];
};

/* pwru-agent's always-on counting, fixed at load time (rodata count_cfg);
 * all zero in a trace, whose programs then never touch the counter maps. */
struct pwru_count_cfg {
	PWRU_U8 count_only; /* count drops and visits, make no events; filter_cfg is ignored */
	PWRU_U8 pad[3];
	PWRU_U32 visit_cache_slots; /* slots of visit_cache in use, a power of two; 0: none */
};

/* pwru-agent's always-on counters (pwru_count_cfg.count_only): per-CPU hash maps. */
struct pwru_drop_key {
	PWRU_U32 netns;
	PWRU_U32 reason; /* enum skb_drop_reason */
	PWRU_U64 location; /* kfree_skb's location: in the dropping function */
};

struct pwru_visit_key {
	PWRU_U32 netns;
	PWRU_U16 hook_id;
	PWRU_U16 pad;
};

struct pwru_count {
	PWRU_U64 packets;
	PWRU_U64 bytes;
};

/* Per-CPU direct-mapped slots in front of visit_counts: the first key to
 * land on a slot keeps it until its netns is gone (then user space frees
 * it, bpf/pwru_visit_sweep.bpf.c), so a live key lives on one CPU either in
 * its slot or in the hash map, never moving, and every sum only grows. All
 * slots form one per-CPU value (24 KiB, under the kernel's 32 KiB per-CPU
 * limit): contiguous memory, measured 30 ns a hit cheaper than one array
 * element per slot. */
#define PWRU_VISIT_CACHE_SLOTS 1024
/* The kernel's PCPU_MIN_UNIT_SIZE: the largest value a per-CPU map takes. */
#define PWRU_PERCPU_VALUE_MAX (32 << 10)

struct pwru_visit_slot {
	struct pwru_visit_key key;
	PWRU_U64 packets; /* 0: slot free */
	PWRU_U64 bytes;
};

struct pwru_visit_cache {
	struct pwru_visit_slot slot[PWRU_VISIT_CACHE_SLOTS];
};

/* Gone netns one run of bpf/pwru_visit_sweep.bpf.c frees the slots of. */
#define PWRU_VISIT_SWEEP_MAX_NETNS 1024

/* Indexes of the per-CPU counters map. */
enum pwru_counter {
	PWRU_CNT_EVENTS = 0, /* events written to the ring buffer */
	PWRU_CNT_LOST = 1, /* events that did not fit into the ring buffer */
	PWRU_CNT_FILTERED = 2, /* skbs rejected by the filters */
	PWRU_CNT_STACK_FAIL = 3, /* stack requested but the stack map refused it */
	PWRU_CNT_TRACK_FULL = 4, /* skb-by-stack tracking could not record an entry */
	PWRU_CNT_DROPS_OVERFLOW = 5, /* drops not counted: drop_counts was full */
	PWRU_CNT_VISITS_OVERFLOW = 6, /* visits not counted: visit_counts was full */
	PWRU_CNT_DUMP_LOST = 7, /* --output-skb/-shared-info texts the print maps could not take */
	PWRU_CNT_MAX = 8,
};

PWRU_STATIC_ASSERT(sizeof(struct pwru_tuple) == 40, "pwru_tuple ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_event_core) == 136, "pwru_event_core ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_part_stack) == 8, "pwru_part_stack ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_part_dump) == 8, "pwru_part_dump ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_part_cb) == 24, "pwru_part_cb ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_part_tunnel) == 40, "pwru_part_tunnel ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_part_ident) == 16, "pwru_part_ident ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_part_capture) == 8 + PWRU_CAPTURE_MAX, "pwru_part_capture ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_btf_text) == 8 + PWRU_BTF_TEXT_MAX, "pwru_btf_text ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_hook_cfg) == 8, "pwru_hook_cfg ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_filter_cfg) == 32, "pwru_filter_cfg ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_count_cfg) == 8, "pwru_count_cfg ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_drop_key) == 16, "pwru_drop_key ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_visit_key) == 8, "pwru_visit_key ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_count) == 16, "pwru_count ABI size");
PWRU_STATIC_ASSERT(sizeof(struct pwru_visit_slot) == 24, "pwru_visit_slot ABI size");

/*
 * Layout the BPF programs rely on beyond the sizes: one read or copy that
 * spans several fields, or a mask standing in for a bound.
 */
/* fill_tuple_at reads an IPv6 header's saddr and daddr (adjacent on the
 * wire) with one 32-byte read into tuple->saddr. */
PWRU_STATIC_ASSERT(PWRU_SIZEOF_FIELD(struct pwru_tuple, saddr) == PWRU_IPV6_ADDR_LEN &&
			   PWRU_SIZEOF_FIELD(struct pwru_tuple, daddr) == PWRU_IPV6_ADDR_LEN,
		   "pwru_tuple addresses hold an IPv6 address each");
PWRU_STATIC_ASSERT(PWRU_OFFSETOF(struct pwru_tuple, daddr) ==
			   PWRU_OFFSETOF(struct pwru_tuple, saddr) + PWRU_IPV6_ADDR_LEN,
		   "pwru_tuple daddr follows saddr: IPv6 addresses are read into both at once");
/* count_visit_cached loads, compares and stores a slot's key as one u64. */
PWRU_STATIC_ASSERT(sizeof(struct pwru_visit_key) == sizeof(PWRU_U64),
		   "pwru_visit_key is compared as one 64-bit word");
PWRU_STATIC_ASSERT(PWRU_OFFSETOF(struct pwru_visit_slot, key) == 0 && sizeof(struct pwru_visit_slot) % 8 == 0,
		   "every visit slot's key is 8-byte aligned for its 64-bit access");
/* The cache is one per-CPU value: the kernel refuses per-CPU values over
 * PCPU_MIN_UNIT_SIZE (32 KiB); slot indexes are masked, not compared. */
PWRU_STATIC_ASSERT(sizeof(struct pwru_visit_cache) == PWRU_VISIT_CACHE_SLOTS * sizeof(struct pwru_visit_slot),
		   "pwru_visit_cache is its slots, nothing else");
PWRU_STATIC_ASSERT(sizeof(struct pwru_visit_cache) == (24 << 10), "pwru_visit_cache is the 24 KiB per CPU its comments state");
PWRU_STATIC_ASSERT(sizeof(struct pwru_visit_cache) <= PWRU_PERCPU_VALUE_MAX,
		   "pwru_visit_cache fits the kernel's per-CPU value limit");
PWRU_STATIC_ASSERT((PWRU_VISIT_CACHE_SLOTS & (PWRU_VISIT_CACHE_SLOTS - 1)) == 0,
		   "PWRU_VISIT_CACHE_SLOTS is a power of two (slot indexes are masked)");
/* capture_packet bounds the copy with n &= PWRU_CAPTURE_MAX - 1. */
PWRU_STATIC_ASSERT((PWRU_CAPTURE_MAX & (PWRU_CAPTURE_MAX - 1)) == 0 && PWRU_CAPTURE_MAX <= 0x10000,
		   "PWRU_CAPTURE_MAX is a power of two that capture_len (u16) can count");
PWRU_STATIC_ASSERT(PWRU_OFFSETOF(struct pwru_part_capture, data) == 8, "capture header before the packet bytes");
/* Parts are written at pwru_part_offset() with 64-bit stores: every part
 * must keep the next one 8-byte aligned. */
PWRU_STATIC_ASSERT(sizeof(struct pwru_event_core) % 8 == 0 && sizeof(struct pwru_part_stack) % 8 == 0 &&
			   sizeof(struct pwru_part_dump) % 8 == 0 && sizeof(struct pwru_part_cb) % 8 == 0 &&
			   sizeof(struct pwru_part_tunnel) % 8 == 0 && sizeof(struct pwru_part_ident) % 8 == 0,
		   "record parts keep 8-byte alignment");
PWRU_STATIC_ASSERT(PWRU_PARTS_KNOWN == (PWRU_PART_STACK | PWRU_PART_DUMP | PWRU_PART_CB | PWRU_PART_TUNNEL |
					PWRU_PART_IDENT | PWRU_PART_CAPTURE),
		   "PWRU_PARTS_KNOWN names every part");
PWRU_STATIC_ASSERT(PWRU_PART_CAPTURE > PWRU_PARTS_KNOWN - PWRU_PART_CAPTURE,
		   "the capture part is the last: its data runs to the record's end");
/* The record's parts are counted in a u8 (pwru_event_core.parts). */
PWRU_STATIC_ASSERT(PWRU_PARTS_KNOWN <= 0xff, "parts fit pwru_event_core.parts");

#ifdef __cplusplus
static_assert(pwru_record_size(0) == 136, "a plain trace's record is the core alone");
static_assert(pwru_record_size(PWRU_PARTS_KNOWN & ~(PWRU_PART_CAPTURE | PWRU_PART_IDENT)) == 216,
	      "record with every text part");
static_assert(pwru_record_size(PWRU_PART_IDENT) == 152, "a --summary trace's record: core and identity");
static_assert(pwru_part_offset(PWRU_PART_STACK | PWRU_PART_TUNNEL, PWRU_PART_TUNNEL) == 144, "parts follow in bit order");

/*
 * User space's view of one event: the core and every optional part, those
 * the record did not carry at their "absent" values (stack_id -1, zeros).
 * Filled by pwru::decode_event_record (agent/events/event_record.h); never
 * crosses the boundary.
 */
struct pwru_event : pwru_event_core {
	PWRU_S64 stack_id;
	PWRU_U64 dump_id;
	PWRU_U32 cb[5];
	PWRU_U8 capture_from;
	PWRU_U8 pad2;
	PWRU_U16 capture_len;
	struct pwru_tuple tunnel_tuple;
	struct pwru_part_ident ident; /* all 0 without PWRU_PART_IDENT in parts */
};
#endif

#endif /* PWRU_ABI_H */
