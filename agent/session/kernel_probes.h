// The real TraceProbes: the backend the kernel accepts, the skb tracepoints
// on every backend, kprobes on kprobe backends, tc/XDP programs when asked.
#pragma once

#include <memory>

#include "session/trace_probes.h"

namespace pwru {

// A ProbeLoader: what `pwru` and the agent's traces run on.
std::unique_ptr<TraceProbes> load_kernel_probes(const KernelBtf& btf, const TraceConfig& config, StartupPhases& phases);

}  // namespace pwru
