// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Tests only: a tc and an XDP program that let every packet through, for
 * --filter-trace-tc and --filter-trace-xdp to trace (tests/support/
 * attach_test_progs attaches them). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int pwru_test_tc(struct __sk_buff *skb)
{
	return skb->len ? 0 /* TC_ACT_OK */ : 0;
}

SEC("xdp")
int pwru_test_xdp(struct xdp_md *xdp)
{
	return XDP_PASS;
}
