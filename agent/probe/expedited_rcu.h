// Expedited RCU grace periods while plain kprobes detach. Closing a kprobe's
// perf event waits for grace periods, one of them (tracepoint_synchronize_
// unregister) while holding the global event_mutex, so detaching ~1.5k
// kprobes is bound by grace-period latency (Debian 6.1 guest: 145 s one by
// one, 51 s expedited; see bench/README.md).
//
// /sys/kernel/rcu_expedited is node-global. Within a process the detaches
// that want it share it by count: the first sets it, the last puts the
// original value back, so one trace ending cannot slow another's detach or
// leave the knob set. The original value is also written to a state file
// while the knob is ours, so a run killed in between (SIGKILL, OOM) is
// repaired by the next start (restore_left_over). Across processes nothing
// is counted: a second process finds the knob already set and leaves it.
#pragma once

#include <mutex>
#include <string>

namespace pwru {

class ExpeditedRcu {
 public:
  struct Paths {
    std::string knob = "/sys/kernel/rcu_expedited";
    // On tmpfs: gone at reboot, with the knob's setting. The chart mounts an
    // emptyDir here so it outlives an agent container's restart.
    std::string state = "/run/pwru/rcu_expedited.restore";
  };

  // One per process in production (shared()); tests make their own.
  explicit ExpeditedRcu(Paths paths);
  static ExpeditedRcu& shared();

  // Puts back the value a killed run recorded, unless the process that
  // recorded it still lives. Returns what it did, for the log ("" if nothing).
  std::string restore_left_over();

  // Holds expedited grace periods for its lifetime (nothing if the knob
  // cannot be read or written: detaching is only slower).
  class Hold {
   public:
    explicit Hold(ExpeditedRcu& owner);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    ExpeditedRcu& owner_;
  };

  // Whether this process holds the knob now.
  bool held() const;

 private:
  void acquire();
  void release();

  Paths paths_;
  mutable std::mutex mutex_;
  unsigned holders_ = 0;
  bool changed_ = false;  // we set it: the last holder restores "0"
};

}  // namespace pwru
