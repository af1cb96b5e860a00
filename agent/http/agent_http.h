// pwru-agent's one HTTP port: /metrics, /healthz, /readyz. What the routes
// answer comes from callbacks, so this module knows nothing of BPF or of
// Prometheus' data model and is testable on its own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace pwru {

struct AgentHttpHandlers {
  std::function<std::string()> metrics_text;  // Prometheus text exposition format
  std::function<bool()> ready;                // /readyz: 200 once true, 503 before
  std::function<std::string()> not_ready_reason = [] { return std::string("starting"); };
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
  AgentHttpHandlers handlers_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace pwru
