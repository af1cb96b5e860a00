/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel types the BPF programs read, declared by hand with CO-RE
 * (preserve_access_index) instead of a generated vmlinux.h.
 *
 * Why not `bpftool btf dump file /sys/kernel/btf/vmlinux format c`:
 *  - the build must work where the build host has no /sys/kernel/btf
 *    (container and CI image builds), and a 3 MB generated header checked
 *    in would pin one kernel's layout into review diffs for no gain;
 *  - CO-RE only needs the names of the fields we touch: libbpf matches
 *    them against the running kernel's BTF at load, finds members that
 *    moved into anonymous unions/struct_groups, and fails the load (not
 *    silently misreads) when a field is gone.
 * So this header lists only what bpf/ reads; offsets here are irrelevant.
 */
#ifndef PWRU_VMLINUX_MIN_H
#define PWRU_VMLINUX_MIN_H
/* Tells bpf_tracing.h to use the kernel's pt_regs field names (di, not rdi). */
#define __VMLINUX_H__

#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	char name[16];
	int ifindex;
	unsigned int mtu;
	possible_net_t nd_net;
};

struct sock_common {
	possible_net_t skc_net;
};

struct sock {
	struct sock_common __sk_common;
};

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	__u32 mark;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned int tail;
	unsigned char *head;
	unsigned char *data;
	unsigned int end; /* offset of skb_shared_info from head (64-bit kernels) */
	__u16 inner_network_header;
	char cb[48];
};

/* The qdisc's view of skb->cb; data[] is what tc BPF sees as __sk_buff->cb[]. */
struct qdisc_skb_cb {
	unsigned char data[20];
};

/* Only named: --output-skb-shared-info asks BTF for its type id. */
struct skb_shared_info {
	__u8 flags;
};

/* --filter-trace-xdp: what an XDP program's context points at. */
struct xdp_rxq_info {
	struct net_device *dev;
};

struct xdp_buff {
	void *data;
	void *data_end;
	struct xdp_rxq_info *rxq;
};

struct task_struct {
	void *stack;
};

/* x86-64 registers at a kprobe, as bpf_tracing.h's PT_REGS_* read them. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs,
		flags, sp, ss;
};

#pragma clang attribute pop

#endif /* PWRU_VMLINUX_MIN_H */
