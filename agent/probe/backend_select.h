// Which backend a trace uses: what the user asked for, or for "auto" the
// best one the running kernel accepts, found by trying it (a tiny
// kprobe-multi link, then a kprobe) rather than by reading version numbers.
#pragma once

#include <optional>
#include <string>

#include "bpfobj/kprobe_object.h"

namespace pwru {

struct BackendChoice {
  std::string name;                  // "kprobe-multi", "kprobe" or "tracepoint"
  std::optional<KprobeKind> kprobe;  // empty for tracepoint
  std::string reason;                // why, for the log
};

// Tries to attach an empty program of `kind` to `function`; "" on success,
// else the kernel's reason.
std::string try_kprobe_attach(KprobeKind kind, const std::string& function);

// A function every kernel has and kprobes may attach to: what "auto" tries.
inline constexpr const char* kBackendProbeFunction = "consume_skb";

// requested: "auto", "kprobe-multi", "kprobe" or "tracepoint". An explicit
// kprobe backend the kernel refuses is a SystemError naming the reason.
BackendChoice choose_backend(const std::string& requested, const std::string& probe_function = kBackendProbeFunction);

}  // namespace pwru
