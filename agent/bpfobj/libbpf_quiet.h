// Silences libbpf's log for a scope: for attempts whose failure is an
// answer (backend probes, kprobes the kernel refuses), which the caller
// reports itself, once, instead of a libbpf warning per function.
#pragma once

#include <bpf/libbpf.h>

#include <cstdarg>

namespace pwru {

class QuietLibbpf {
 public:
  QuietLibbpf() : previous_(libbpf_set_print(&QuietLibbpf::discard)) {}
  ~QuietLibbpf() { libbpf_set_print(previous_); }
  QuietLibbpf(const QuietLibbpf&) = delete;
  QuietLibbpf& operator=(const QuietLibbpf&) = delete;

 private:
  static int discard(enum libbpf_print_level, const char*, va_list) { return 0; }
  libbpf_print_fn_t previous_;
};

}  // namespace pwru
