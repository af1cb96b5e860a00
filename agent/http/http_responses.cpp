#include "http/http_responses.h"

#include <poll.h>

#include <nlohmann/json.hpp>

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

}  // namespace pwru
