// Reading Kubernetes objects with defaults: an object the API server shows
// without a field (or with another type) is read as lacking it, never an
// exception from the JSON library mid-request.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace pwru {

inline const nlohmann::json& field(const nlohmann::json& object, const char* key) {
  static const nlohmann::json kNull;
  if (!object.is_object()) return kNull;
  const auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

inline std::string string_field(const nlohmann::json& object, const char* key) {
  const nlohmann::json& value = field(object, key);
  return value.is_string() ? value.get<std::string>() : std::string();
}

// Whether the pod's Ready condition is True.
inline bool pod_ready(const nlohmann::json& pod) {
  const nlohmann::json& conditions = field(field(pod, "status"), "conditions");
  if (!conditions.is_array()) return false;
  for (const nlohmann::json& condition : conditions)
    if (string_field(condition, "type") == "Ready") return string_field(condition, "status") == "True";
  return false;
}

}  // namespace pwru
