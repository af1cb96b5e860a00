// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Tests only: a tc and an XDP program that let every packet through, for
 * --filter-trace-tc and --filter-trace-xdp to trace (tests/tools/
 * attach_test_progs.cpp attaches them). The tc program reads a byte with a
 * helper, so --filter-track-bpf-helpers has a helper call to find and probe;
 * the XDP program calls nothing. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int pwru_test_tc(struct __sk_buff *skb)
{
	__u8 first_byte;

	bpf_skb_load_bytes(skb, 0, &first_byte, sizeof(first_byte));
	return 0; /* TC_ACT_OK */
}

SEC("xdp")
int pwru_test_xdp(struct xdp_md *xdp)
{
	return XDP_PASS;
}
