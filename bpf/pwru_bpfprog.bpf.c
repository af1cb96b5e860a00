// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * --filter-trace-tc and --filter-trace-xdp: fentry programs attached to the
 * entry function of every tc (sched_cls) and XDP program loaded on the
 * node, as pwru does. One copy of this object is loaded per traced program
 * (an fentry program is bound to its target at load); traced_hook_id names
 * the target in the events. The maps are the tracepoint object's.
 *
 * The section is ours ("pwru_fentry", registered by agent/filter as
 * tracing/fentry) so the pcap filter is written into the stubs at load.
 */
#include "skb_event.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u16 traced_hook_id = 0;

/* A tc program's context is a struct __sk_buff *, which is the kernel's
 * struct sk_buff underneath: report it like any hook's skb. */
SEC("pwru_fentry")
int pwru_fentry_tc(__u64 *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx[0];
	report_skb(ctx, skb, traced_hook_id, false, 0, 0);
	return 0;
}

/*
 * An XDP program sees no skb yet: the event describes the xdp_buff (its
 * address in the SKB column, as pwru), the frame from data to data_end, and
 * the receiving device.
 */
SEC("pwru_fentry")
int pwru_fentry_xdp(__u64 *ctx)
{
	struct xdp_buff *xdp = (struct xdp_buff *)ctx[0];
	void *data = BPF_CORE_READ(xdp, data);
	void *data_end = BPF_CORE_READ(xdp, data_end);
	struct net_device *dev = BPF_CORE_READ(xdp, rxq, dev);
	if (netns_filtered() && (!dev || !netns_wanted(BPF_CORE_READ(dev, nd_net.net, ns.inum))))
		return 0;
	if (filter_cfg.ifindex && (!dev || BPF_CORE_READ(dev, ifindex) != filter_cfg.ifindex))
		return 0;
	if (filter_cfg.has_pcap && !pwru_pcap_filter_l2(data, data_end)) {
		count(PWRU_CNT_FILTERED);
		return 0;
	}
	/* The core alone: an xdp_buff has no stack id, texts or cb to show. */
	struct pwru_event_core *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
	if (!event) {
		count(PWRU_CNT_LOST);
		return 0;
	}
	__builtin_memset(event, 0, sizeof(*event));
	fill_event_origin(event, (__u64)xdp, traced_hook_id);
	event->len = (__u32)((unsigned long)data_end - (unsigned long)data);
	bpf_probe_read_kernel(&event->protocol, sizeof(event->protocol), data + PWRU_ETH_TYPE_AT);
	if (dev)
		event->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	fill_event_device(event, dev);
	if (event->protocol == bpf_htons(PWRU_ETH_P_IP) || event->protocol == bpf_htons(PWRU_ETH_P_IPV6))
		fill_tuple_at(data, PWRU_ETH_HLEN, event->len, event->protocol == bpf_htons(PWRU_ETH_P_IP) ? 4 : 6, &event->tuple);
	bpf_ringbuf_submit(event, 0);
	count(PWRU_CNT_EVENTS);
	return 0;
}
