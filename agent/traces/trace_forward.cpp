#include "traces/trace_forward.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>

#include "common/error.h"

namespace pwru {

namespace {

constexpr int kConnectTimeoutMs = 3000;
constexpr int kHeaderTimeoutMs = 30000;  // the peer loads its programs before answering
constexpr int kPollMs = 100;
constexpr std::size_t kMaxHeaderBytes = 64 * 1024;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

PeerTrace::PeerTrace(const PeerAgent& peer, std::string_view body, const std::string& authorization,
                     const std::string& forwarded_by)
    : where_("the pwru-agent on node " + peer.node + " (" + peer.pod + ", " + peer.host + ":" +
             std::to_string(peer.port) + ")") {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(peer.host.c_str(), std::to_string(peer.port).c_str(), &hints, &found) != 0 || !found)
    throw RequestError(502, where_ + " has an address this agent cannot use");
  fd_ = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int rc = fd_ < 0 ? -1 : ::connect(fd_, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd_, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    rc = (::poll(&p, 1, kConnectTimeoutMs) == 1 && getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
             ? 0
             : -1;
  }
  if (rc != 0) throw RequestError(502, "cannot reach " + where_ + "; the pod's traces need that agent");

  std::string request = "POST /v1/traces HTTP/1.1\r\nHost: " + peer.host + "\r\nContent-Type: application/json\r\n";
  if (!authorization.empty()) request += "Authorization: " + authorization + "\r\n";
  request += std::string(kForwardedByHeader) + ": " + forwarded_by + "\r\n";
  request += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  request.append(body);
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, kConnectTimeoutMs) != 1) throw RequestError(502, "sending the request to " + where_ + " stalled");
    } else {
      throw RequestError(502, "sending the request to " + where_ + " failed: " + std::strerror(errno));
    }
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kHeaderTimeoutMs);
  std::size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (buffer_.size() > kMaxHeaderBytes) throw RequestError(502, where_ + " answered something that is not HTTP");
    if (std::chrono::steady_clock::now() > deadline) throw RequestError(504, where_ + " did not answer in time");
    const std::size_t before = buffer_.size();
    if (!fill(kPollMs) && buffer_.size() == before)
      throw RequestError(502, where_ + (buffer_.empty() ? " closed the connection without answering"
                                                        : " ended its answer in the middle of the headers"));
  }
  const std::string head = buffer_.substr(0, end);
  buffer_.erase(0, end + 4);
  if (head.rfind("HTTP/1.", 0) != 0 || head.size() < 12) throw RequestError(502, where_ + " did not answer HTTP");
  status_ = std::atoi(head.c_str() + 9);
  std::size_t line = head.find("\r\n");
  while (line != std::string::npos) {
    const std::size_t next = head.find("\r\n", line + 2);
    const std::string header = head.substr(line + 2, next == std::string::npos ? std::string::npos : next - line - 2);
    const std::size_t colon = header.find(':');
    if (colon != std::string::npos) {
      const std::string name = lower(header.substr(0, colon));
      std::string value = header.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (name == "transfer-encoding" && lower(value).find("chunked") != std::string::npos) chunked_ = true;
      if (name == "content-length") content_length_ = std::atoll(value.c_str());
    }
    line = next;
  }
}

PeerTrace::~PeerTrace() {
  if (fd_ >= 0) ::close(fd_);
}

bool PeerTrace::fill(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  const int ready = ::poll(&p, 1, timeout_ms);
  if (ready == 0) return true;  // nothing yet, still open
  if (ready < 0) return errno == EINTR;
  char data[16384];
  const ssize_t n = ::recv(fd_, data, sizeof data, 0);
  if (n > 0) {
    buffer_.append(data, static_cast<std::size_t>(n));
    return true;
  }
  return n < 0 && (errno == EAGAIN || errno == EINTR);
}

// One chunk of a chunked body into `data` (empty: the last one). False when
// the connection ended first or `give_up` said so.
bool PeerTrace::next_chunk(std::string& data, const std::function<bool()>& give_up) {
  for (;;) {
    const std::size_t eol = buffer_.find("\r\n");
    if (eol != std::string::npos) {
      const std::size_t size = std::strtoul(buffer_.c_str(), nullptr, 16);
      if (buffer_.size() >= eol + 2 + size + 2) {
        data = buffer_.substr(eol + 2, size);
        buffer_.erase(0, eol + 2 + size + 2);
        return true;
      }
    }
    if (give_up()) return false;
    const std::size_t before = buffer_.size();
    if (!fill(kPollMs) && buffer_.size() == before) return false;
  }
}

std::string PeerTrace::read_body() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kHeaderTimeoutMs);
  const auto late = [&] { return std::chrono::steady_clock::now() > deadline; };
  if (chunked_) {
    std::string body, chunk;
    while (next_chunk(chunk, late) && !chunk.empty()) body += chunk;
    return body;
  }
  while ((content_length_ < 0 || static_cast<long long>(buffer_.size()) < content_length_) && !late()) {
    const std::size_t before = buffer_.size();
    if (!fill(kPollMs) && buffer_.size() == before) break;
  }
  return content_length_ >= 0 ? buffer_.substr(0, static_cast<std::size_t>(content_length_)) : buffer_;
}

bool PeerTrace::relay(LineSink& out) {
  std::string chunk;
  while (next_chunk(chunk, [&] { return out.closed(); })) {
    if (chunk.empty()) return true;  // the peer's last chunk: its summary line came before it
    out.write(chunk);
    out.flush();
  }
  return false;
}

}  // namespace pwru
