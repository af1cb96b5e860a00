#include "http/agent_http.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "http/guarded_server.h"
#include "http/http_responses.h"

namespace pwru {

namespace {

constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Every route runs through this: once its handler runs the request is
// whole, and its connection no longer one that waits (so no longer one
// the server may evict at its connection cap). An evicted connection has
// nobody left to answer.
httplib::Server::Handler dispatched(httplib::Server::Handler handler) {
  return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    if (GuardedServer::request_dispatched()) handler(req, res);
  };
}

}  // namespace

void AgentHttpServer::add_trace_routes(const TraceRoutes& routes) {
  const auto answer_error = [routes](httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    if (status == 401) res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(json_error_body(message), kJsonContentType);
    if (routes.answered) routes.answered(status);
  };
  server_->set_payload_max_length(routes.max_body_bytes);
  // httplib answers an oversized body itself, before any route: give it our
  // JSON error instead of an empty page.
  server_->set_error_handler(
      httplib::Server::HandlerWithResponse([routes, answer_error](const httplib::Request& req, httplib::Response& res) {
        // Evicted while its body trickled in: no answer reaches anyone, and
        // none is counted.
        if (!GuardedServer::request_dispatched()) return httplib::Server::HandlerResponse::Handled;
        if (req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == 413) {
          answer_error(res, 413,
                       "the request body is over " + std::to_string(routes.max_body_bytes) +
                           " bytes (traces.max_body_bytes); send a smaller request");
          return httplib::Server::HandlerResponse::Handled;
        }
        // httplib's own 400 for a body it could not read (routes' 400s carry
        // their message already).
        if (res.status == 400 && res.body.empty()) {
          answer_error(res, 400,
                       "the request body did not arrive whole: it must match Content-Length and follow the "
                       "head within http.request_head_timeout_seconds; send the request again");
          return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
      }));
  server_->Post(
      "/v1/traces", dispatched([this, routes, answer_error](const httplib::Request& req, httplib::Response& res) {
        try {
          if (!handlers_.ready())
            throw RequestError(503, "not ready: " + handlers_.not_ready_reason() + "; retry soon");
          TraceRoutes::Stream stream = routes.start(req.body, req.remote_addr + ":" + std::to_string(req.remote_port),
                                                    [&req](const char* name) { return req.get_header_value(name); });
          // The connection's socket: polled for a hang-up, so a client that
          // leaves during a quiet trace ends it at once, not at the next event.
          const int fd = GuardedServer::current_connection();
          if (routes.answered) routes.answered(200);
          stream_ndjson(res, std::move(stream), fd);
        } catch (const RequestError& e) {
          answer_error(res, e.status(), e.what());
        } catch (const std::exception& e) {
          answer_error(res, 500, e.what());
        }
      }));
  server_->Get("/v1/traces", dispatched([routes, answer_error](const httplib::Request& req, httplib::Response& res) {
                 try {
                   res.set_content(routes.list(req.get_header_value("Authorization")), kJsonContentType);
                 } catch (const RequestError& e) {
                   answer_error(res, e.status(), e.what());
                 }
               }));
  server_->Delete(R"(/v1/traces/([A-Za-z0-9-]+))",
                  dispatched([routes, answer_error](const httplib::Request& req, httplib::Response& res) {
                    try {
                      const std::string id = req.matches[1];
                      if (!routes.cancel(id, req.get_header_value("Authorization")))
                        throw RequestError(404, "no running trace " + id + " (GET /v1/traces lists them)");
                      res.set_content(nlohmann::json{{"cancelled", id}}.dump() + "\n", kJsonContentType);
                    } catch (const RequestError& e) {
                      answer_error(res, e.status(), e.what());
                    }
                  }));
}

AgentHttpServer::AgentHttpServer(const std::string& address, std::uint16_t port, AgentHttpHandlers handlers,
                                 ConnectionLimits limits)
    : handlers_(std::move(handlers)), server_(std::make_unique<GuardedServer>(limits, handlers_.connections)) {
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
  server_->Get("/metrics", dispatched([this](const httplib::Request&, httplib::Response& res) {
                 try {
                   res.set_content(handlers_.metrics_text(), kMetricsContentType);
                 } catch (const std::exception& e) {
                   // A failed scrape must not look like an empty one: Prometheus marks
                   // the target down and keeps the error.
                   spdlog::error("scrape failed: {}", e.what());
                   res.status = 500;
                   res.set_content(std::string("scrape failed: ") + e.what() + "\n", "text/plain");
                 }
               }));
  server_->Get("/healthz", dispatched([](const httplib::Request&, httplib::Response& res) {
                 res.set_content("ok\n", "text/plain");
               }));
  server_->Get("/readyz", dispatched([this](const httplib::Request&, httplib::Response& res) {
                 if (handlers_.ready()) {
                   res.set_content("ready\n", "text/plain");
                 } else {
                   res.status = 503;
                   res.set_content("not ready: " + handlers_.not_ready_reason() + "\n", "text/plain");
                 }
               }));
  if (handlers_.traces) add_trace_routes(*handlers_.traces);
  port_ = serve_in_thread(*server_, address, port, thread_,
                          " (address not on this host, or port in use?); set http.listen in the configuration",
                          [this] { server_->widen_backlog(); });
}

AgentHttpServer::~AgentHttpServer() { stop(); }

void AgentHttpServer::stop() noexcept {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace pwru
