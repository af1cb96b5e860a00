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

/*
 * --filter-track-skb-by-stackid: the skb each kernel stack carries, so that
 * later hooks on the same stack report it although the filters would not
 * match it any more (NAT, encapsulation) or the function has no skb at all
 * (--filter-non-skb-funcs). pwru keys this by the outermost saved frame
 * pointer; on kernels built with the ORC unwinder (Debian's among them) rbp
 * is not a frame pointer and that walk reads garbage. The key here is the
 * current task, plus one bit saying whether the code runs on the task's own
 * stack or on an interrupt stack (softirq work on top of it), which is what
 * "this stack" means without frame pointers.
 */
#define PWRU_KERNEL_STACK_SIZE (16 << 10) /* THREAD_SIZE on x86-64 without KASAN */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);   /* stack key */
	__type(value, __u64); /* skb address */
	__uint(max_entries, 16384);
} stack_skb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);   /* skb address */
	__type(value, __u64); /* stack key */
	__uint(max_entries, 16384);
} skb_stack SEC(".maps");

static __always_inline __u64 stack_key(struct pt_regs *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	unsigned long stack = (unsigned long)BPF_CORE_READ(task, stack);
	unsigned long sp = PT_REGS_SP(ctx);
	bool on_task_stack = sp - stack < PWRU_KERNEL_STACK_SIZE;
	/* task_struct is cache-line aligned: bit 0 is free for the flag. */
	return (__u64)task | (on_task_stack ? 0 : 1);
}

static __always_inline void handle_kprobe(struct pt_regs *ctx, struct sk_buff *skb)
{
	const __u16 hook_id = (__u16)bpf_get_attach_cookie(ctx);
	/* pwru-agent's programs: straight to the counters. */
	if (count_cfg.count_only) {
		if (skb)
			count_skb(skb, hook_id, false, 0, 0);
		return;
	}
	if (!filter_cfg.track_skb_by_stack) {
		report_skb(ctx, skb, hook_id, false, 0, 0);
		return;
	}
	if (!skb)
		return;
	__u64 key = stack_key(ctx);
	if (bpf_map_lookup_elem(&stack_skb, &key)) {
		emit_skb_event(ctx, skb, hook_id, false, 0, 0);
		return;
	}
	if (!report_skb(ctx, skb, hook_id, false, 0, 0))
		return;
	__u64 addr = (__u64)skb;
	if (bpf_map_update_elem(&stack_skb, &key, &addr, BPF_ANY) ||
	    bpf_map_update_elem(&skb_stack, &addr, &key, BPF_ANY))
		count(PWRU_CNT_TRACK_FULL);
}

/* --filter-non-skb-funcs: a function without an skb reports the skb its
 * stack carries, if any. */
static __always_inline void handle_non_skb(struct pt_regs *ctx)
{
	__u64 key = stack_key(ctx);
	__u64 *skb = bpf_map_lookup_elem(&stack_skb, &key);
	if (skb && *skb)
		emit_skb_event(ctx, (struct sk_buff *)*skb, (__u16)bpf_get_attach_cookie(ctx), false, 0, 0);
}

/* Attached to kfree_skbmem while tracking: a freed skb leaves its stack
 * and the tracked set, so the next skb at its address is filtered afresh
 * and nothing reads freed memory. */
static __always_inline void handle_skb_freed(struct sk_buff *skb)
{
	__u64 addr = (__u64)skb;
	forget_tracked_skb(skb);
	__u64 *key = bpf_map_lookup_elem(&skb_stack, &addr);
	if (!key)
		return;
	__u64 *carried = bpf_map_lookup_elem(&stack_skb, key);
	if (carried && *carried == addr)
		bpf_map_delete_elem(&stack_skb, key);
	bpf_map_delete_elem(&skb_stack, &addr);
}

/*
 * --filter-track-skb follows clones and copies, as pwru does (it uses
 * fexit on skb_clone and skb_copy): the entry remembers, per task, which
 * tracked skb is being cloned; the return adds the new skb to the tracked
 * set. A clone's headers are the original's, so this matters where the
 * clone then goes somewhere the filters do not look: another device (a
 * bridge flooding, a packet tap), another netns, or through NAT.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);   /* pid_tgid */
	__type(value, __u64); /* the tracked skb being cloned */
	__uint(max_entries, 4096);
} clone_src SEC(".maps");

SEC("kprobe")
int pwru_clone_entry(struct pt_regs *ctx)
{
	__u64 src = PT_REGS_PARM1(ctx);
	if (!bpf_map_lookup_elem(&tracked_skbs, &src))
		return 0;
	__u64 task = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&clone_src, &task, &src, BPF_ANY);
	return 0;
}

SEC("kretprobe")
int pwru_clone_exit(struct pt_regs *ctx)
{
	__u64 task = bpf_get_current_pid_tgid();
	if (!bpf_map_lookup_elem(&clone_src, &task))
		return 0;
	bpf_map_delete_elem(&clone_src, &task);
	__u64 clone = PT_REGS_RC(ctx);
	__u8 one = 1;
	if (clone && bpf_map_update_elem(&tracked_skbs, &clone, &one, BPF_ANY))
		count(PWRU_CNT_TRACK_FULL);
	return 0;
}

#define PWRU_KPROBE_PROGS(section, prefix)                                                         \
	SEC(section) int prefix##_skb_1(struct pt_regs *ctx)                                       \
	{ handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM1(ctx)); return 0; }                    \
	SEC(section) int prefix##_skb_2(struct pt_regs *ctx)                                       \
	{ handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM2(ctx)); return 0; }                    \
	SEC(section) int prefix##_skb_3(struct pt_regs *ctx)                                       \
	{ handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM3(ctx)); return 0; }                    \
	SEC(section) int prefix##_skb_4(struct pt_regs *ctx)                                       \
	{ handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM4(ctx)); return 0; }                    \
	SEC(section) int prefix##_skb_5(struct pt_regs *ctx)                                       \
	{ handle_kprobe(ctx, (struct sk_buff *)PT_REGS_PARM5(ctx)); return 0; }                    \
	SEC(section) int prefix##_no_skb(struct pt_regs *ctx)                                      \
	{ handle_non_skb(ctx); return 0; }                                                         \
	SEC(section) int prefix##_skb_freed(struct pt_regs *ctx)                                   \
	{ handle_skb_freed((struct sk_buff *)PT_REGS_PARM1(ctx)); return 0; }

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
