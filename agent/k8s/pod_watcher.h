// Keeps a PodCache of this node's pods current from the Kubernetes API:
// LIST, then WATCH from the list's resourceVersion with bookmarks; a 410
// Gone relists; any other failure reconnects after a jittered backoff. Runs
// on a thread of its own, so an API server that is down or slow never
// blocks metrics or traces: labels catch up when it returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "k8s/kube_api_config.h"
#include "k8s/pod_cache.h"

namespace pwru {

struct PodWatcherStats {
  std::uint64_t lists = 0;
  std::uint64_t watch_events = 0;
  std::uint64_t relists_after_gone = 0;
  std::uint64_t failures = 0;
  std::string last_error;
};

class PodWatcher {
 public:
  PodWatcher(KubeApiConfig config, PodCache& cache);
  ~PodWatcher();
  PodWatcher(const PodWatcher&) = delete;
  PodWatcher& operator=(const PodWatcher&) = delete;

  void start();
  // Ends the watch (also a stream in progress) and joins the thread.
  void stop() noexcept;
  // True once a LIST succeeded: the cache reflects the node (maybe late).
  bool synced() const { return synced_.load(); }
  // True while the cache keeps up: synced, and no LIST or WATCH failed
  // since the last LIST succeeded or WATCH connected. An API server gone
  // after the first LIST makes it false; labels of pods created meanwhile
  // are missing until it is true again.
  bool current() const { return current_.load(); }
  PodWatcherStats stats() const;
  const KubeApiConfig& config() const { return config_; }

  static constexpr std::chrono::milliseconds kInitialBackoff{500};
  // With jitter at most 18 s: labels are back well within 30 s of an API
  // server's return, and a node's agents still spread their retries.
  static constexpr std::chrono::milliseconds kMaxBackoff{15000};

 private:
  void run();
  bool list();  // false on failure (backoff)
  enum class WatchEnd { kResume, kRelist, kReconnect, kStopped };
  WatchEnd watch();
  void fail(const std::string& why);
  void caught_up(const char* how);
  void sleep_for(std::chrono::milliseconds d);

  KubeApiConfig config_;
  PodCache& cache_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> synced_{false};
  std::atomic<bool> current_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  PodWatcherStats stats_;
};

}  // namespace pwru
