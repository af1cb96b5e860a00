// pwru-agent's one HTTP port: /metrics, /healthz, /readyz and the trace
// API under /v1/traces. What the routes answer comes from callbacks, so
// this module knows nothing of BPF or of Prometheus' data model and is
// testable on its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "output/sink.h"

namespace pwru {

class GuardedServer;

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
};

// What keeps /healthz and /metrics answering whatever clients do: every
// connection has a thread of its own, so a slow one delays no other, and
// these bound how many there are and how long a request head may take.
struct ConnectionLimits {
  // From the moment a request is awaited (accept, or the end of the
  // previous response) to the head's blank line; the body gets as long
  // again. Also how long an idle keep-alive connection stays open.
  std::chrono::milliseconds head_timeout{5000};
  // At the cap a new connection takes the place of the one waiting
  // longest for a request head; only when none is waiting: 503.
  std::size_t max_connections = 256;
  std::size_t max_connections_per_client = 32;  // per peer address; beyond: 429
  std::size_t max_head_bytes = 16384;           // beyond: 431
  std::chrono::seconds io_timeout{10};          // one read or write once the head is in
};

// For metrics. Called from connection threads.
struct ConnectionObserver {
  // A connection refused or cut, by reason: max_connections,
  // max_connections_per_client, threads (none could be started),
  // head_timeout, head_too_large, body_timeout, evicted (its place under
  // max_connections went to a newer connection while it awaited a head).
  std::function<void(const char* reason)> refused;
  std::function<void(int delta)> open_changed;  // +1 admitted, -1 closed
};

struct AgentHttpHandlers {
  std::function<std::string()> metrics_text;  // Prometheus text exposition format
  std::function<bool()> ready;                // /readyz: 200 once true, 503 before
  std::function<std::string()> not_ready_reason = [] { return std::string("starting"); };
  std::optional<TraceRoutes> traces;  // none: no /v1/traces
  ConnectionObserver connections{};
};

class AgentHttpServer {
 public:
  // Binds now (a port in use or a bad address is a SystemError naming it),
  // serves from a thread of its own until stop().
  AgentHttpServer(const std::string& address, std::uint16_t port, AgentHttpHandlers handlers,
                  ConnectionLimits limits = {});
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
  std::unique_ptr<GuardedServer> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace pwru
