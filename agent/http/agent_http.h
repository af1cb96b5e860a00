// pwru-agent's one HTTP port: /metrics, /healthz, /readyz and the trace
// API under /v1/traces. What the routes answer comes from callbacks, so
// this module knows nothing of BPF or of Prometheus' data model and is
// testable on its own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "output/sink.h"

namespace httplib {
class Server;
}

namespace pwru {

// POST /v1/traces, GET /v1/traces, DELETE /v1/traces/{id}. Callbacks throw
// RequestError for answers other than success; the server turns those into
// {"error": "..."} with the status.
struct TraceRoutes {
  // Checks and loads a trace from the request body; the returned function
  // streams it into the response (and returns when it ended).
  // `authorization`: the request's Authorization header ("" when absent),
  // for the callbacks to check (RequestError 401/403).
  using Stream = std::function<void(LineSink& out)>;
  // A request header's value ("" when absent), by name.
  using HeaderLookup = std::function<std::string(const char* name)>;
  std::function<Stream(const std::string& body, const std::string& remote, const HeaderLookup& header)> start;
  std::function<std::string(const std::string& authorization)> list;  // JSON
  // False: no such trace.
  std::function<bool(const std::string& id, const std::string& authorization)> cancel;
  std::function<void(int status)> answered;  // every /v1/traces answer's status, for metrics
  std::size_t max_body_bytes = 16384;
  std::size_t max_streams = 4;  // worker threads kept free of streams for /metrics
};

struct AgentHttpHandlers {
  std::function<std::string()> metrics_text;  // Prometheus text exposition format
  std::function<bool()> ready;                // /readyz: 200 once true, 503 before
  std::function<std::string()> not_ready_reason = [] { return std::string("starting"); };
  std::optional<TraceRoutes> traces;  // none: no /v1/traces
};

class AgentHttpServer {
 public:
  // Binds now (a port in use or a bad address is a SystemError naming it),
  // serves from a thread of its own until stop().
  AgentHttpServer(const std::string& address, std::uint16_t port, AgentHttpHandlers handlers);
  ~AgentHttpServer();
  AgentHttpServer(const AgentHttpServer&) = delete;
  AgentHttpServer& operator=(const AgentHttpServer&) = delete;

  // The port really bound (port 0 asks the kernel for a free one).
  std::uint16_t port() const { return port_; }
  // Stops accepting, finishes the requests in flight, joins the thread.
  void stop() noexcept;

 private:
  void add_trace_routes(const TraceRoutes& routes);

  AgentHttpHandlers handlers_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace pwru
