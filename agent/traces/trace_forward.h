// A trace request relayed to the pwru-agent on another node: its status
// first (so an error there is the caller's error here), then its NDJSON
// stream chunk by chunk as it comes. A plain HTTP/1.1 client on a socket:
// httplib's (0.11) reads a response to its end before returning.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "k8s/peer_locator.h"
#include "output/sink.h"

namespace pwru {

// Marks a relayed request (the value names the relaying node): the agent
// receiving it never relays it again, so two agents that disagree about
// where a pod is cannot bounce a request between them.
inline constexpr const char* kForwardedByHeader = "X-Pwru-Forwarded-By";

class PeerTrace {
 public:
  // Connects, sends the request, reads the status line and headers.
  // Throws RequestError(502) when the peer cannot be reached or answers
  // something that is not HTTP.
  PeerTrace(const PeerAgent& peer, std::string_view body, const std::string& authorization,
            const std::string& forwarded_by);
  ~PeerTrace();
  PeerTrace(const PeerTrace&) = delete;
  PeerTrace& operator=(const PeerTrace&) = delete;

  int status() const { return status_; }
  // The whole body (an error answer).
  std::string read_body();
  // Copies the body to `out` as it arrives, until the peer ends it or
  // `out` closes (then the connection is closed, which ends the trace
  // there). Returns whether the peer ended it cleanly.
  bool relay(LineSink& out);

 private:
  bool fill(int timeout_ms);  // appends what the socket has to buffer_; false on EOF or error
  bool next_chunk(std::string& data, const std::function<bool()>& give_up);

  std::string where_;
  int fd_ = -1;
  int status_ = 0;
  bool chunked_ = false;
  long long content_length_ = -1;
  std::string buffer_;
};

}  // namespace pwru
