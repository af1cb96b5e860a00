// A CounterSource whose snapshot the test sets: the metrics collector's
// input without BPF maps.
#pragma once

#include <mutex>

#include "events/counter_source.h"

namespace pwru::testing {

class FakeCounterSource final : public CounterSource {
 public:
  CounterSnapshot read() const override {
    std::lock_guard lock(mu_);
    return snap_;
  }
  void set(CounterSnapshot s) {
    std::lock_guard lock(mu_);
    snap_ = std::move(s);
  }

 private:
  mutable std::mutex mu_;
  CounterSnapshot snap_;
};

}  // namespace pwru::testing
