// The pwru-agent daemon: always-on counters exported on one HTTP port.
// Start-up order matters to Kubernetes: the port answers /healthz at once,
// /readyz only once every hook is attached (kprobe attach can take long).
#pragma once

#include <functional>

#include "config/agent_config.h"

namespace pwru {

// Runs until `stop_requested` returns true (polled a few times a second),
// then stops serving and detaches everything. Returns the exit code.
// Throws UsageError/SystemError when start-up fails.
int run_agent(const AgentConfig& config, const std::function<bool()>& stop_requested);

std::string agent_version();
// The git commit it was built from (short id), or "unknown".
std::string agent_revision();

}  // namespace pwru
