// Classic BPF (from libpcap) to eBPF that runs inside a pcap stub
// (bpf/pcap_stub.bpf.h) of a tracing program, where the packet is kernel
// memory that may only be read through bpf_probe_read_kernel().
#pragma once

#include <linux/bpf.h>

#include <vector>

#include "filter/cbpf.h"

namespace pwru {

// Where the stub's inputs live when the translated code starts.
struct StubInputs {
  int data_reg;      // first byte the filter sees (MAC or network header)
  int data_end_reg;  // one past the last byte (skb head + tail)
};

// The translation: straight-line eBPF whose every path ends by falling off
// its last instruction with the verdict in r0 (0: no match). It has no exit
// instruction, so it can be placed in the middle of a function.
//
// Semantics follow libpcap's interpreter (bpf_filter): 32-bit unsigned
// arithmetic, big-endian packet loads, a load past the packet end or a
// division by zero rejects, shifts by 32 or more give 0. Scratch memory
// M[0..15] lives on the BPF stack and starts zeroed.
// Throws SystemError for an instruction it does not know.
std::vector<struct bpf_insn> translate_cbpf(const CbpfProgram& program, StubInputs inputs);

}  // namespace pwru
