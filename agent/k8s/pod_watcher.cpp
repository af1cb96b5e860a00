#include "k8s/pod_watcher.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <random>

#include "k8s/kube_client.h"
#include "k8s/url_encode.h"

namespace pwru {

namespace {

constexpr int kListPageSize = 500;
// The API server ends a watch after this; we then resume from the last
// resourceVersion (not a failure).
constexpr int kWatchTimeoutSeconds = 300;
// Bookmarks arrive about once a minute: silence longer than this is a dead
// connection.
constexpr int kReadTimeoutSeconds = 90;

std::string pods_path(const KubeApiConfig& config) {
  return "/api/v1/pods?fieldSelector=" + url_encode_component("spec.nodeName=" + config.node_name);
}

}  // namespace

PodWatcher::PodWatcher(KubeApiConfig config, PodCache& cache) : config_(std::move(config)), cache_(cache) {}

PodWatcher::~PodWatcher() { stop(); }

void PodWatcher::start() {
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void PodWatcher::stop() noexcept {
  stopping_ = true;
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

PodWatcherStats PodWatcher::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void PodWatcher::fail(const std::string& why) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.failures;
  stats_.last_error = why;
  current_ = false;
}

void PodWatcher::caught_up(const char* how) {
  if (!current_.exchange(true) && synced_.load()) spdlog::info("kubernetes: {} again: pod labels are current", how);
}

void PodWatcher::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mutex_);
  wake_.wait_for(lock, d, [this] { return stopping_.load(); });
}

void PodWatcher::run() {
  std::mt19937 random(std::random_device{}());
  auto backoff = kInitialBackoff;
  // Jitter keeps a node's agents from hitting a recovering API server in step.
  const auto back_off = [&] {
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    sleep_for(std::chrono::milliseconds(static_cast<long>(backoff.count() * jitter(random))));
    backoff = std::min(backoff * 2, kMaxBackoff);
  };
  bool need_list = true;
  while (!stopping_) {
    if (need_list) {
      if (!list()) {
        spdlog::warn("kubernetes: {}; retrying in about {} ms", stats().last_error, backoff.count());
        back_off();
        continue;
      }
      need_list = false;
      backoff = kInitialBackoff;
    }
    switch (watch()) {
      case WatchEnd::kStopped:
        return;
      case WatchEnd::kResume:  // the server ended the watch on time: resume at once
        backoff = kInitialBackoff;
        break;
      case WatchEnd::kRelist:
        need_list = true;
        break;
      case WatchEnd::kReconnect:
        back_off();
        break;
    }
  }
}

bool PodWatcher::list() {
  try {
    auto client = make_kube_client(config_, kReadTimeoutSeconds);
    std::vector<PodInfo> pods;
    std::string continue_token, resource_version;
    do {
      std::string path = pods_path(config_) + "&limit=" + std::to_string(kListPageSize);
      if (!continue_token.empty()) path += "&continue=" + url_encode_component(continue_token);
      auto res = client->Get(path);
      if (!res || res->status != 200) {
        fail("listing pods: " + describe_kube_result(res));
        return false;
      }
      PodListPage page = parse_pod_list(res->body);
      pods.insert(pods.end(), page.pods.begin(), page.pods.end());
      continue_token = page.continue_token;
      resource_version = page.resource_version;
    } while (!continue_token.empty() && !stopping_);
    cache_.replace(pods, resource_version);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.lists;
    }
    caught_up("listed pods");
    if (!synced_.exchange(true)) spdlog::info("kubernetes: {} pods on node {}", pods.size(), config_.node_name);
    return true;
  } catch (const std::exception& e) {
    fail(std::string("listing pods: ") + e.what());
    return false;
  }
}

PodWatcher::WatchEnd PodWatcher::watch() {
  auto client = make_kube_client(config_, kReadTimeoutSeconds);
  const std::string path = pods_path(config_) +
                           "&watch=1&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(kWatchTimeoutSeconds) +
                           "&resourceVersion=" + url_encode_component(cache_.resource_version());
  std::string pending;
  bool gone = false;
  const auto connected = [&](const httplib::Response& response) {
    // Resumed from our resourceVersion: nothing in between is missed.
    if (response.status == 200) caught_up("watching pods");
    return true;
  };
  auto res = client->Get(path, connected, [&](const char* data, std::size_t length) {
    if (stopping_) return false;
    pending.append(data, length);
    for (std::size_t eol; (eol = pending.find('\n')) != std::string::npos;) {
      const std::string line = pending.substr(0, eol);
      pending.erase(0, eol + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      const WatchEvent event = parse_watch_line(line);
      if (event.type == WatchEvent::Type::kError) spdlog::warn("kubernetes watch: {}", event.message);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.watch_events;
      }
      if (!cache_.apply(event)) {
        gone = true;
        return false;  // stop reading: our resourceVersion is too old
      }
    }
    return true;
  });
  if (stopping_) return WatchEnd::kStopped;
  if (gone || (res && res->status == 410)) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.relists_after_gone;
    return WatchEnd::kRelist;
  }
  if (res && res->status == 200) return WatchEnd::kResume;
  fail("watching pods: " + describe_kube_result(res));
  spdlog::warn("kubernetes: {}", stats().last_error);
  return WatchEnd::kReconnect;
}

}  // namespace pwru
