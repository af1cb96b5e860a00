#include "traces/trace_merge.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string_view>

namespace pwru {
namespace {

using Steady = std::chrono::steady_clock;

constexpr std::string_view kEventPrefix = R"({"wall_ns":)";
constexpr std::string_view kHeartbeatPrefix = R"({"heartbeat":{"wall_ns":)";
constexpr std::string_view kJourneyPrefix = R"({"journey":)";
constexpr std::string_view kSummaryPrefix = R"({"summary":)";
constexpr std::string_view kLate = R"(,"late":true)";
// Lines moved out under the lock per round: the writer then writes them
// without it, so the feeds are not held up by a slow client.
constexpr std::size_t kBatch = 1024;
// The writer also wakes this often by itself: the reorder window and the
// slow timeout run out without anybody pushing anything.
constexpr auto kPoll = std::chrono::milliseconds(10);
constexpr auto kFlushEvery = std::chrono::milliseconds(100);
constexpr std::size_t kErrorTextMax = 1024;
// Of an error in a node's state, which is one line of the summary.
constexpr std::size_t kStateErrorMax = 300;
// The rate cap counts arrivals in steps this long: its memory stays 100
// entries whatever the rate.
constexpr auto kRateStep = std::chrono::milliseconds(10);
// A parsed journey takes about this many times its line's length.
constexpr std::size_t kJourneyParsedFactor = 2;

// The unsigned integer right after `prefix`, and where its digits end; the
// producers write it unquoted and first, so no JSON parse is needed.
std::optional<std::pair<std::uint64_t, std::size_t>> number_after(const std::string& line, std::string_view prefix) {
  if (line.size() <= prefix.size() || line.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const char* start = line.c_str() + prefix.size();
  if (*start < '0' || *start > '9') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(start, &end, 10);
  if (errno == ERANGE || (*end != ',' && *end != '}')) return std::nullopt;
  return std::make_pair(static_cast<std::uint64_t>(value), static_cast<std::size_t>(end - line.c_str()));
}

bool starts_with(const std::string& line, std::string_view prefix) {
  return line.size() >= prefix.size() && line.compare(0, prefix.size(), prefix) == 0;
}

// At most `max` bytes of `text`, not cutting a UTF-8 sequence in two.
std::string shortened(const std::string& text, std::size_t max = kErrorTextMax) {
  if (text.size() <= max) return text;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "...";
}

std::string seconds_text(Steady::duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", std::chrono::duration<double>(d).count());
  return text;
}

std::string rate_text(double rate) {
  char text[48];
  if (rate == std::floor(rate) && rate < 1e15)
    std::snprintf(text, sizeof text, "%.0f", rate);
  else
    std::snprintf(text, sizeof text, "%g", rate);
  return text;
}

std::uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

bool MergedStream::HeldAfter::operator()(const Held& a, const Held& b) const {
  return std::tie(a.wall_ns, a.node, a.seq) > std::tie(b.wall_ns, b.node, b.seq);
}

MergedStream::MergedStream(std::vector<std::string> nodes, MergeOptions options, SteadyClock steady, WallClock wall)
    : options_(options),
      steady_(steady ? std::move(steady) : SteadyClock([] { return Steady::now(); })),
      wall_(wall ? std::move(wall) : WallClock(realtime_ns)),
      started_(steady_()) {
  feeds_.resize(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    feeds_[i].name = std::move(nodes[i]);
    feeds_[i].last_heard = started_;
  }
}

bool MergedStream::push(std::size_t node, std::string line) {
  std::unique_lock lock(mutex_);
  if (node >= feeds_.size() || feeds_[node].ended) return false;
  if (starts_with(line, kEventPrefix)) {
    // Counted before any wait for room: time spent blocked is the client's
    // pace, not the node's.
    if (!done_ && over_rate(steady_())) {
      ended_ = "events per second over traces.fanout.max_events_per_second (" +
               rate_text(std::max(options_.max_events_per_second, 1.0)) + ")";
      finish(steady_());
    }
    room_.wait(lock, [&] { return done_ || (heap_.size() < line_cap() && held_bytes_ < byte_cap()); });
  }
  take_line(node, line, steady_());
  return !done_;
}

// 0 would block forever; one held event is the least that works.
std::size_t MergedStream::line_cap() const { return std::max<std::size_t>(options_.max_buffered_lines, 1); }
std::size_t MergedStream::byte_cap() const { return std::max<std::size_t>(options_.max_buffered_bytes, 1); }

bool MergedStream::over_rate(Steady::time_point now) {
  if (options_.max_events_per_second <= 0) return false;
  const double cap = std::max(options_.max_events_per_second, 1.0);
  const auto step = now - (now.time_since_epoch() % kRateStep);
  while (!last_second_.empty() && last_second_.front().first <= now - std::chrono::seconds(1)) {
    in_last_second_ -= last_second_.front().second;
    last_second_.pop_front();
  }
  if (static_cast<double>(in_last_second_ + 1) > cap) return true;
  if (last_second_.empty() || last_second_.back().first != step)
    last_second_.emplace_back(step, 1);
  else
    ++last_second_.back().second;
  ++in_last_second_;
  return false;
}

void MergedStream::take_line(std::size_t node, std::string& line, Steady::time_point now) {
  Feed& feed = feeds_[node];
  feed.last_heard = now;
  bool wake = false;
  if (feed.slow) {
    // It speaks again: back in the watermark (which may hold others back
    // until its heartbeats catch up).
    feed.slow = false;
    wake = true;
  }
  if (starts_with(line, kEventPrefix)) {
    auto wall = number_after(line, kEventPrefix);
    if (!wall) {
      feed.out.last_error = "unreadable event line: " + shortened(line);
      return;
    }
    ++feed.out.events;
    if (done_) return;
    const std::uint64_t seq = next_seq_++;
    arrivals_.push_back(Arrival{now, wall->first, node, seq});
    held_bytes_ += line.size();
    heap_.push_back(Held{wall->first, node, seq, now, std::move(line)});
    std::push_heap(heap_.begin(), heap_.end(), HeldAfter{});
    if (heap_.size() >= line_cap() || held_bytes_ >= byte_cap()) wake = true;
  } else if (starts_with(line, kHeartbeatPrefix)) {
    auto wall = number_after(line, kHeartbeatPrefix);
    if (!wall) {
      feed.out.last_error = "unreadable heartbeat line: " + shortened(line);
      return;
    }
    feed.watermark_ns = std::max(feed.watermark_ns, wall->first);
    const double offset_ms =
        (static_cast<double>(wall_()) - static_cast<double>(wall->first)) / 1e6;  // may be negative
    if (!feed.out.clock_offset_ms_estimate || offset_ms < *feed.out.clock_offset_ms_estimate)
      feed.out.clock_offset_ms_estimate = offset_ms;
    wake = true;
  } else if (starts_with(line, kJourneyPrefix)) {
    const std::size_t cost = kJourneyParsedFactor * line.size();
    if (journey_bytes_ + cost > options_.max_journey_bytes) {
      ++journeys_not_kept_;
    } else {
      auto parsed = nlohmann::json::parse(line, nullptr, false);
      if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("journey")) {
        feed.out.last_error = "unreadable journey line: " + shortened(line);
      } else {
        journey_bytes_ += cost;
        feed.out.journeys.push_back(std::move(parsed["journey"]));
      }
    }
  } else if (starts_with(line, kSummaryPrefix)) {
    auto parsed = nlohmann::json::parse(line, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("summary"))
      feed.out.last_error = "unreadable summary line: " + shortened(line);
    else
      feed.out.summary = std::move(parsed["summary"]);
  } else {
    auto parsed = nlohmann::json::parse(line, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object())
      feed.out.last_error = "unreadable line: " + shortened(line);
    else if (parsed.contains("error"))
      feed.out.last_error = shortened(
          parsed["error"].is_string() ? parsed["error"].get<std::string>()
                                      : parsed["error"].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  if (wake) work_.notify_all();
}

void MergedStream::end_feed(std::size_t node, bool clean, std::string why) {
  std::lock_guard lock(mutex_);
  if (node >= feeds_.size() || feeds_[node].ended) return;
  Feed& feed = feeds_[node];
  feed.ended = true;
  feed.clean = clean;
  feed.slow = false;
  if (!clean) feed.why = why.empty() ? "stopped answering after " + seconds_text(steady_() - started_) + " s" : why;
  work_.notify_all();
}

void MergedStream::cancel(const std::string& why) {
  std::lock_guard lock(mutex_);
  if (done_) return;
  ended_ = why.empty() ? "cancelled" : why;
  cancelled_ = true;
  finish(steady_());
}

void MergedStream::collect(Steady::time_point now, std::vector<std::string>& batch) {
  for (Feed& feed : feeds_)
    if (!feed.ended && !feed.slow && now - feed.last_heard >= options_.slow_after) feed.slow = true;

  const auto expired = now - options_.reorder_window;
  while (!arrivals_.empty() && arrivals_.front().arrived <= expired) {
    const Arrival& a = arrivals_.front();
    auto key = std::make_tuple(a.wall_ns, a.node, a.seq);
    if (!forced_up_to_ || key > *forced_up_to_) forced_up_to_ = key;
    arrivals_.pop_front();
  }

  // Ended feeds promise everything; slow ones are not waited for.
  std::uint64_t watermark = std::numeric_limits<std::uint64_t>::max();
  for (const Feed& feed : feeds_)
    if (!feed.ended && !feed.slow) watermark = std::min(watermark, feed.watermark_ns);

  while (!heap_.empty() && batch.size() < kBatch) {
    const Held& top = heap_.front();
    const bool due = top.wall_ns <= watermark ||
                     (forced_up_to_ && std::make_tuple(top.wall_ns, top.node, top.seq) <= *forced_up_to_) ||
                     heap_.size() >= line_cap() || held_bytes_ >= byte_cap();  // full: let the feeds go on
    if (!due || !pop_one(now, batch)) break;
  }
}

bool MergedStream::pop_one(Steady::time_point now, std::vector<std::string>& batch) {
  std::pop_heap(heap_.begin(), heap_.end(), HeldAfter{});
  Held held = std::move(heap_.back());
  heap_.pop_back();
  held_bytes_ -= held.line.size();
  if (last_written_ns_ && held.wall_ns < *last_written_ns_) {
    // After wall_ns, so that wall_ns stays the first key for any merger
    // downstream.
    auto at = number_after(held.line, kEventPrefix);
    held.line.insert(at->second, kLate);
    ++events_late_;
  }
  last_written_ns_ = std::max(last_written_ns_.value_or(0), held.wall_ns);
  held.line.push_back('\n');
  batch.push_back(std::move(held.line));
  ++events_sent_;
  if (options_.max_events && events_sent_ >= options_.max_events) {
    ended_ = "max_events";
    finish(now);
    return false;
  }
  return true;
}

void MergedStream::finish(Steady::time_point now) {
  if (done_) return;
  for (Feed& feed : feeds_) {
    if (feed.ended) continue;
    if (!feed.slow && now - feed.last_heard >= options_.slow_after) feed.slow = true;
    feed.frozen_state = state_of(feed, now);
  }
  done_ = true;
  heap_.clear();
  held_bytes_ = 0;
  arrivals_.clear();
  room_.notify_all();
  work_.notify_all();
}

std::string MergedStream::state_of(const Feed& feed, Steady::time_point now) const {
  // A feed hung up because the merge ended is reported as it was then,
  // not by how its connection went down afterwards.
  if (!feed.frozen_state.empty()) return feed.frozen_state;
  if (feed.ended) return feed.clean ? "ok" : feed.why;
  if (feed.slow) return "slow: nothing for " + seconds_text(now - feed.last_heard) + " s";
  if (cancelled_) return "cancelled";
  return "ok";
}

std::string MergedStream::reported_state(const Feed& feed, Steady::time_point now) const {
  std::string state = state_of(feed, now);
  if (state == "ok" && !feed.out.last_error.empty())
    state += ", but it sent an error: " + shortened(feed.out.last_error, kStateErrorMax);
  return state;
}

void MergedStream::run(LineSink& out) {
  auto last_flush = steady_();
  bool unflushed = false;
  std::vector<std::string> batch;
  batch.reserve(kBatch);
  for (;;) {
    bool stop = false;
    {
      std::unique_lock lock(mutex_);
      for (;;) {
        const auto now = steady_();
        if (done_) {
          stop = true;
          break;
        }
        if (out.closed()) {
          ended_ = "client gone";
          cancelled_ = true;
          finish(now);
          stop = true;
          break;
        }
        collect(now, batch);
        if (!batch.empty()) break;
        if (done_) continue;  // a cap ended it with nothing more to write
        if (heap_.empty() && std::all_of(feeds_.begin(), feeds_.end(), [](const Feed& f) { return f.ended; })) {
          finish(now);
          stop = true;
          break;
        }
        if (unflushed && now - last_flush >= kFlushEvery) break;
        work_.wait_for(lock, kPoll);
      }
    }
    if (!batch.empty()) {
      room_.notify_all();
      for (const std::string& line : batch) out.write(line);
      batch.clear();
      unflushed = true;
    }
    const auto now = steady_();
    if (unflushed && (stop || now - last_flush >= kFlushEvery)) {
      out.flush();
      last_flush = now;
      unflushed = false;
    }
    if (stop) return;
  }
}

MergeResult MergedStream::result() const {
  std::lock_guard lock(mutex_);
  return result_locked(true);
}

MergeResult MergedStream::take_result() {
  std::lock_guard lock(mutex_);
  MergeResult result = result_locked(false);
  // The counters and the error stay, so that result() still agrees.
  for (std::size_t i = 0; i < feeds_.size(); ++i) {
    result.nodes[i].journeys = std::exchange(feeds_[i].out.journeys, {});
    result.nodes[i].summary = std::exchange(feeds_[i].out.summary, std::nullopt);
  }
  return result;
}

MergeResult MergedStream::result_locked(bool with_lines) const {
  const auto now = steady_();
  MergeResult result;
  result.nodes.reserve(feeds_.size());
  for (const Feed& feed : feeds_) {
    MergedNode node;
    if (with_lines) {
      node = feed.out;
    } else {
      node.events = feed.out.events;
      node.clock_offset_ms_estimate = feed.out.clock_offset_ms_estimate;
      node.last_error = feed.out.last_error;
    }
    node.node = feed.name;
    node.state = reported_state(feed, now);
    result.nodes.push_back(std::move(node));
  }
  result.events_sent = events_sent_;
  result.events_late = events_late_;
  result.journeys_not_kept = journeys_not_kept_;
  result.ended = ended_;
  return result;
}

}  // namespace pwru
