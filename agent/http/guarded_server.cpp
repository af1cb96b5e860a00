#include "http/guarded_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "common/error.h"
#include "http/http_responses.h"

namespace pwru {

namespace {

using Clock = std::chrono::steady_clock;

thread_local int tl_connection = -1;

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

bool endpoint(int sock, bool peer, std::string& address, int& port) {
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  const int rc = peer ? getpeername(sock, reinterpret_cast<sockaddr*>(&sa), &len)
                      : getsockname(sock, reinterpret_cast<sockaddr*>(&sa), &len);
  return rc == 0 && address_of(sa, address, port);
}

int poll_timeout_ms(Clock::duration left) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::clamp<long long>(ms, 0, INT_MAX));
}

const char* reason_phrase(int status) {
  switch (status) {
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return "Service Unavailable";
  }
}

// A whole response written without waiting: on a fresh or idle connection
// the send buffer is empty, and a client that does not even take a few
// hundred bytes gets nothing. The client's unread request is drained so
// that close() sends a FIN rather than a reset that could discard the
// answer before the client reads it (a request arriving later still can).
void send_error_and_finish(int sock, int status, const std::string& message) {
  const std::string body = json_error_body(message);
  const std::string response = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
                               "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                               "\r\nConnection: close\r\n" + (status == 431 ? "" : "Retry-After: 1\r\n") + "\r\n" +
                               body;
  (void)send(sock, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  shutdown(sock, SHUT_WR);
  char sink[4096];
  for (int i = 0; i < 16 && recv(sock, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
  }
}

}  // namespace

// httplib's accept loop hands every socket to the queue: running it inline
// lets admission happen on the accept thread, before a thread exists for
// the connection, so refused connections cost no thread at all.
class GuardedServer::Queue final : public httplib::TaskQueue {
 public:
  explicit Queue(GuardedServer& server) : server_(server) {}
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override { server_.drain(); }

 private:
  GuardedServer& server_;
};

// What the accept thread and a connection's thread share about it.
struct GuardedServer::Connection {
  int sock = -1;
  std::string client;
  std::uint64_t id = 0;
  // Under mu_: whether it is in waiting_, and under which key.
  bool waiting = false;
  std::pair<Clock::time_point, std::uint64_t> waiting_key;
  // Set under mu_ when its place went to a newer connection; read by its
  // thread without the lock. Linux goes on receiving on a socket shut down
  // for reading, so the thread must check this rather than rely on EOF.
  std::atomic<bool> evicted{false};
  // Under mu_: whether it still counts toward its address's cap. Dropped
  // before the client can see its connection end (the FIN of a close or an
  // eviction), so a client that reconnects at once is not refused for a
  // connection whose thread is still on its way out.
  bool counts_for_client = true;
};

// One connection's socket for httplib's request parser: poll() (no
// FD_SETSIZE limit; the agent holds ~1.5k kprobe link fds), MSG_NOSIGNAL
// sends, and a buffer that holds the head await_head() collected plus
// anything read past a request, which belongs to the next one.
class GuardedServer::ConnectionStream final : public httplib::Stream {
 public:
  enum class Head { kComplete, kGone, kIdle, kPartial, kTooLarge };

  ConnectionStream(int sock, int stop_fd, std::chrono::seconds io_timeout, const std::atomic<bool>& evicted)
      : sock_(sock), stop_fd_(stop_fd), io_timeout_(io_timeout), evicted_(evicted) {
    endpoint(sock, true, remote_ip_, remote_port_);
    endpoint(sock, false, local_ip_, local_port_);
  }

  // Reads until the buffer holds a request head ending in its blank line.
  // The deadline is for the whole head, not for each read: a client that
  // trickles a header line every few seconds is cut all the same.
  Head await_head(Clock::time_point deadline, std::size_t max_bytes) {
    buf_.erase(0, pos_);
    pos_ = 0;
    std::size_t scanned = 0;
    for (;;) {
      const std::size_t end = buf_.find("\r\n\r\n", scanned >= 3 ? scanned - 3 : 0);
      if (end != std::string::npos) return end + 4 <= max_bytes ? Head::kComplete : Head::kTooLarge;
      scanned = buf_.size();
      if (buf_.size() >= max_bytes) return Head::kTooLarge;
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) return buf_.empty() ? Head::kIdle : Head::kPartial;
      const int ready = wait(POLLIN, left, /*stoppable=*/true);
      if (ready < 0 || evicted_.load()) return Head::kGone;
      if (ready == 0) continue;
      char chunk[4096];
      const ssize_t n = recv(sock_, chunk, std::min(sizeof chunk, max_bytes - buf_.size()), MSG_DONTWAIT);
      // (checked again: a byte read after the eviction must not complete a head)
      if (evicted_.load()) return Head::kGone;
      if (n == 0) return Head::kGone;
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return Head::kGone;
      }
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Reads after the head (the body) must be done by then.
  void set_read_deadline(Clock::time_point deadline) {
    read_deadline_ = deadline;
    read_deadline_missed_ = false;
  }
  bool read_deadline_missed() const { return read_deadline_missed_; }

  bool is_readable() const override { return pos_ < buf_.size() || wait(POLLIN, io_timeout_, true) > 0; }

  // httplib calls this before each piece of a streamed response; a client
  // that has hung up (or half-closed) gets no more.
  bool is_writable() const override {
    pollfd p{sock_, POLLOUT | POLLRDHUP, 0};
    int rc;
    do {
      rc = poll(&p, 1, poll_timeout_ms(io_timeout_));
    } while (rc < 0 && errno == EINTR);
    return rc > 0 && (p.revents & POLLOUT) && !(p.revents & (POLLRDHUP | POLLHUP | POLLERR));
  }

  ssize_t read(char* ptr, std::size_t size) override {
    if (pos_ < buf_.size()) {
      const std::size_t n = std::min(size, buf_.size() - pos_);
      std::memcpy(ptr, buf_.data() + pos_, n);
      pos_ += n;
      return static_cast<ssize_t>(n);
    }
    for (;;) {
      Clock::duration timeout = io_timeout_;
      bool deadline_bound = false;
      if (read_deadline_ != Clock::time_point::max()) {
        const auto left = read_deadline_ - Clock::now();
        if (left <= Clock::duration::zero()) {
          read_deadline_missed_ = true;
          return -1;
        }
        if (left < timeout) {
          timeout = left;
          deadline_bound = true;
        }
      }
      const int ready = wait(POLLIN, timeout, /*stoppable=*/true);
      if (ready < 0 || evicted_.load()) return -1;
      if (ready == 0) {
        read_deadline_missed_ = deadline_bound;
        return -1;
      }
      // httplib reads chunked bodies a byte at a time: buffer small reads
      // rather than make a system call per byte.
      if (size < kChunk) {
        buf_.clear();
        pos_ = 0;
        buf_.resize(kChunk);
        const ssize_t n = recv(sock_, buf_.data(), kChunk, MSG_DONTWAIT);
        buf_.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        if (n > 0) return read(ptr, size);
        if (n == 0) return 0;
      } else {
        const ssize_t n = recv(sock_, ptr, size, MSG_DONTWAIT);
        if (n >= 0) return n;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    const auto deadline = Clock::now() + io_timeout_;
    for (;;) {
      const ssize_t n = send(sock_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
      const auto left = deadline - Clock::now();
      // Not stoppable: a response under way is finished (or times out).
      if (left <= Clock::duration::zero() || wait(POLLOUT, left, /*stoppable=*/false) <= 0) return -1;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = remote_ip_;
    port = remote_port_;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = local_ip_;
    port = local_port_;
  }
  socket_t socket() const override { return sock_; }

 private:
  static constexpr std::size_t kChunk = 4096;

  // >0: the socket is ready (or has an error or hang-up for the caller's
  // next call to report); 0: timed out; -1: the server is stopping.
  int wait(short events, Clock::duration timeout, bool stoppable) const {
    pollfd fds[2] = {{sock_, events, 0}, {stop_fd_, POLLIN, 0}};
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const int rc = poll(fds, stoppable ? 2 : 1, poll_timeout_ms(deadline - Clock::now()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) return 1;  // let the read or write report it
      if (stoppable && fds[1].revents) return -1;
      return rc > 0 ? 1 : 0;
    }
  }

  int sock_;
  int stop_fd_;
  std::chrono::seconds io_timeout_;
  const std::atomic<bool>& evicted_;
  std::string buf_;
  std::size_t pos_ = 0;
  Clock::time_point read_deadline_ = Clock::time_point::max();
  bool read_deadline_missed_ = false;
  std::string remote_ip_, local_ip_;
  int remote_port_ = 0, local_port_ = 0;
};

GuardedServer::GuardedServer(ConnectionLimits limits, ConnectionObserver observer)
    : limits_(limits), observer_(std::move(observer)) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) throw SystemError("eventfd for the HTTP server", errno);
  new_task_queue = [this] { return new Queue(*this); };
}

GuardedServer::~GuardedServer() {
  if (stop_fd_ >= 0) close(stop_fd_);
}

int GuardedServer::current_connection() { return tl_connection; }

thread_local GuardedServer* GuardedServer::tl_server_ = nullptr;
thread_local GuardedServer::Connection* GuardedServer::tl_reading_ = nullptr;

bool GuardedServer::request_dispatched() {
  GuardedServer* server = tl_server_;
  if (!server) return true;  // not one of our connections' threads
  tl_server_ = nullptr;
  return server->stop_waiting(*tl_reading_);
}

void GuardedServer::widen_backlog() {
  // listen() again on a listening socket only changes its backlog (the
  // kernel caps it at net.core.somaxconn).
  if (svr_sock_ != INVALID_SOCKET && ::listen(svr_sock_, SOMAXCONN) != 0)
    spdlog::warn("http: could not widen the listen backlog: {}", std::strerror(errno));
}

void GuardedServer::count(const char* reason) {
  if (observer_.refused) observer_.refused(reason);
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  auto connection = std::make_shared<Connection>();
  connection->sock = sock;
  int client_port = 0;
  if (!endpoint(sock, true, connection->client, client_port)) {  // gone already
    close(sock);
    return false;
  }
  const std::string& client = connection->client;
  const char* refusal = nullptr;
  bool evicted = false;
  {
    std::lock_guard lock(mu_);
    std::size_t& mine = per_client_[client];
    if (mine >= limits_.max_connections_per_client) {
      // Not even by eviction: one address may not crowd out the others.
      refusal = "max_connections_per_client";
    } else if (open_ - evicting_ >= limits_.max_connections && !(evicted = evict_longest_waiting())) {
      refusal = "max_connections";
    } else {
      ++mine;
      ++open_;
      connection->id = next_id_++;
    }
    if (refusal && mine == 0) per_client_.erase(client);
  }
  if (evicted) count("evicted");
  if (refusal) {
    spdlog::debug("http: refused a connection from {}: {}", client, refusal);
    // Counted before the answer goes out: a client that reads it and then
    // scrapes /metrics sees its refusal there.
    count(refusal);
    // Named by setting, not by number: limits are not told to strangers.
    const bool whole_agent = std::strcmp(refusal, "max_connections") == 0;
    send_error_and_finish(sock, whole_agent ? 503 : 429,
                          whole_agent ? "every connection the agent takes (http.max_connections) is busy with a "
                                        "request; retry shortly"
                                      : "too many connections from your address (http.max_connections_per_client); "
                                        "close idle connections or retry later");
    close(sock);
    return false;
  }
  if (observer_.open_changed) observer_.open_changed(+1);
  try {
    std::thread([this, connection] {
      try {
        serve(*connection);
      } catch (const std::exception& e) {
        spdlog::error("http: connection from {}: {}", connection->client, e.what());
      }
      tl_connection = -1;
      // Out of waiting_ before the descriptor is closed: an eviction must
      // never shut down a number the kernel has handed to another socket.
      stop_waiting(*connection);
      {
        std::lock_guard lock(mu_);
        stop_counting_for_client(*connection);
      }
      shutdown(connection->sock, SHUT_RDWR);
      close(connection->sock);
      release(*connection);
    }).detach();
  } catch (const std::system_error& e) {
    spdlog::warn("http: no thread for a connection from {}: {}", client, e.what());
    count("threads");
    send_error_and_finish(sock, 503, "the agent cannot take more connections now; retry shortly");
    close(sock);
    release(*connection);
  }
  return true;
}

void GuardedServer::stop_counting_for_client(Connection& connection) {
  if (!connection.counts_for_client) return;
  connection.counts_for_client = false;
  if (auto it = per_client_.find(connection.client); it != per_client_.end() && --it->second == 0)
    per_client_.erase(it);
}

bool GuardedServer::evict_longest_waiting() {
  if (waiting_.empty()) return false;
  const auto longest = waiting_.begin();
  Connection& victim = *longest->second;
  waiting_.erase(longest);
  victim.waiting = false;
  victim.evicted = true;
  ++evicting_;
  stop_counting_for_client(victim);
  // Wakes its thread's poll(); the client gets a FIN, as at a head
  // deadline. The thread closes the descriptor only after stop_waiting(),
  // which takes mu_, so the number still names this connection's socket.
  ::shutdown(victim.sock, SHUT_RDWR);
  return true;
}

bool GuardedServer::start_waiting(Connection& connection) {
  std::lock_guard lock(mu_);
  if (connection.evicted) return false;
  connection.waiting_key = {Clock::now(), connection.id};
  waiting_.emplace(connection.waiting_key, &connection);
  connection.waiting = true;
  return true;
}

bool GuardedServer::stop_waiting(Connection& connection) {
  std::lock_guard lock(mu_);
  if (connection.waiting) {
    waiting_.erase(connection.waiting_key);
    connection.waiting = false;
  }
  return !connection.evicted;
}

void GuardedServer::serve(Connection& connection) {
  const int sock = connection.sock;
  ConnectionStream stream(sock, stop_fd_, limits_.io_timeout, connection.evicted);
  tl_connection = sock;
  const std::size_t requests = std::max<std::size_t>(keep_alive_max_count_, 1);
  for (std::size_t left = requests; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
    if (!start_waiting(connection)) return;
    const auto head = stream.await_head(Clock::now() + limits_.head_timeout, limits_.max_head_bytes);
    if (head != ConnectionStream::Head::kComplete) {
      if (!stop_waiting(connection)) return;  // evicted
      switch (head) {
        case ConnectionStream::Head::kIdle:
          // Between keep-alive requests a quiet client is merely done;
          // before its first request it held a connection for nothing.
          if (left == requests) count("head_timeout");
          return;
        case ConnectionStream::Head::kPartial:
          count("head_timeout");
          return;
        case ConnectionStream::Head::kTooLarge:
          count("head_too_large");
          send_error_and_finish(sock, 431,
                                "the request head is over " + std::to_string(limits_.max_head_bytes) +
                                    " bytes; send fewer or shorter headers");
          return;
        default:
          return;
      }
    }
    // Still in waiting_ while httplib reads the body, until the route
    // handler calls request_dispatched().
    stream.set_read_deadline(Clock::now() + limits_.head_timeout);
    tl_server_ = this;
    tl_reading_ = &connection;
    bool connection_closed = false;
    const bool ok = process_request(stream, left == 1, connection_closed, nullptr);
    tl_server_ = nullptr;
    tl_reading_ = nullptr;
    // Requests no handler took (a 404, httplib's own 400 or 413) leave it
    // in waiting_ until here.
    if (!stop_waiting(connection)) return;
    if (stream.read_deadline_missed()) {
      count("body_timeout");
      return;
    }
    if (!ok || connection_closed) return;
  }
}

void GuardedServer::release(Connection& connection) {
  // The last thing a connection thread does: once open_ reaches 0, drain()
  // may return and the server be destroyed, so nothing after the unlock
  // may touch it.
  if (observer_.open_changed) observer_.open_changed(-1);
  std::lock_guard lock(mu_);
  stop_counting_for_client(connection);
  if (connection.evicted) --evicting_;
  if (--open_ == 0) all_closed_.notify_all();
}

void GuardedServer::drain() {
  const std::uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
  std::unique_lock lock(mu_);
  all_closed_.wait(lock, [this] { return open_ == 0; });
  // Ready for another listen() on this server.
  std::uint64_t value = 0;
  (void)!::read(stop_fd_, &value, sizeof value);
}

}  // namespace pwru
