// The merge of a fan-out trace (issue 20): each node's agent streams its own
// trace in merge mode, and this puts their event lines into one stream
// ordered by each node's wall clock. A node's heartbeats
// ({"heartbeat":{"wall_ns":N}}) promise that none of its later events is
// older than N, so an event goes out once every live node has promised past
// it, or once it has waited reorder_window for a node that is slow to say
// so. Events that turn up behind ones already written still go out, marked
// "late": order is a best effort across nodes, loss is never silent.
// Pure logic over lines: the feeds (a local trace, PeerTrace::relay()) and
// the HTTP writer are the coordinator's.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "output/sink.h"

namespace pwru {

struct MergeOptions {
  // An event is held at most this long waiting for slower nodes.
  std::chrono::milliseconds reorder_window{250};
  // A live feed silent this long is "slow": left out of the watermark until
  // it speaks again (its held-back lines may then come out late).
  std::chrono::milliseconds slow_after{2000};
  // push() of an event blocks while this many events are held, or while
  // the held event lines' text takes max_buffered_bytes or more:
  // backpressure to the feeds, so a slow client costs the nodes' ring
  // buffers (counted losses there), not this agent's memory. While full, the
  // writer releases the oldest held event, so the feeds' heartbeats still
  // flow.
  std::size_t max_buffered_lines = 100000;
  std::size_t max_buffered_bytes = 32u << 20;
  // Budget of the {"journey":...} lines kept for the stitcher, each charged
  // twice its line's length (the parsed JSON is bigger than its text);
  // beyond it they are counted in journeys_not_kept.
  std::size_t max_journey_bytes = 64u << 20;
  // Events written in all; 0 = no cap. Reaching it ends the merge "max_events".
  std::uint64_t max_events = 0;
  // 0 = no cap, else at least 1 (the request parser refuses less; a value
  // in (0,1) is taken as 1 here rather than ending at the first event).
  // Counted as event lines arrive at push(), not as they are written: a
  // client that pauses and then drains a backlog does not trip it (a
  // backlog that backpressure held up in the nodes' buffers can still
  // arrive in a burst). More than this within any 1 s (to 10 ms) ends the
  // merge with "events per second over traces.fanout.max_events_per_second
  // (N)".
  double max_events_per_second = 0;
};

struct MergedNode {
  std::string node;
  // "ok" | "ok, but it sent an error: <last_error, cut>" | "stopped
  // answering after 3.2 s" | "slow: nothing for 2.0 s" | "cancelled" | the
  // `why` end_feed() was given.
  std::string state;
  std::optional<nlohmann::json> summary;  // the inner object of its {"summary":...}
  std::vector<nlohmann::json> journeys;   // inner objects of its {"journey":...} lines
  std::uint64_t events = 0;               // event lines it delivered (written or not)
  // min over heartbeats of (receive wall time - heartbeat wall_ns), in ms:
  // clock skew plus one-way latency, an upper bound on the skew.
  std::optional<double> clock_offset_ms_estimate;
  // Its last {"error":...} text, or its last line that should have been an
  // event, heartbeat, journey or summary and could not be read. JSON
  // objects of other kinds are ignored (a newer node may send more).
  std::string last_error;
};

struct MergeResult {
  std::vector<MergedNode> nodes;
  std::uint64_t events_sent = 0;
  std::uint64_t events_late = 0;
  std::uint64_t journeys_not_kept = 0;
  // "" (every feed ended) | "max_events" | the rate cap's text | cancel()'s
  // reason ("cancelled") | "client gone".
  std::string ended;
};

class MergedStream {
 public:
  using SteadyClock = std::function<std::chrono::steady_clock::time_point()>;
  using WallClock = std::function<std::uint64_t()>;  // CLOCK_REALTIME, ns

  // Empty clocks are the system's; tests pass fakes.
  MergedStream(std::vector<std::string> nodes, MergeOptions options, SteadyClock steady = {}, WallClock wall = {});
  MergedStream(const MergedStream&) = delete;
  MergedStream& operator=(const MergedStream&) = delete;

  // Feed side, one thread per node. `line` is without its '\n'. An event
  // blocks while the held ones fill max_buffered_lines or
  // max_buffered_bytes (until there is room or the merge ends). Returns
  // false once the merge wants no more (ended, cancelled): the feed should
  // hang up. Non-event lines arriving after that are still recorded (a
  // summary, say).
  bool push(std::size_t node, std::string line);
  // The feed is over: `clean` when the node ended its stream normally. When
  // not, `why` becomes its state ("stopped answering after N s" if empty).
  void end_feed(std::size_t node, bool clean, std::string why);

  // The single writer (the HTTP stream thread). Writes event lines
  // ('\n'-terminated) in order until every feed has ended and everything
  // held was written, or cancel(), or out.closed(), or a cap ends it.
  // Flushes about every 100 ms when it wrote something, and at the end.
  void run(LineSink& out);
  // Ends the merge: run() returns (without writing what is held) and
  // push() returns false. The first reason given sticks.
  void cancel(const std::string& why = "cancelled");

  // Meant for after run() returned; safe at any time. result() copies;
  // take_result() moves the journeys and summaries out (later calls see
  // none of them), for the one caller that stitches.
  MergeResult result() const;
  MergeResult take_result();

 private:
  // Under mutex_: the counters and states; with the journeys and summaries
  // copied when `with_lines`.
  MergeResult result_locked(bool with_lines) const;
  struct Held {
    std::uint64_t wall_ns;
    std::size_t node;
    std::uint64_t seq;
    std::chrono::steady_clock::time_point arrived;
    std::string line;
  };
  struct HeldAfter {  // for a min-heap on (wall_ns, node, seq)
    bool operator()(const Held& a, const Held& b) const;
  };
  struct Arrival {  // events in arrival order, for the reorder window
    std::chrono::steady_clock::time_point arrived;
    std::uint64_t wall_ns;
    std::size_t node;
    std::uint64_t seq;
  };
  struct Feed {
    std::string name;
    std::uint64_t watermark_ns = 0;  // from heartbeats only
    bool ended = false;
    bool clean = false;
    std::string why;
    bool slow = false;
    std::chrono::steady_clock::time_point last_heard;
    std::string frozen_state;  // set when the merge ends while this feed is running
    MergedNode out;
  };

  void take_line(std::size_t node, std::string& line, std::chrono::steady_clock::time_point now);
  // Moves what may be written now from the heap into `batch`, applying the
  // caps. Caller holds mutex_.
  void collect(std::chrono::steady_clock::time_point now, std::vector<std::string>& batch);
  bool pop_one(std::chrono::steady_clock::time_point now, std::vector<std::string>& batch);
  void finish(std::chrono::steady_clock::time_point now);  // caller holds mutex_
  std::string state_of(const Feed& feed, std::chrono::steady_clock::time_point now) const;
  // state_of() with the node's error added to an "ok".
  std::string reported_state(const Feed& feed, std::chrono::steady_clock::time_point now) const;
  // Counts an arriving event against max_events_per_second; true when it is
  // one too many.
  bool over_rate(std::chrono::steady_clock::time_point now);
  std::size_t line_cap() const;
  std::size_t byte_cap() const;

  const MergeOptions options_;
  const SteadyClock steady_;
  const WallClock wall_;
  const std::chrono::steady_clock::time_point started_;

  mutable std::mutex mutex_;
  std::condition_variable room_;  // push() waits for space in the heap
  std::condition_variable work_;  // run() waits for something to write
  std::vector<Feed> feeds_;
  std::vector<Held> heap_;
  std::deque<Arrival> arrivals_;
  // The largest (wall_ns, node, seq) whose reorder window has run out:
  // everything up to it goes out whatever the watermark.
  std::optional<std::tuple<std::uint64_t, std::size_t, std::uint64_t>> forced_up_to_;
  std::uint64_t next_seq_ = 0;
  std::optional<std::uint64_t> last_written_ns_;
  std::size_t held_bytes_ = 0;  // of the lines in heap_
  // Arrivals in the last second, (when rounded down to 10 ms, events): at
  // most 100 entries whatever the rate.
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> last_second_;
  std::uint64_t in_last_second_ = 0;
  std::size_t journey_bytes_ = 0;
  std::uint64_t events_sent_ = 0;
  std::uint64_t events_late_ = 0;
  std::uint64_t journeys_not_kept_ = 0;
  std::string ended_;
  bool cancelled_ = false;  // cancel() or client gone: running feeds are "cancelled"
  bool done_ = false;       // the merge takes no more events
};

}  // namespace pwru
