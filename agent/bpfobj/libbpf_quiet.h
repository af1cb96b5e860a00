// libbpf prints through one process-wide callback. Swapping it for a scope
// races between concurrent traces (one scope restores another's "discard"
// and libbpf stays silent for good), so it is installed once and never
// swapped: QuietLibbpf silences only the thread it lives on, for attempts
// whose failure is an answer (backend probes, kprobes the kernel refuses)
// that the caller reports itself, once, instead of a libbpf warning each.
#pragma once

#include <bpf/libbpf.h>

namespace pwru {

// Where libbpf's messages go when the calling thread is not quiet (pwru:
// stderr; the agent: its log). Before any call, libbpf's own rule: every
// message but debug to stderr.
void set_libbpf_log(libbpf_print_fn_t sink);

class QuietLibbpf {
 public:
  QuietLibbpf();
  ~QuietLibbpf();
  QuietLibbpf(const QuietLibbpf&) = delete;
  QuietLibbpf& operator=(const QuietLibbpf&) = delete;
};

}  // namespace pwru
