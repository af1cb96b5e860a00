#include "k8s/cgroup_path.h"

#include <array>
#include <cstddef>

namespace pwru {

namespace {

constexpr std::string_view kKubepods = "kubepods";
constexpr std::string_view kPodPrefix = "pod";
constexpr std::string_view kSliceSuffix = ".slice";
constexpr std::string_view kScopeSuffix = ".scope";
// The kernel appends this to a cgroup v2 path removed while a (dying)
// process still shows it; the pod is still the one named.
constexpr std::string_view kDeletedSuffix = " (deleted)";
constexpr std::string_view kConmonPrefix = "crio-conmon-";
// Checked after kConmonPrefix, which "crio-" would also match.
constexpr std::array<std::string_view, 3> kRuntimePrefixes = {"cri-containerd-", "crio-", "docker-"};

bool is_hex_digit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

char to_lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_qos_level(std::string_view name) { return name == "burstable" || name == "besteffort"; }

// A UUID written with `separator` between its 8-4-4-4-12 groups, or the
// 32-hex md5 the kubelet gives static pods. Anything else is not a UID the
// kubelet would write, so a path carrying it is not a pod's.
std::optional<std::string> canonical_uid(std::string_view text, char separator) {
  std::string uid;
  uid.reserve(36);
  if (text.size() == 32) {
    for (const char c : text) {
      if (!is_hex_digit(c)) return std::nullopt;
      uid += to_lower_ascii(c);
    }
    return uid;
  }
  if (text.size() != 36) return std::nullopt;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool group_boundary = i == 8 || i == 13 || i == 18 || i == 23;
    if (group_boundary) {
      if (text[i] != separator) return std::nullopt;
      uid += '-';
    } else {
      if (!is_hex_digit(text[i])) return std::nullopt;
      uid += to_lower_ascii(text[i]);
    }
  }
  return uid;
}

struct PodCgroup {
  std::string uid;
  std::string qos;
};

// The systemd driver flattens the kubelet's cgroup name into one unit name,
// "-" joining its parts, which is why the UID's own dashes became "_":
// "[<root parts>-]kubepods[-<qos>]-pod<uid>" (".slice" removed). The name is
// complete on its own, so the parent slices are not needed (nor checked:
// some setups re-parent the pod slices).
std::optional<PodCgroup> parse_pod_slice(std::string_view unit) {
  const std::size_t pod_dash = unit.rfind('-');
  if (pod_dash == std::string_view::npos) return std::nullopt;
  const std::string_view pod_part = unit.substr(pod_dash + 1);
  if (!pod_part.starts_with(kPodPrefix)) return std::nullopt;
  std::optional<std::string> uid = canonical_uid(pod_part.substr(kPodPrefix.size()), '_');
  if (!uid) return std::nullopt;

  std::string_view rest = unit.substr(0, pod_dash);
  std::size_t dash = rest.rfind('-');
  std::string_view part = dash == std::string_view::npos ? rest : rest.substr(dash + 1);
  std::string qos = "guaranteed";
  if (is_qos_level(part)) {
    if (dash == std::string_view::npos) return std::nullopt;
    qos = std::string(part);
    rest = rest.substr(0, dash);
    dash = rest.rfind('-');
    part = dash == std::string_view::npos ? rest : rest.substr(dash + 1);
  }
  if (part != kKubepods) return std::nullopt;
  return PodCgroup{std::move(*uid), std::move(qos)};
}

// The cgroupfs driver keeps the kubelet's name as directories:
// kubepods/[<qos>/]pod<uid>, the UID with its dashes.
std::optional<PodCgroup> parse_pod_directory(std::string_view name, std::string_view parent,
                                             std::string_view grandparent) {
  if (!name.starts_with(kPodPrefix)) return std::nullopt;
  std::string qos;
  if (parent == kKubepods) {
    qos = "guaranteed";
  } else if (is_qos_level(parent) && grandparent == kKubepods) {
    qos = std::string(parent);
  } else {
    return std::nullopt;
  }
  std::optional<std::string> uid = canonical_uid(name.substr(kPodPrefix.size()), '-');
  if (!uid) return std::nullopt;
  return PodCgroup{std::move(*uid), std::move(qos)};
}

void set_container(PodContainer& out, std::string_view name) {
  std::string_view id = name;
  if (id.ends_with(kScopeSuffix)) id.remove_suffix(kScopeSuffix.size());
  if (id.starts_with(kConmonPrefix)) {
    out.runtime_monitor = true;
    id.remove_prefix(kConmonPrefix.size());
  } else {
    for (const std::string_view prefix : kRuntimePrefixes) {
      if (id.starts_with(prefix)) {
        id.remove_prefix(prefix.size());
        break;
      }
    }
  }
  // A bare prefix ("crio-.scope") names no id; keep what is there rather
  // than report the pod-level cgroup.
  out.container_id = std::string(id.empty() ? name : id);
}

// The path of a /proc/PID/cgroup line "hierarchy-ID:controllers:path", or
// the text itself when it already is a path.
std::optional<std::string_view> cgroup_path_of(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (!line.starts_with('/')) {
    const std::size_t first_colon = line.find(':');
    if (first_colon == 0 || first_colon == std::string_view::npos) return std::nullopt;
    for (std::size_t i = 0; i < first_colon; ++i) {
      if (line[i] < '0' || line[i] > '9') return std::nullopt;
    }
    const std::size_t second_colon = line.find(':', first_colon + 1);
    if (second_colon == std::string_view::npos) return std::nullopt;
    // Everything after the second colon: a path may itself hold colons.
    line = line.substr(second_colon + 1);
    if (!line.starts_with('/')) return std::nullopt;
  }
  if (line.ends_with(kDeletedSuffix)) line.remove_suffix(kDeletedSuffix.size());
  return line;
}

}  // namespace

std::optional<PodContainer> parse_kubepods_cgroup(std::string_view line) {
  const std::optional<std::string_view> path = cgroup_path_of(line);
  if (!path) return std::nullopt;

  std::string_view parent, grandparent;
  std::size_t pos = 0;
  while (pos < path->size()) {
    std::size_t end = path->find('/', pos);
    if (end == std::string_view::npos) end = path->size();
    const std::string_view component = path->substr(pos, end - pos);
    pos = end + 1;
    if (component.empty()) continue;

    std::optional<PodCgroup> pod;
    std::string_view container_in_component;
    if (const std::size_t colon = component.find(':'); colon != std::string_view::npos) {
      // runc's systemd form "slice:prefix:name" taken literally as a
      // directory name when containerd and runc disagree on the driver.
      const std::string_view slice = component.substr(0, colon);
      const std::size_t last_colon = component.rfind(':');
      if (last_colon != colon && slice.ends_with(kSliceSuffix)) {
        pod = parse_pod_slice(slice.substr(0, slice.size() - kSliceSuffix.size()));
        container_in_component = component.substr(last_colon + 1);
      }
    } else if (component.ends_with(kSliceSuffix)) {
      pod = parse_pod_slice(component.substr(0, component.size() - kSliceSuffix.size()));
    } else {
      pod = parse_pod_directory(component, parent, grandparent);
    }

    if (pod) {
      PodContainer result;
      result.pod_uid = std::move(pod->uid);
      result.qos = std::move(pod->qos);
      if (!container_in_component.empty()) {
        result.container_id = std::string(container_in_component);
        return result;
      }
      // The container is the pod cgroup's child; anything deeper (crun's
      // "container" sub-cgroup, a nested runtime) still runs inside it.
      while (pos < path->size()) {
        end = path->find('/', pos);
        if (end == std::string_view::npos) end = path->size();
        const std::string_view child = path->substr(pos, end - pos);
        pos = end + 1;
        if (child.empty()) continue;
        set_container(result, child);
        break;
      }
      return result;
    }
    grandparent = parent;
    parent = component;
  }
  return std::nullopt;
}

}  // namespace pwru
