// Who may start, list and cancel traces (traces.auth): anyone who reaches
// the port (none; the configuration only allows it on loopback), or the
// holder of a static bearer token.
#pragma once

#include <functional>
#include <string>

#include "config/agent_config.h"

namespace pwru {

// Checks an Authorization header value; throws RequestError 401 (missing
// or malformed) or 403 (wrong token). The token file is read at every
// check, so rotating it needs no restart; at construction it must already
// be readable and not empty (UsageError otherwise).
using TraceAuthorizer = std::function<void(const std::string& authorization)>;
TraceAuthorizer make_trace_authorizer(const AgentConfig::Traces& config);

}  // namespace pwru
