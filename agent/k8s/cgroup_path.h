// Which Kubernetes pod (and container) a process belongs to, read from its
// cgroup path: the kubelet names every pod's cgroup after the pod's UID, so
// a line of /proc/PID/cgroup identifies the pod without asking the API
// server or the container runtime.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pwru {

struct PodContainer {
  // "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lowercase: the pod's
  // metadata.uid. Static (manifest) pods are the exception: the kubelet names
  // them by a 32-hex md5 of the manifest, kept as is; it is the mirror pod's
  // kubernetes.io/config.hash annotation, not its metadata.uid.
  std::string pod_uid;
  // The runtime's container id without the runtime's prefix or ".scope"
  // (usually 64 hex). Empty for a process in the pod-level cgroup itself.
  std::string container_id;
  // "guaranteed", "burstable" or "besteffort".
  std::string qos;
  // CRI-O's conmon monitor of container_id. It lives in the pod's cgroup but
  // in the host's namespaces, so it says nothing about the pod's netns;
  // callers mapping pods to namespaces must skip it.
  bool runtime_monitor = false;
};

// Parses one line of /proc/PID/cgroup ("0::/kubepods.slice/...",
// "12:memory:/kubepods/...") or just its path. Knows both kubelet cgroup
// drivers, at any depth (kind, k3d, minikube nest them under a node
// container's cgroup):
//   systemd:  .../[<root>-]kubepods[-<qos>]-pod<uid with '_'>.slice/<prefix><id>.scope
//   cgroupfs: .../kubepods[/<qos>]/pod<uid>/<prefix><id>
// with the runtime prefixes "cri-containerd-", "crio-", "docker-" and
// "crio-conmon-", and containerd's "<pod slice>:cri-containerd:<id>"
// directory left by a runtime/kubelet cgroup driver mismatch.
// nullopt for anything that is not inside a pod's cgroup (system services,
// user sessions, the QoS-level cgroups) and for a pod cgroup whose UID is
// malformed. With pods nested in pods (kind in a pod), the outermost pod
// wins: it is the one the node's API server knows.
std::optional<PodContainer> parse_kubepods_cgroup(std::string_view line);

}  // namespace pwru
