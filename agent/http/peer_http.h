// The peer port (traces.peer_port): where the agents on other nodes relay
// trace requests, over mutual TLS (http/peer_tls.h). It serves one route,
// POST /v1/traces, whose caller the relaying agent names in two headers
// that only count here, behind a verified client certificate; the main
// port never reads them. A separate listener with its own workers, so
// peers and strangers probing this port cannot take /healthz or /metrics
// down, and the main port's request handling stays out of it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "config/agent_config.h"
#include "output/sink.h"

namespace httplib {
class SSLServer;
}

namespace pwru {

struct PeerRoutes {
  using Stream = std::function<void(LineSink& out)>;
  // A relayed trace: `caller` and `from` are the X-Pwru-Caller and
  // X-Pwru-Forwarded-By headers ("" when absent). Throws RequestError.
  std::function<Stream(const std::string& body, const std::string& remote, const std::string& caller,
                       const std::string& from)>
      start;
  // The same for a fan-out's part (the X-Pwru-Merge: 1 header); null: such
  // requests go to `start`, and their output is a plain trace's.
  std::function<Stream(const std::string& body, const std::string& remote, const std::string& caller,
                       const std::string& from)>
      start_merged;
  std::function<void(int status)> answered;  // for pwru_trace_requests_total
  std::size_t max_body_bytes = 16384;
  std::size_t max_streams = 4;
};

class PeerHttpServer {
 public:
  // Loads the TLS files (UsageError naming the bad one) and binds now
  // (SystemError naming the address), serves from a thread of its own.
  PeerHttpServer(const std::string& address, std::uint16_t port, const AgentConfig::Traces::PeerTls& tls,
                 PeerRoutes routes);
  ~PeerHttpServer();
  PeerHttpServer(const PeerHttpServer&) = delete;
  PeerHttpServer& operator=(const PeerHttpServer&) = delete;

  std::uint16_t port() const { return port_; }
  void stop() noexcept;

 private:
  PeerRoutes routes_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace pwru
