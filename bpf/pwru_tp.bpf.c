// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Tracepoint backend: tp_btf programs on the tracepoints that carry a
 * struct sk_buff *.
 *
 * A tp_btf program is bound to one tracepoint at load (its attach BTF id) and
 * cannot ask which tracepoint fired, so the hook id has to come from the
 * program itself. Rather than opening and loading this object once per
 * tracepoint (each load re-parses the kernel's BTF), the object carries
 * PWRU_MAX_TP_SLOTS identical programs; user space points each used slot at
 * one tracepoint and fills hook_cfg[slot] in rodata, and disables the rest.
 * Because hook_cfg is frozen rodata indexed by a constant, the verifier sees
 * every argument position as a known constant and prunes the ctx reads of
 * positions the tracepoint does not have.
 *
 * The section is ours ("pwru_tp", registered by agent/filter as tp_btf):
 * its prepare-load hook is where the pcap filter is written into the stubs.
 */
/* tp_btf arguments are BTF pointers: see skb_event.bpf.h */
#define PWRU_SKB_IS_BTF_PTR 1
#include "skb_event.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct pwru_hook_cfg hook_cfg[PWRU_MAX_TP_SLOTS] = {};

/*
 * ctx[pos] for a pos that is constant per program but not per source line.
 * Written as one inline-asm load per position: with plain ctx[N] in a
 * switch, clang merges the cases into one load through ctx + 8 * pos, and
 * the verifier refuses any ctx access through a modified pointer.
 */
#define PWRU_CTX_LOAD(ctx, n)                                                   \
	({                                                                      \
		__u64 __v;                                                      \
		asm volatile("%0 = *(u64 *)(%1 + " #n " * 8)" : "=r"(__v) : "r"(ctx)); \
		__v;                                                            \
	})

static __always_inline __u64 tp_arg(__u64 *ctx, int pos)
{
	switch (pos) {
	case 0: return PWRU_CTX_LOAD(ctx, 0);
	case 1: return PWRU_CTX_LOAD(ctx, 1);
	case 2: return PWRU_CTX_LOAD(ctx, 2);
	case 3: return PWRU_CTX_LOAD(ctx, 3);
	case 4: return PWRU_CTX_LOAD(ctx, 4);
	case 5: return PWRU_CTX_LOAD(ctx, 5);
	case 6: return PWRU_CTX_LOAD(ctx, 6);
	case 7: return PWRU_CTX_LOAD(ctx, 7);
	default: return 0;
	}
}

/*
 * pwru-agent's programs: straight from the arguments to the counters. The
 * fields are read from hook_cfg one by one, where the verifier sees each as
 * a constant, rather than through a copy on the stack as below (a dozen
 * loads and stores a hit); the skb position is read unsigned (never
 * PWRU_ARG_NONE), which spares its sign extension.
 */
static __always_inline int count_tp(__u64 *ctx, const int slot)
{
	struct sk_buff *skb = (struct sk_buff *)tp_arg(ctx, (__u8)hook_cfg[slot].skb_arg);
	if (!skb)
		return 0;
	if (hook_cfg[slot].reason_arg == PWRU_ARG_NONE) {
		count_skb(skb, hook_cfg[slot].hook_id, false, 0, 0);
		return 0;
	}
	__u32 reason = (__u32)tp_arg(ctx, hook_cfg[slot].reason_arg);
	__u64 location = hook_cfg[slot].location_arg != PWRU_ARG_NONE ? tp_arg(ctx, hook_cfg[slot].location_arg) : 0;
	count_skb(skb, hook_cfg[slot].hook_id, true, reason, location);
	return 0;
}

static __always_inline int handle_tp(__u64 *ctx, const int slot)
{
	if (count_cfg.count_only)
		return count_tp(ctx, slot);
	const struct pwru_hook_cfg cfg = hook_cfg[slot];
	struct sk_buff *skb = (struct sk_buff *)tp_arg(ctx, cfg.skb_arg);
	bool has_reason = cfg.reason_arg != PWRU_ARG_NONE;
	__u32 reason = has_reason ? (__u32)tp_arg(ctx, cfg.reason_arg) : 0;
	__u64 location = cfg.location_arg != PWRU_ARG_NONE ? tp_arg(ctx, cfg.location_arg) : 0;
	report_skb(ctx, skb, cfg.hook_id, has_reason, reason, location);
	if (cfg.frees_skb)
		forget_tracked_skb(skb);
	return 0;
}

/* n is two octal digits written as a C literal: slot = 8 * tens + units. */
#define PWRU_TP_SLOT(n) \
	SEC("pwru_tp") int pwru_tp_##n(__u64 *ctx) { return handle_tp(ctx, (n / 10) * 8 + n % 10); }

#define PWRU_TP_SLOTS8(a) \
	PWRU_TP_SLOT(a##0) PWRU_TP_SLOT(a##1) PWRU_TP_SLOT(a##2) PWRU_TP_SLOT(a##3) \
	PWRU_TP_SLOT(a##4) PWRU_TP_SLOT(a##5) PWRU_TP_SLOT(a##6) PWRU_TP_SLOT(a##7)

/* 64 slots, named pwru_tp_00 .. pwru_tp_77 (octal digits keep the macro simple). */
_Static_assert(PWRU_MAX_TP_SLOTS == 8 * 8, "the slot programs below are eight rows of eight");
PWRU_TP_SLOTS8(0) PWRU_TP_SLOTS8(1) PWRU_TP_SLOTS8(2) PWRU_TP_SLOTS8(3)
PWRU_TP_SLOTS8(4) PWRU_TP_SLOTS8(5) PWRU_TP_SLOTS8(6) PWRU_TP_SLOTS8(7)
