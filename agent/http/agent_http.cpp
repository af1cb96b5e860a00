#include "http/agent_http.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>

#include "common/error.h"

namespace pwru {

namespace {

constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
// A scrape reads every counter map: bound how long a slow client can hold
// a worker thread.
constexpr int kIoTimeoutSeconds = 10;

}  // namespace

AgentHttpServer::AgentHttpServer(const std::string& address, std::uint16_t port, AgentHttpHandlers handlers)
    : handlers_(std::move(handlers)), server_(std::make_unique<httplib::Server>()) {
  // httplib's default adds SO_REUSEPORT, with which a second agent on the
  // node would bind the same port and silently take half the scrapes.
  // SO_REUSEADDR alone still lets a restarted agent bind at once.
  server_->set_socket_options([](int sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server_->set_read_timeout(kIoTimeoutSeconds, 0);
  server_->set_write_timeout(kIoTimeoutSeconds, 0);
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    try {
      res.set_content(handlers_.metrics_text(), kMetricsContentType);
    } catch (const std::exception& e) {
      // A failed scrape must not look like an empty one: Prometheus marks
      // the target down and keeps the error.
      spdlog::error("scrape failed: {}", e.what());
      res.status = 500;
      res.set_content(std::string("scrape failed: ") + e.what() + "\n", "text/plain");
    }
  });
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (handlers_.ready()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("not ready: " + handlers_.not_ready_reason() + "\n", "text/plain");
    }
  });
  const int bound = port == 0 ? server_->bind_to_any_port(address) : (server_->bind_to_port(address, port) ? port : -1);
  if (bound <= 0)
    throw SystemError("cannot listen on " + address + ":" + std::to_string(port) +
                          " (address not on this host, or port in use?); set http.listen in the configuration",
                      EADDRNOTAVAIL);
  port_ = static_cast<std::uint16_t>(bound);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() does nothing until the loop runs: a stop() right after
  // construction would leave the thread serving and the join hanging.
  for (int i = 0; i < 5000 && !server_->is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

AgentHttpServer::~AgentHttpServer() { stop(); }

void AgentHttpServer::stop() noexcept {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace pwru
