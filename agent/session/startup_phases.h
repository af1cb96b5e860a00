// Where pwru's start-up time goes: named phases with their durations, in the
// order they ran, printed as one stderr line so a slow start on some kernel
// can be told apart (BTF parsing, kallsyms, program loads, attach syscalls).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace pwru {

class StartupPhases {
 public:
  // Runs `work` and records how long it took under `name`; a phase named
  // twice adds up (e.g. the BTF scans for tracepoints and for functions).
  template <typename Work>
  decltype(auto) time(const std::string& name, Work&& work) {
    const auto start = std::chrono::steady_clock::now();
    struct Record {
      StartupPhases& phases;
      const std::string& name;
      std::chrono::steady_clock::time_point start;
      ~Record() { phases.add(name, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()); }
    } record{*this, name, start};
    return std::forward<Work>(work)();
  }

  void add(const std::string& name, double seconds) {
    for (auto& phase : phases_)
      if (phase.first == name) {
        phase.second += seconds;
        return;
      }
    phases_.emplace_back(name, seconds);
  }

  void append(const StartupPhases& other) {
    for (const auto& phase : other.phases_) add(phase.first, phase.second);
  }

  const std::vector<std::pair<std::string, double>>& phases() const { return phases_; }

  // "btf 1.20 s, kallsyms 0.31 s, ..."
  std::string line() const {
    std::string out;
    char seconds[32];
    for (const auto& [name, s] : phases_) {
      std::snprintf(seconds, sizeof(seconds), " %.2f s", s);
      if (!out.empty()) out += ", ";
      out += name + seconds;
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, double>> phases_;
};

}  // namespace pwru
