#include "http/agent_http.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdlib>

#include "common/error.h"

namespace pwru {

namespace {

constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
// A scrape reads every counter map: bound how long a slow client can hold
// a worker thread.
constexpr int kIoTimeoutSeconds = 10;

constexpr const char* kJson = "application/json";

std::string error_body(const std::string& message) { // Messages quote what the client sent, which need not be valid UTF-8.
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"; }

// "10.0.0.1" or "::1" and the port of a socket address.
bool address_of(const sockaddr_storage& sa, std::string& address, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (sa.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(sa);
    inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    port = ntohs(in.sin_port);
  } else if (sa.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(sa);
    inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    port = ntohs(in6.sin6_port);
  } else {
    return false;
  }
  address = text;
  return true;
}

// The socket of this request's connection. httplib (0.11) does not hand it
// out, and without it a client that hangs up during a quiet trace is only
// noticed at the next event: find it among our fds by its two addresses.
int connection_fd(const httplib::Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || fd < 0 || fd == dirfd(dir)) continue;
    sockaddr_storage peer{}, local{};
    socklen_t peer_len = sizeof peer, local_len = sizeof local;
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
    std::string peer_addr, local_addr;
    int peer_port = 0, local_port = 0;
    if (!address_of(peer, peer_addr, peer_port) || !address_of(local, local_addr, local_port)) continue;
    if (peer_port == req.remote_port && peer_addr == req.remote_addr && local_port == req.local_port) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

// A trace's response: chunks through httplib, closed once a write fails or
// the client hangs up (checked on every poll round of the trace).
class ResponseSink final : public LineSink {
 public:
  ResponseSink(httplib::DataSink& sink, int fd) : sink_(sink), fd_(fd) {}
  void write(std::string_view text) override {
    if (closed_ || text.empty()) return;
    if (!sink_.write(text.data(), text.size())) closed_ = true;
  }
  void flush() override {}
  bool closed() const override {
    if (closed_ || fd_ < 0) return closed_;
    pollfd p{fd_, POLLRDHUP, 0};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) closed_ = true;
    return closed_;
  }

 private:
  httplib::DataSink& sink_;
  int fd_;
  mutable bool closed_ = false;
};

}  // namespace

void AgentHttpServer::add_trace_routes(const TraceRoutes& routes) {
  const auto answer_error = [routes](httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    if (status == 401) res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(error_body(message), kJson);
    if (routes.answered) routes.answered(status);
  };
  server_->set_payload_max_length(routes.max_body_bytes);
  // httplib answers an oversized body itself, before any route: give it our
  // JSON error instead of an empty page.
  server_->set_error_handler(httplib::Server::HandlerWithResponse(
      [routes, answer_error](const httplib::Request& req, httplib::Response& res) {
    if (res.status != 413 || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    answer_error(res, 413, "the request body is over " + std::to_string(routes.max_body_bytes) +
                               " bytes (traces.max_body_bytes); send a smaller request");
    return httplib::Server::HandlerResponse::Handled;
  }));
  server_->Post("/v1/traces", [this, routes, answer_error](const httplib::Request& req, httplib::Response& res) {
    try {
      if (!handlers_.ready()) throw RequestError(503, "not ready: " + handlers_.not_ready_reason() + "; retry soon");
      TraceRoutes::Stream stream =
          routes.start(req.body, req.remote_addr + ":" + std::to_string(req.remote_port),
                       [&req](const char* name) { return req.get_header_value(name); });
      const int fd = connection_fd(req);
      if (routes.answered) routes.answered(200);
      res.set_chunked_content_provider(
          "application/x-ndjson", [stream = std::move(stream), fd](std::size_t, httplib::DataSink& sink) {
            ResponseSink out(sink, fd);
            stream(out);
            if (!out.closed()) sink.done();
            return !out.closed();
          });
    } catch (const RequestError& e) {
      answer_error(res, e.status(), e.what());
    } catch (const std::exception& e) {
      answer_error(res, 500, e.what());
    }
  });
  server_->Get("/v1/traces", [routes, answer_error](const httplib::Request& req, httplib::Response& res) {
    try {
      res.set_content(routes.list(req.get_header_value("Authorization")), kJson);
    } catch (const RequestError& e) {
      answer_error(res, e.status(), e.what());
    }
  });
  server_->Delete(R"(/v1/traces/([A-Za-z0-9-]+))", [routes, answer_error](const httplib::Request& req,
                                                                          httplib::Response& res) {
    try {
      const std::string id = req.matches[1];
      if (!routes.cancel(id, req.get_header_value("Authorization"))) throw RequestError(404, "no running trace " + id + " (GET /v1/traces lists them)");
      res.set_content(nlohmann::json{{"cancelled", id}}.dump() + "\n", kJson);
    } catch (const RequestError& e) {
      answer_error(res, e.status(), e.what());
    }
  });
}

AgentHttpServer::AgentHttpServer(const std::string& address, std::uint16_t port, AgentHttpHandlers handlers)
    : handlers_(std::move(handlers)), server_(std::make_unique<httplib::Server>()) {
  // httplib's default adds SO_REUSEPORT, with which a second agent on the
  // node would bind the same port and silently take half the scrapes.
  // SO_REUSEADDR alone still lets a restarted agent bind at once.
  server_->set_socket_options([](int sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    // httplib writes a response's headers and body separately: with Nagle
    // the body waits for the client's delayed ACK, 40 ms per answer. Set
    // on the listening socket, accepted connections inherit it.
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
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
  // Streams hold a worker each for their whole duration: keep as many
  // again free for scrapes and probes.
  const std::size_t workers = 8 + (handlers_.traces ? handlers_.traces->max_streams : 0);
  server_->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  if (handlers_.traces) add_trace_routes(*handlers_.traces);
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
