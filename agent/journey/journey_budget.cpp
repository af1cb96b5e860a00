#include "journey/journey_budget.h"

#include <fmt/format.h>

namespace pwru {

JourneyBudget::JourneyBudget(std::uint64_t limit_bytes, std::string name, std::string remedy)
    : limit_(limit_bytes), name_(std::move(name)), remedy_(std::move(remedy)) {}

bool JourneyBudget::try_charge(std::uint64_t bytes) {
  std::uint64_t used = used_.load(std::memory_order_relaxed);
  do {
    // charge_anyway() may have gone past the limit.
    if (used >= limit_ || bytes > limit_ - used) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

void JourneyBudget::charge_anyway(std::uint64_t bytes) { used_.fetch_add(bytes, std::memory_order_relaxed); }

void JourneyBudget::release(std::uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

std::string format_bytes(std::uint64_t bytes) {
  constexpr std::uint64_t kMiB = 1u << 20, kGiB = 1u << 30;
  if (bytes >= kGiB && bytes % kGiB == 0) return fmt::format("{} GiB", bytes / kGiB);
  if (bytes >= kMiB && bytes % kMiB == 0) return fmt::format("{} MiB", bytes / kMiB);
  return fmt::format("{} bytes", bytes);
}

}  // namespace pwru
