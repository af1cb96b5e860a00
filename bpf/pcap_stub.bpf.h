/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Placeholders for the pcap filter, overwritten before load.
 *
 * Each stub is a BPF subprogram whose body is a marker (r0 = MAGIC), two
 * register moves that tell the loader which registers hold data and
 * data_end, and PWRU_PCAP_STUB_INSNS no-ops (r0 = r0). At load, libbpf calls our
 * prepare hook after it has appended subprograms; agent/filter writes the
 * translated filter into the *end* of the no-op block (same length, so no
 * jump or call offset anywhere else moves), leaving its verdict in r0. The
 * leftover no-ops run once, before any branch, which keeps the verifier
 * from walking them once per path and from seeing unreachable code.
 *
 * The no-op is a register self-move, not `goto +0`: every jump is a
 * verifier prune point that stores a state copy, which made 30 hooks with
 * two 4096-instruction stubs take 4.4 s to load (measured on 6.18); self-
 * moves verify in a fraction of that, and the x86 JIT emits no code for
 * them.
 *
 * Unpatched (no filter given), the stub returns MAGIC: everything matches.
 */
#ifndef PWRU_PCAP_STUB_BPF_H
#define PWRU_PCAP_STUB_BPF_H

#include "pwru_abi.h"

#define PWRU_STR_(x) #x
#define PWRU_STR(x) PWRU_STR_(x)

/* r1-r5 are free for the filter's helper calls and r6-r9 hold its state,
 * so everything but the two inputs is declared clobbered. */
#define PWRU_PCAP_STUB(name, magic)                                                  \
	static __noinline bool name(void *data, void *data_end)                      \
	{                                                                             \
		asm volatile("r0 = " PWRU_STR(magic) "\n"                             \
			     "%[d] = %[d]\n"                                          \
			     "%[e] = %[e]\n"                                          \
			     ".rept " PWRU_STR(PWRU_PCAP_STUB_INSNS) "\n"             \
			     "r0 = r0\n"                                              \
			     ".endr\n"                                                \
			     "%[d] = r0\n"                                            \
			     : [d] "+r"(data), [e] "+r"(data_end)                     \
			     :                                                        \
			     : "r0", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "memory"); \
		return data != 0;                                                     \
	}

PWRU_PCAP_STUB(pwru_pcap_filter_l2, PWRU_PCAP_MAGIC_L2)
PWRU_PCAP_STUB(pwru_pcap_filter_l3, PWRU_PCAP_MAGIC_L3)

#endif /* PWRU_PCAP_STUB_BPF_H */
