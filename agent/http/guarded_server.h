// httplib's Server with our own connection handling, so that slow or
// numerous clients cannot take /healthz and /metrics down (issue 15):
// every connection gets a thread of its own (a slow one delays nobody),
// admission caps per client address and in total bound those threads, and
// a request head must arrive whole within a deadline. At the total cap a
// new connection takes the place of the one that has waited longest for a
// request head, so clients from many addresses cannot lock the probes out
// for a deadline at a time (a connection whose body trickles in is no
// safer from eviction than one whose head does). httplib still parses requests, routes and
// writes responses (Server::process_request).
//
// Internal to agent/http: agent_http.h is the module's interface.
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "http/agent_http.h"

namespace pwru {

class GuardedServer final : public httplib::Server {
 public:
  GuardedServer(ConnectionLimits limits, ConnectionObserver observer);
  ~GuardedServer() override;
  GuardedServer(const GuardedServer&) = delete;
  GuardedServer& operator=(const GuardedServer&) = delete;

  // After bind: httplib listens with a backlog of 5, and a burst of
  // connections beyond it has its SYNs dropped, so a probe arriving then
  // waits a second for its retransmit. Admission is quick; let the kernel
  // queue what arrives at once.
  void widen_backlog();

  // The socket of the connection this thread is serving a request of, or
  // -1: route handlers use it to notice a client that hangs up.
  static int current_connection();

  // Called by every route handler first: the request is whole, and from
  // now on its connection is serving it. Until then (head and body) the
  // connection may be evicted at the total cap, so a body trickled in
  // holds a place no better than a head; false: it was evicted, and the
  // handler has nobody to answer.
  static bool request_dispatched();

 private:
  class Queue;
  class ConnectionStream;
  struct Connection;

  // Called by httplib's accept loop, on its thread, for each accepted
  // socket (through Queue, which runs it inline): admits or refuses at once.
  bool process_and_close_socket(socket_t sock) override;
  void serve(Connection& connection);
  // A connection that awaits a request (head or body) may be evicted
  // meanwhile; false: it was, and is to be closed.
  bool start_waiting(Connection& connection);
  bool stop_waiting(Connection& connection);
  // Under mu_: closes the connection that has waited longest for a head,
  // if any connection is waiting; whether one was.
  bool evict_longest_waiting();
  void release(Connection& connection);
  // Under mu_: the connection no longer counts toward its address's cap.
  void stop_counting_for_client(Connection& connection);
  void refuse(int sock, int status, const char* reason, const std::string& message);
  void count(const char* reason);
  // Called once the accept loop has ended: wakes connections waiting for a
  // request and waits for every connection thread to finish.
  void drain();

  // The request this thread is reading, until a route handler takes it
  // (request_dispatched).
  static thread_local GuardedServer* tl_server_;
  static thread_local Connection* tl_reading_;

  const ConnectionLimits limits_;
  const ConnectionObserver observer_;
  int stop_fd_ = -1;  // eventfd, readable once the server stops

  std::mutex mu_;
  std::condition_variable all_closed_;
  std::size_t open_ = 0;
  // Evicted connections whose threads have not ended yet: still in open_
  // (drain() waits for them), no longer holding a place under the cap.
  std::size_t evicting_ = 0;
  std::unordered_map<std::string, std::size_t> per_client_;
  // Connections awaiting a request's head or body, longest waiting first.
  std::map<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>, Connection*> waiting_;
  std::uint64_t next_id_ = 0;
};

}  // namespace pwru
