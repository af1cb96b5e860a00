#include "bpfobj/libbpf_quiet.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace pwru {

namespace {

thread_local unsigned t_quiet_depth = 0;

int print_like_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  return std::vfprintf(stderr, format, args);
}

std::atomic<libbpf_print_fn_t> g_sink{&print_like_libbpf};

int dispatch(enum libbpf_print_level level, const char* format, va_list args) {
  if (t_quiet_depth > 0) return 0;
  return g_sink.load(std::memory_order_acquire)(level, format, args);
}

void install_dispatch_once() {
  static std::once_flag installed;
  std::call_once(installed, [] { libbpf_set_print(&dispatch); });
}

}  // namespace

void set_libbpf_log(libbpf_print_fn_t sink) {
  g_sink.store(sink ? sink : &print_like_libbpf, std::memory_order_release);
  install_dispatch_once();
}

QuietLibbpf::QuietLibbpf() {
  install_dispatch_once();
  ++t_quiet_depth;
}

QuietLibbpf::~QuietLibbpf() { --t_quiet_depth; }

}  // namespace pwru
