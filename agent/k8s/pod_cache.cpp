#include "k8s/pod_cache.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace pwru {

namespace {

using nlohmann::json;

std::string string_at(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Only the fields pod identity needs; everything else in a Pod is ignored.
std::optional<PodInfo> pod_from(const json& object) {
  if (!object.is_object()) return std::nullopt;
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return std::nullopt;
  PodInfo pod;
  pod.uid = string_at(*meta, "uid");
  pod.namespace_name = string_at(*meta, "namespace");
  pod.name = string_at(*meta, "name");
  if (pod.uid.empty() || pod.name.empty()) return std::nullopt;
  auto spec = object.find("spec");
  if (spec != object.end() && spec->is_object()) {
    auto host = spec->find("hostNetwork");
    pod.host_network = host != spec->end() && host->is_boolean() && host->get<bool>();
  }
  return pod;
}

std::string resource_version_of(const json& object) {
  auto meta = object.find("metadata");
  return meta != object.end() && meta->is_object() ? string_at(*meta, "resourceVersion") : std::string();
}

}  // namespace

WatchEvent parse_watch_line(std::string_view line) {
  WatchEvent event;
  const json parsed = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    event.message = "malformed watch line: " + std::string(line.substr(0, 200));
    return event;
  }
  const std::string type = string_at(parsed, "type");
  auto object = parsed.find("object");
  if (object == parsed.end() || !object->is_object()) {
    event.message = "watch event without an object";
    return event;
  }
  if (type == "ERROR") {
    // A Status object; 410 means our resourceVersion is too old: relist.
    auto code = object->find("code");
    const bool gone = code != object->end() && code->is_number_integer() && code->get<int>() == 410;
    event.type = gone ? WatchEvent::Type::kGone : WatchEvent::Type::kError;
    event.message = string_at(*object, "message");
    return event;
  }
  event.resource_version = resource_version_of(*object);
  if (type == "BOOKMARK") {
    event.type = WatchEvent::Type::kBookmark;
    return event;
  }
  if (type == "ADDED")
    event.type = WatchEvent::Type::kAdded;
  else if (type == "MODIFIED")
    event.type = WatchEvent::Type::kModified;
  else if (type == "DELETED")
    event.type = WatchEvent::Type::kDeleted;
  else {
    event.message = "unknown watch event type '" + type + "'";
    return event;
  }
  event.pod = pod_from(*object);
  if (!event.pod) {
    event.type = WatchEvent::Type::kError;
    event.message = "watch event " + type + " without a pod's uid and name";
  }
  return event;
}

PodListPage parse_pod_list(std::string_view body) {
  const json parsed = json::parse(body.begin(), body.end(), nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) throw std::runtime_error("the pod list is not a JSON object");
  if (string_at(parsed, "kind") == "Status")
    throw std::runtime_error("the API server answered the pod list with: " + string_at(parsed, "message"));
  PodListPage page;
  auto meta = parsed.find("metadata");
  if (meta != parsed.end() && meta->is_object()) {
    page.resource_version = string_at(*meta, "resourceVersion");
    page.continue_token = string_at(*meta, "continue");
  }
  auto items = parsed.find("items");
  if (items != parsed.end() && items->is_array())
    for (const json& item : *items)
      if (auto pod = pod_from(item)) page.pods.push_back(std::move(*pod));
  return page;
}

void PodCache::replace(const std::vector<PodInfo>& pods, const std::string& resource_version) {
  std::lock_guard<std::mutex> lock(mutex_);
  by_uid_.clear();
  for (const PodInfo& pod : pods) by_uid_[pod.uid] = pod;
  resource_version_ = resource_version;
  ++generation_;
}

bool PodCache::apply(const WatchEvent& event) {
  std::lock_guard<std::mutex> lock(mutex_);
  switch (event.type) {
    case WatchEvent::Type::kGone:
      return false;
    case WatchEvent::Type::kError:
      return true;  // the caller logs it; the cache is unchanged
    case WatchEvent::Type::kBookmark:
      break;
    case WatchEvent::Type::kAdded:
    case WatchEvent::Type::kModified:
      by_uid_[event.pod->uid] = *event.pod;
      ++generation_;
      break;
    case WatchEvent::Type::kDeleted:
      by_uid_.erase(event.pod->uid);
      ++generation_;
      break;
  }
  if (!event.resource_version.empty()) resource_version_ = event.resource_version;
  return true;
}

std::optional<PodInfo> PodCache::by_uid(const std::string& uid) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) return std::nullopt;
  return it->second;
}

std::size_t PodCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return by_uid_.size();
}

std::vector<PodInfo> PodCache::pods() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<PodInfo> out;
  for (const auto& [uid, pod] : by_uid_) out.push_back(pod);
  return out;
}

std::string PodCache::resource_version() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return resource_version_;
}

std::uint64_t PodCache::generation() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return generation_;
}

}  // namespace pwru
