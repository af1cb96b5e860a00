// One memory budget for every --summary tracker of a process. The agent's
// traces share one, so concurrent summaries under a flood cannot together
// outgrow the pod's memory limit; `pwru` keeps one of its own.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace pwru {

class JourneyBudget {
 public:
  // `name` says which budget it is and how big, for the note a cut summary
  // carries ("traces.summary_memory_bytes = 64 MiB, shared by all traces");
  // `remedy` what the reader can do about it.
  JourneyBudget(std::uint64_t limit_bytes, std::string name, std::string remedy);
  JourneyBudget(const JourneyBudget&) = delete;
  JourneyBudget& operator=(const JourneyBudget&) = delete;

  // Takes `bytes` if they fit under the limit with what is charged already.
  bool try_charge(std::uint64_t bytes);
  // Takes `bytes` even past the limit. Only for what a followed skb's fate
  // needs (kernel function, drop reason and device names, interned once per
  // trace): a bounded overdraw, so the fates of the skbs followed stay whole.
  void charge_anyway(std::uint64_t bytes);
  void release(std::uint64_t bytes);

  std::uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  std::uint64_t limit() const { return limit_; }
  const std::string& name() const { return name_; }
  const std::string& remedy() const { return remedy_; }

 private:
  const std::uint64_t limit_;
  std::atomic<std::uint64_t> used_{0};
  const std::string name_;
  const std::string remedy_;
};

// "64 MiB", "2 GiB", "1000 bytes": sizes as a note shows them.
std::string format_bytes(std::uint64_t bytes);

}  // namespace pwru
