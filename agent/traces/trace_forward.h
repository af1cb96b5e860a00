// A trace request relayed to the pwru-agent on another node: over mutual
// TLS to its peer port (http/peer_tls.h), as this agent. The caller's
// credential never leaves this node: this agent has authenticated and
// authorized the caller, and passes on only who the caller is (which the
// agent there, with auth kubernetes, checks again with the API server).
// Its status comes first (so an error there is the caller's error here),
// then its NDJSON stream chunk by chunk as it comes.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "config/agent_config.h"
#include "k8s/peer_locator.h"
#include "output/sink.h"
#include "traces/trace_auth.h"

namespace pwru {

// Marks a relayed request (the value names the relaying node): the agent
// receiving it never relays it again, so two agents that disagree about
// where a pod is cannot bounce a request between them.
inline constexpr const char* kForwardedByHeader = "X-Pwru-Forwarded-By";
// The caller as the relaying agent authenticated it, as JSON:
// {"user","uid","groups","extra","remote"}. Believed only on the peer port.
inline constexpr const char* kCallerHeader = "X-Pwru-Caller";

// On the peer port, asks for a "pods" trace's merge mode: what a fan-out's
// coordinator needs of each node's part (wall_ns first on every event,
// heartbeats, journeys as lines of their own; RunningTrace::stream).
inline constexpr const char* kMergeHeader = "X-Pwru-Merge";

// For kCallerHeader (ASCII only: JSON with \u escapes). Throws
// RequestError(400) when it would not fit in a header line.
std::string encode_caller(const TraceCaller& caller, const std::string& remote);

struct RelayedCaller {
  TraceCaller caller;
  std::string remote;  // the caller's address as the relaying agent saw it
};
// Throws RequestError(400) saying what is wrong with the header.
RelayedCaller decode_caller(const std::string& header);

class PeerTrace {
 public:
  enum class Mode { kRelay, kMerge };  // kMerge: a fan-out's part (kMergeHeader)
  // Connects, completes the TLS handshake (either end refusing the other's
  // certificate ends it), sends the request and waits for the status: the
  // peer loads its programs first. Throws RequestError: 502 (unreachable,
  // TLS refused, no HTTP answer), 504 (no answer in time), 503 (this
  // agent's own TLS files unusable). `quiet_for`: how long the peer may
  // send nothing before it counts as gone (a quiet trace sends nothing
  // until its summary).
  PeerTrace(const PeerAgent& peer, const AgentConfig::Traces::PeerTls& tls, std::string body,
            const std::string& caller_header, const std::string& forwarded_by, std::chrono::seconds quiet_for,
            Mode mode = Mode::kRelay);
  // Hangs up if still connected (ending the trace there) and waits for the
  // connection's thread.
  ~PeerTrace();
  PeerTrace(const PeerTrace&) = delete;
  PeerTrace& operator=(const PeerTrace&) = delete;

  int status() const { return status_; }
  // The whole body of a non-200 answer.
  std::string read_body();
  // Copies the body to `out` as it arrives, until the peer ends it or
  // `out` closes (then the connection is closed, which ends the trace
  // there). Returns whether the peer ended it cleanly.
  bool relay(LineSink& out);

 private:
  struct Connection;
  std::string where_;
  std::unique_ptr<Connection> connection_;
  int status_ = 0;
};

}  // namespace pwru
