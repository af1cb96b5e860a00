// Polls a condition until it holds or time runs out: for tests that wait
// on threads, servers or the kernel. Returns the condition's last value.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace pwru::testing {

inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds limit = std::chrono::seconds(15),
                       std::chrono::milliseconds every = std::chrono::milliseconds(50)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(every);
  }
  return condition();
}

}  // namespace pwru::testing
