// Writes translated pcap filters into the stubs of BPF programs while
// libbpf loads them (bpf/pcap_stub.bpf.h explains the stub).
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "filter/pcap_compiler.h"
#include "pwru_abi.h"

struct bpf_program;

namespace pwru {

// Registers our program sections with libbpf, once per process, before any
// object using them is opened:
//   "pwru_tp"        tp_btf programs (tracing, raw tracepoint attach)
//   "pwru_kprobe", "pwru_kprobe_multi"  kprobe programs of both attach kinds
//   "pwru_fentry"    fentry programs on other BPF programs (tc, XDP)
//   "pwru_pcap_test" raw_tp programs that run a filter over a test buffer
void register_pcap_sections();

// The filter `prog`'s stubs receive when it is loaded. A program with no
// filter set keeps its stubs, which match everything.
void set_program_filter(const struct bpf_program* prog, std::shared_ptr<const CompiledPcap> filter);
void clear_program_filter(const struct bpf_program* prog);
// Registers `pcap` (null: no filter) for each of `programs` and returns
// `filter` with has_pcap saying whether their stubs will hold one: the one
// place that keeps the BPF-side switch and the injection in step.
pwru_filter_cfg arm_pcap(const std::vector<struct bpf_program*>& programs, const pwru_filter_cfg& filter,
                         const std::shared_ptr<const CompiledPcap>& pcap);
// Why the last injection into `prog` failed, "" if it did not.
std::string program_filter_error(const struct bpf_program* prog);

// After a failed load: throws UsageError with the first injection error
// among `programs`, if there was one (the filter, not the kernel, failed).
void throw_if_injection_failed(const std::vector<struct bpf_program*>& programs);

// Overwrites every L2 and L3 stub block in `insns` with the translation of
// the matching form. Throws when a stub is malformed or a filter too large.
std::vector<struct bpf_insn> patch_pcap_stubs(const struct bpf_insn* insns, std::size_t count,
                                              const CompiledPcap& filter);

}  // namespace pwru
