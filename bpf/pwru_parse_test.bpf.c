// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test harness for the tracer's packet parsing: a raw_tp program, run with
 * BPF_PROG_TEST_RUN, that lays a fake sk_buff around the bytes in `packet`
 * and runs the tracer's own fill_tuple (with the packet's identity),
 * fill_tunnel_tuple and capture_packet
 * (skb_event.bpf.h, unchanged) on it. The fake skb's fields sit at the
 * running kernel's offsets (CO-RE), so the helpers read it exactly as they
 * read a real skb. tests/bpf/packet_parse_test.cpp compares the results with
 * a parse in user space.
 */
#include "skb_event.bpf.h"

/* The helpers exercised here do not filter; the stubs stay unused. */
#pragma clang diagnostic ignored "-Wunused-function"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PWRU_PARSE_TEST_HEAD 4096
#define PWRU_PARSE_TEST_SKB 1024

/* The skb's buffer from head: the packet, then whatever user space puts
 * after it (bytes past tail, which the helpers must not take as packet). */
unsigned char packet[PWRU_PARSE_TEST_HEAD];
unsigned char fake_skb[PWRU_PARSE_TEST_SKB] __attribute__((aligned(8)));

/* The skb's fields, as offsets from head like the kernel keeps them. */
__u32 skb_len;
__u32 skb_data_off;
__u32 skb_tail;
__u16 skb_network_header;
__u16 skb_mac_header;
__u16 skb_inner_network_header;
__be16 skb_protocol;

/* 1 when the kernel's sk_buff fits fake_skb with the field sizes written. */
__u32 layout_ok;
struct pwru_tuple tuple;
struct pwru_tuple tunnel_tuple;
struct pwru_part_ident ident;
struct pwru_part_capture capture;

#define PWRU_SET_FIELD(field, type, value)                                                  \
	do {                                                                                 \
		if (bpf_core_field_size(struct sk_buff, field) != sizeof(type))              \
			return 0;                                                            \
		*(type *)&fake_skb[bpf_core_field_offset(struct sk_buff, field)] = (value); \
	} while (0)

/* A map value's address as a plain number, as kernel addresses are on an
 * skb: through the helper, so the verifier does not treat the helpers'
 * arithmetic on it as map-value pointer math. */
static __always_inline unsigned long kernel_address(void *p)
{
	unsigned long addr = 0;
	bpf_probe_read_kernel(&addr, sizeof(addr), &p);
	return addr;
}

SEC("raw_tp")
int pwru_parse_run(void *ctx)
{
	layout_ok = 0;
	if (bpf_core_type_size(struct sk_buff) > PWRU_PARSE_TEST_SKB)
		return 0;
	unsigned long head = kernel_address(packet);
	PWRU_SET_FIELD(head, __u64, head);
	PWRU_SET_FIELD(data, __u64, head + skb_data_off);
	PWRU_SET_FIELD(len, __u32, skb_len);
	PWRU_SET_FIELD(tail, __u32, skb_tail);
	PWRU_SET_FIELD(network_header, __u16, skb_network_header);
	PWRU_SET_FIELD(mac_header, __u16, skb_mac_header);
	PWRU_SET_FIELD(inner_network_header, __u16, skb_inner_network_header);
	PWRU_SET_FIELD(protocol, __be16, skb_protocol);
	layout_ok = 1;

	struct sk_buff *skb = (struct sk_buff *)kernel_address(fake_skb);
	/* As emit_skb_event and fill_extra_outputs hand them over: zeroed. */
	__builtin_memset(&tuple, 0, sizeof(tuple));
	__builtin_memset(&tunnel_tuple, 0, sizeof(tunnel_tuple));
	__builtin_memset(&ident, 0, sizeof(ident));
	fill_tuple(skb, &tuple, &ident);
	fill_tunnel_tuple(skb, &tunnel_tuple);
	capture_packet(skb, &capture);
	return 0;
}
