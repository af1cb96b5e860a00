// What the agent's two HTTP servers (the main port, the peer port) answer
// alike: refusal bodies, and trace streams as chunked responses.
#pragma once

#include <httplib.h>

#include <string>
#include <string_view>

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

}  // namespace pwru
