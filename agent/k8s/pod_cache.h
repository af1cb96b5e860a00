// The pods of this node as the API server last told us: filled by a LIST,
// kept current by WATCH events. Pure data and JSON handling, so the watch
// protocol's edge cases are testable without a server.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pwru {

struct PodInfo {
  std::string uid;
  std::string namespace_name;
  std::string name;
  bool host_network = false;
};

// What one line of a watch stream asks of the cache.
struct WatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kGone, kError } type = Type::kError;
  std::optional<PodInfo> pod;    // Added/Modified/Deleted
  std::string resource_version;  // of the object (or the bookmark); "" if absent
  std::string message;           // Error/Gone: the API server's message
};

// One JSON line of a watch response; a malformed line is kError with the reason.
WatchEvent parse_watch_line(std::string_view line);

// A PodList body: its pods and the list's resourceVersion (where a watch starts).
struct PodListPage {
  std::vector<PodInfo> pods;
  std::string resource_version;
  std::string continue_token;  // more pages when not empty
};
PodListPage parse_pod_list(std::string_view body);  // throws std::runtime_error on malformed JSON

class PodCache {
 public:
  // Replaces everything with a fresh list (after start-up or a 410 Gone).
  void replace(const std::vector<PodInfo>& pods, const std::string& resource_version);
  // Applies one watch event; returns false for Gone (the caller must relist).
  bool apply(const WatchEvent& event);

  std::optional<PodInfo> by_uid(const std::string& uid) const;
  std::vector<PodInfo> pods() const;
  std::size_t size() const;
  std::string resource_version() const;
  // Bumped on every change of the pod set: resolvers rescan when it moves.
  std::uint64_t generation() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, PodInfo> by_uid_;
  std::string resource_version_;
  std::uint64_t generation_ = 0;
};

}  // namespace pwru
