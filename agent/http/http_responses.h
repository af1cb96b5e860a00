// What the agent's two HTTP servers (the main port, the peer port) do
// alike: refusal bodies, trace streams as chunked responses, and serving
// from a thread of their own.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "output/sink.h"

namespace pwru {

inline constexpr const char* kJsonContentType = "application/json";

// {"error": message} and a newline: every refusal's body.
std::string json_error_body(const std::string& message);

// A trace's response: chunks through httplib, closed once a write fails or
// the client hangs up. The hang-up is seen on the socket itself at every
// poll round of the trace, not only at the next write (a quiet trace may
// not write for its whole duration).
class StreamResponseSink final : public LineSink {
 public:
  StreamResponseSink(httplib::DataSink& sink, int fd) : sink_(sink), fd_(fd) {}
  void write(std::string_view text) override;
  void flush() override {}
  bool closed() const override;

 private:
  httplib::DataSink& sink_;
  int fd_;
  mutable bool closed_ = false;
};

// Answers with `stream` as chunked NDJSON over the connection `fd`: the
// stream runs once the response starts, and ends the response unless the
// client has gone.
void stream_ndjson(httplib::Response& res, std::function<void(LineSink&)> stream, int fd);

// Binds `server` to address:port (0: any free port), runs `before_listen`,
// and starts its accept loop on `thread`; returns the port once the loop
// runs, because httplib's stop() does nothing before that (a stop() right
// after would leave the thread serving and the join hanging). A failed bind
// is a SystemError: "cannot listen on ADDRESS:PORT" and `what_to_do`.
std::uint16_t serve_in_thread(httplib::Server& server, const std::string& address, std::uint16_t port,
                              std::thread& thread, const std::string& what_to_do,
                              const std::function<void()>& before_listen = {});

}  // namespace pwru
