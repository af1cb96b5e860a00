// Processes placed the way a node's container runtime places a pod's: in a
// network namespace and in a cgroup named as the kubelet names it (systemd
// or cgroupfs driver), for tests of the /proc scan and of pod identity.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace pwru::testing {

// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on unified
// hosts, /sys/fs/cgroup/unified on hybrid ones; "" without one.
std::string cgroup2_mount_point();

std::string random_hex(std::mt19937_64& rng, int digits);
std::string random_pod_uid(std::mt19937_64& rng);
// The systemd driver's spelling of a pod UID in a slice name.
std::string systemd_escaped(std::string uid);
// st_ino of a path (a test failure when stat fails).
std::uint32_t inode_of(const std::string& path);
// /proc/PID/cgroup, for failure messages.
std::string cgroup_file_of(pid_t pid);

// Cgroup directories of one pod's container in the kubelet's naming, below
// `root` (a directory of the test's own under the cgroup2 mount).
std::string systemd_container_cgroup(const std::string& root, const std::string& pod_uid,
                                     const std::string& container_id);
std::string cgroupfs_container_cgroup(const std::string& root, const std::string& pod_uid,
                                      const std::string& container_id);

// Directories made under the cgroup v2 mount, removed leaf-first.
class CgroupDirs {
 public:
  CgroupDirs() = default;
  CgroupDirs(const CgroupDirs&) = delete;
  CgroupDirs& operator=(const CgroupDirs&) = delete;
  ~CgroupDirs();

  // mkdir -p below the mount; returns "" after a test failure naming the
  // refusal.
  std::string make(const std::string& mount, const std::string& relative);

 private:
  std::vector<std::string> made_;
};

// `sleep 30`s started in a netns and a cgroup, killed and reaped at the end.
class Sleepers {
 public:
  Sleepers() = default;
  Sleepers(const Sleepers&) = delete;
  Sleepers& operator=(const Sleepers&) = delete;
  ~Sleepers();

  // The child joins netns_path (none: stays in ours) and cgroup_dir before
  // exec, so a scan never sees it half-placed; returns its pid, or 0 after
  // a test failure naming the step the kernel refused.
  pid_t start(const std::string& netns_path, const std::string& cgroup_dir);

 private:
  std::vector<pid_t> pids_;
};

}  // namespace pwru::testing
