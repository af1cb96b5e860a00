#include "http/http_responses.h"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace pwru {

std::string json_error_body(const std::string& message) {
  // Messages quote what the client sent, which need not be valid UTF-8.
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void StreamResponseSink::write(std::string_view text) {
  if (closed_ || text.empty()) return;
  if (!sink_.write(text.data(), text.size())) closed_ = true;
}

bool StreamResponseSink::closed() const {
  if (closed_ || fd_ < 0) return closed_;
  pollfd p{fd_, POLLRDHUP, 0};
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) closed_ = true;
  return closed_;
}

void stream_ndjson(httplib::Response& res, std::function<void(LineSink&)> stream, int fd) {
  res.set_chunked_content_provider("application/x-ndjson",
                                   [stream = std::move(stream), fd](std::size_t, httplib::DataSink& sink) {
                                     StreamResponseSink out(sink, fd);
                                     stream(out);
                                     if (!out.closed()) sink.done();
                                     return !out.closed();
                                   });
}

std::uint16_t serve_in_thread(httplib::Server& server, const std::string& address, std::uint16_t port,
                              std::thread& thread, const std::string& what_to_do,
                              const std::function<void()>& before_listen) {
  const int bound = port == 0 ? server.bind_to_any_port(address) : (server.bind_to_port(address, port) ? port : -1);
  if (bound <= 0)
    throw SystemError("cannot listen on " + address + ":" + std::to_string(port) + what_to_do, EADDRNOTAVAIL);
  if (before_listen) before_listen();
  thread = std::thread([&server] { server.listen_after_bind(); });
  for (int i = 0; i < 5000 && !server.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return static_cast<std::uint16_t>(bound);
}

}  // namespace pwru
