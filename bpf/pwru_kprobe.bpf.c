// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kprobe and kprobe-multi backends: one program per position of the
 * struct sk_buff * among the first five arguments, attached to every skb
 * function with that position. The hook id is the attach cookie user space
 * gave each function (kprobe: perf link cookie; kprobe-multi: per-symbol
 * cookie), so one program serves every function.
 *
 * Sections are ours ("pwru_kprobe", "pwru_kprobe_multi", registered by
 * agent/filter) so the pcap filter is written into the stubs at load. The
 * two feature probes at the bottom use libbpf's own sections: backend
 * auto-detection attaches them to one function to see what the kernel allows.
 */
#include "skb_event.bpf.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int handle_kprobe(struct pt_regs *ctx, struct sk_buff *skb)
{
	return report_skb(ctx, skb, (__u16)bpf_get_attach_cookie(ctx), false, 0, 0);
}

#define PWRU_KPROBE_PROGS(section, prefix)                                                         \
	SEC(section) int prefix##_skb_1(struct pt_regs *ctx)                                       \
	{ return handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM1(ctx)); }                       \
	SEC(section) int prefix##_skb_2(struct pt_regs *ctx)                                       \
	{ return handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM2(ctx)); }                       \
	SEC(section) int prefix##_skb_3(struct pt_regs *ctx)                                       \
	{ return handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM3(ctx)); }                       \
	SEC(section) int prefix##_skb_4(struct pt_regs *ctx)                                       \
	{ return handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM4(ctx)); }                       \
	SEC(section) int prefix##_skb_5(struct pt_regs *ctx)                                       \
	{ return handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM5(ctx)); }

PWRU_KPROBE_PROGS("pwru_kprobe", pwru_kprobe)
PWRU_KPROBE_PROGS("pwru_kprobe_multi", pwru_kmulti)

SEC("kprobe")
int pwru_feature_kprobe(struct pt_regs *ctx)
{
	return 0;
}

SEC("kprobe.multi")
int pwru_feature_kprobe_multi(struct pt_regs *ctx)
{
	return 0;
}
