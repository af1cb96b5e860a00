// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Frees the visit cache slots (skb_event.bpf.h: visit_cache) of network
 * namespaces that are gone, on the CPU it runs on.
 *
 * A CPU's slots are one per-CPU value; the counting programs write them
 * without atomics because only their own CPU does. User space cannot free a
 * slot by writing the value back: that rewrites the whole 24 KiB and loses
 * whatever the CPU counted in the other slots meanwhile. So user space puts
 * the gone netns into gone_netns and runs this program on each CPU in turn
 * (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU), where it clears only the
 * slots of those netns. It may interrupt a counting program on that CPU (an
 * IPI), but that program only writes a slot that is free or holds its own
 * key; a gone netns has no packets left, so no counting program is inside
 * one of the slots cleared here. A netns is gone only past its pod's grace
 * period, when its series are no longer shown: its final counts were
 * scraped from these slots first.
 *
 * Its own object, not a program of the counting objects: they stay exactly
 * as they are, and this one reuses their visit_cache map.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include "pwru_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Same definition as in skb_event.bpf.h; user space points it at that map. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pwru_visit_cache);
	__uint(max_entries, 1);
} visit_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); /* netns inode */
	__type(value, __u8);
	__uint(max_entries, PWRU_VISIT_SWEEP_MAX_NETNS);
} gone_netns SEC(".maps");

struct sweep_ctx {
	struct pwru_visit_cache *cache;
	int freed;
};

static long sweep_slot(__u32 i, void *data)
{
	struct sweep_ctx *sweep = data;
	struct pwru_visit_slot *slot = &sweep->cache->slot[i & (PWRU_VISIT_CACHE_SLOTS - 1)];
	if (slot->packets == 0)
		return 0;
	__u32 netns = slot->key.netns;
	if (!bpf_map_lookup_elem(&gone_netns, &netns))
		return 0;
	/*
	 * packets == 0 marks the slot free: a counting program then writes
	 * its own key before counting, so the stale key can stay. bytes
	 * first, packets last: on the CPU that runs the test this program can
	 * be interrupted by a counting one, which must not claim the slot
	 * before every field of the old key's counts is cleared.
	 */
	slot->bytes = 0;
	asm volatile("" ::: "memory");
	slot->packets = 0;
	sweep->freed++;
	return 0;
}

/* Returns the number of slots it freed on this CPU. bpf_loop (5.17+), not a
 * bounded loop: the verifier walks 1024 iterations of a map lookup past its
 * complexity limit. */
SEC("raw_tp")
int pwru_visit_sweep(void *ctx)
{
	__u32 zero = 0;
	struct sweep_ctx sweep = {.cache = bpf_map_lookup_elem(&visit_cache, &zero), .freed = 0};
	if (!sweep.cache)
		return 0;
	bpf_loop(PWRU_VISIT_CACHE_SLOTS, sweep_slot, &sweep, 0);
	return sweep.freed;
}
