// Classic BPF as libpcap emits it, in a type of our own: pcap's
// `struct bpf_insn` and the kernel's eBPF `struct bpf_insn` share a name, so
// no file includes both; this is the hand-over between them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pwru {

struct CbpfInsn {
  std::uint16_t code;
  std::uint8_t jt;
  std::uint8_t jf;
  std::uint32_t k;
};

using CbpfProgram = std::vector<CbpfInsn>;

// How many eBPF instructions translate_cbpf() makes of `program`; throws
// UsageError for what cannot run in the kernel. Declared here so libpcap's
// side can check without seeing eBPF's struct bpf_insn.
std::size_t translated_insn_count(const CbpfProgram& program);

// "ldh [12]"-style listing for error messages and test failures.
std::string cbpf_listing(const CbpfProgram& program);

}  // namespace pwru
