// Which network namespace each Kubernetes pod on this node lives in, found
// by walking /proc: a process's cgroup names its pod (cgroup_path.h), its
// /proc/PID/ns/net names its netns. The BPF counters key on netns inodes;
// this is the bridge from those inodes to pods.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "common/unique_fd.h"

namespace pwru {

// The inode of the netns a path opens, or the errno that stopped stat().
struct NetnsInode {
  std::uint32_t inode = 0;
  int error = 0;  // set exactly when inode is 0
};

// Tests swap it out: stat() of a made-up ns/net cannot return a chosen inode.
using NetnsInodeLookup = std::function<NetnsInode(const std::string& path)>;

// stat() of `path`: st_ino, or errno.
NetnsInode stat_netns_inode(const std::string& path);

// Where host_netns came from.
enum class HostNetnsSource {
  kPid1,     // <proc_root>/1/ns/net: init's netns, the host's
  kSelf,     // /proc/self/ns/net because PID 1's was unreadable: right only
             // when the scanner itself runs in the host netns (hostNetwork)
  kUnknown,  // neither was readable: host_netns is 0, no pod is hostNetwork
};

struct ProcScanResult {
  // Pod UID (cgroup_path.h's form) -> inode of the pod's own netns.
  std::map<std::string, std::uint32_t> pod_netns;
  // Pods whose netns is host_netns (hostNetwork: true); not in pod_netns.
  std::set<std::string> host_network_pods;
  std::uint32_t host_netns = 0;
  HostNetnsSource host_netns_source = HostNetnsSource::kUnknown;

  std::size_t processes_scanned = 0;  // numeric entries under proc_root
  std::size_t pod_processes = 0;      // counted towards some pod's netns
  // Exited between readdir and reading its files (ENOENT, ESRCH).
  std::size_t processes_vanished = 0;
  // EACCES/EPERM: /proc/PID/ns/net needs ptrace access to the process
  // (root, or CAP_SYS_PTRACE, and no LSM veto).
  std::size_t processes_denied = 0;
  // Any other read failure; the process is skipped like the two above.
  std::size_t processes_unreadable = 0;
  // conmon processes (PodContainer::runtime_monitor): in the pod's cgroup,
  // in the host's netns, ignored.
  std::size_t runtime_monitors_skipped = 0;
  // Pods whose processes were found in more than one netns (see scan()).
  std::size_t pods_in_several_netns = 0;
};

// An open fd on netns `inode`, taken from a process that lives in it (and,
// with `pod_uid`, that is in that pod's cgroup when the fd is taken); an
// empty fd when no such process is found. While the fd is open the kernel
// cannot free the netns, so its inode number cannot be handed to the next
// netns created: a trace filtering on the number keeps meaning this netns.
// Each process is read through its own /proc/PID directory fd, so a PID
// reused between reading the cgroup and opening ns/net fails the open
// instead of pinning a stranger's netns.
UniqueFd pin_netns(const std::string& proc_root, std::uint32_t inode, const std::string& pod_uid = "");

class ProcScanner {
 public:
  explicit ProcScanner(std::string proc_root = "/proc", NetnsInodeLookup netns_inode_of = stat_netns_inode);

  // One pass over proc_root. Processes come and go during it; one that
  // vanishes or cannot be read is counted and skipped, never an error.
  //
  // A pod normally has one netns: the sandbox's, shared by every container.
  // When its processes are found in several (a container that unshares its
  // own netns, a runtime helper placed in the pod's cgroup), the pod gets:
  //   1. the netns of its pause process (comm "pause"): the sandbox holds
  //      the pod's netns by definition, and CNI gave that one the pod IP;
  //   2. without one (CRI-O may run pods without an infra container), the
  //      netns of the most processes;
  //   3. on a tie, a netns other than the host's (helpers sit in the host's),
  //      then the lowest inode, so repeated scans agree.
  // Throws SystemError when proc_root itself cannot be listed.
  ProcScanResult scan() const;

 private:
  std::string proc_root_;
  NetnsInodeLookup netns_inode_of_;
};

}  // namespace pwru
