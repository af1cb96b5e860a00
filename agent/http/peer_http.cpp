#include "http/peer_http.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/error.h"
#include "http/http_responses.h"
#include "http/peer_tls.h"

namespace pwru {

namespace {

// Covers the TLS handshake and each read of the request: a client without
// a certificate the release CA signed holds a worker this long at most.
constexpr int kReadTimeoutSeconds = 5;
constexpr int kWriteTimeoutSeconds = 10;
// Workers beyond the streams: refusals (handshakes, 4xx) never wait behind
// running relays.
constexpr std::size_t kSpareWorkers = 2;

}  // namespace

PeerHttpServer::PeerHttpServer(const std::string& address, std::uint16_t port, const AgentConfig::Traces::PeerTls& tls,
                               PeerRoutes routes)
    : routes_(std::move(routes)) {
  std::optional<UsageError> tls_error;
  server_ = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
    try {
      configure_peer_tls(ctx, tls, PeerTlsRole::kServer);
      return true;
    } catch (const UsageError& e) {
      tls_error = e;
      return false;
    }
  });
  if (tls_error) throw *tls_error;
  if (!server_->is_valid()) throw UsageError("traces.peer_tls: OpenSSL could not make a TLS context");

  server_->set_socket_options([](int sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  });
  server_->set_read_timeout(kReadTimeoutSeconds, 0);
  server_->set_write_timeout(kWriteTimeoutSeconds, 0);
  server_->set_payload_max_length(routes_.max_body_bytes);
  const std::size_t workers = routes_.max_streams + kSpareWorkers;
  server_->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };

  const auto answer_error = [this](httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(json_error_body(message), kJsonContentType);
    if (routes_.answered) routes_.answered(status);
  };
  server_->set_error_handler(
      httplib::Server::HandlerWithResponse([this, answer_error](const httplib::Request& req, httplib::Response& res) {
        // Called for every status >= 400, the route's own JSON errors too:
        // only httplib's empty answers need one.
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == 413) {
          answer_error(
              res, 413,
              "the request body is over " + std::to_string(routes_.max_body_bytes) + " bytes (traces.max_body_bytes)");
        } else if (res.status == 404 || res.status == 405) {
          res.set_content(json_error_body("this is the pwru-agents' peer port: it serves only trace requests other "
                                          "agents relay (POST /v1/traces), not " +
                                          req.method + " " + req.path),
                          kJsonContentType);
        } else {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        return httplib::Server::HandlerResponse::Handled;
      }));
  server_->Post("/v1/traces", [this, answer_error](const httplib::Request& req, httplib::Response& res) {
    try {
      // Unset only if httplib ever served this route without TLS: then
      // nothing vouches for the headers below.
      if (!req.ssl) throw RequestError(403, "relayed trace requests are taken over TLS only");
      const std::string remote = req.remote_addr + ":" + std::to_string(req.remote_port);
      const bool merge = req.get_header_value("X-Pwru-Merge") == "1" && routes_.start_merged;
      PeerRoutes::Stream stream = (merge ? routes_.start_merged : routes_.start)(
          req.body, remote, req.get_header_value("X-Pwru-Caller"), req.get_header_value("X-Pwru-Forwarded-By"));
      const int fd = SSL_get_fd(req.ssl);
      if (routes_.answered) routes_.answered(200);
      stream_ndjson(res, std::move(stream), fd);
    } catch (const RequestError& e) {
      answer_error(res, e.status(), e.what());
    } catch (const std::exception& e) {
      answer_error(res, 500, e.what());
    }
  });

  port_ = serve_in_thread(*server_, address, port, thread_,
                          " for other agents (port in use?); set traces.peer_port in the configuration");
}

PeerHttpServer::~PeerHttpServer() { stop(); }

void PeerHttpServer::stop() noexcept {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace pwru
