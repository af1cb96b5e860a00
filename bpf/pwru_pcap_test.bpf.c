// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test harness for the pcap filter path: a raw_tp program, run with
 * BPF_PROG_TEST_RUN, that feeds the packet in `packet` to the same stubs the
 * tracing programs use and stores their verdicts. The differential test
 * compares them with libpcap's interpreter.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include "pcap_stub.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PWRU_TEST_PACKET_MAX 2048

unsigned char packet[PWRU_TEST_PACKET_MAX];
__u32 packet_len;
__u32 verdict_l2;
__u32 verdict_l3;

SEC("pwru_pcap_test")
int pwru_pcap_run(void *ctx)
{
	/* The stubs see kernel addresses as plain numbers, as on an skb: copy
	 * the pointer through the helper so the verifier does not treat the
	 * filter's address arithmetic as map-value pointer math. */
	unsigned long start = 0;
	void *p = packet;
	bpf_probe_read_kernel(&start, sizeof(start), &p);
	__u32 len = packet_len;
	if (len > PWRU_TEST_PACKET_MAX)
		len = PWRU_TEST_PACKET_MAX;
	verdict_l2 = pwru_pcap_filter_l2((void *)start, (void *)(start + len));
	verdict_l3 = pwru_pcap_filter_l3((void *)start, (void *)(start + len));
	return 0;
}
