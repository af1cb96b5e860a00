#include "k8s/proc_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "k8s/cgroup_path.h"

namespace pwru {

namespace {

// /proc/PID/cgroup has one line per hierarchy: one on cgroup v2, about a
// dozen on v1, each a few hundred bytes. A file longer than this is no
// kubelet layout; its complete lines before the cut still count.
constexpr std::size_t kCgroupFileLimit = 16 * 1024;
constexpr std::size_t kCommLimit = 64;  // the kernel keeps 15 characters
constexpr std::string_view kPauseComm = "pause";

// Bytes read from dir_fd/relative (at most capacity), or -errno.
ssize_t read_bounded(int dir_fd, const char* relative, char* buffer, std::size_t capacity) {
  UniqueFd fd(::openat(dir_fd, relative, O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return -errno;
  std::size_t used = 0;
  while (used < capacity) {
    const ssize_t n = ::read(fd.get(), buffer + used, capacity - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(used);
}

bool is_pid(const char* name) {
  if (*name == '\0') return false;
  for (const char* c = name; *c != '\0'; ++c) {
    if (*c < '0' || *c > '9') return false;
  }
  return true;
}

void count_skip(ProcScanResult& result, int err) {
  switch (err) {
    case ENOENT:
    case ESRCH:
      ++result.processes_vanished;
      break;
    case EACCES:
    case EPERM:
      ++result.processes_denied;
      break;
    default:
      ++result.processes_unreadable;
  }
}

// The first line of a /proc/PID/cgroup text that puts the process in a
// pod. On cgroup v1 every controller's line names the same pod.
std::optional<PodContainer> pod_of_cgroup_file(std::string_view text, bool truncated) {
  if (truncated) {
    const std::size_t last_newline = text.rfind('\n');
    text = last_newline == std::string_view::npos ? std::string_view{} : text.substr(0, last_newline + 1);
  }
  while (!text.empty()) {
    std::size_t end = text.find('\n');
    if (end == std::string_view::npos) end = text.size();
    if (std::optional<PodContainer> pod = parse_kubepods_cgroup(text.substr(0, end))) return pod;
    text.remove_prefix(end == text.size() ? end : end + 1);
  }
  return std::nullopt;
}

bool is_pause_process(int proc_fd, const char* pid) {
  char relative[NAME_MAX + sizeof "/cgroup"];
  std::snprintf(relative, sizeof relative, "%s/comm", pid);
  char comm[kCommLimit];
  const ssize_t n = read_bounded(proc_fd, relative, comm, sizeof comm);
  if (n <= 0) return false;
  std::string_view name(comm, static_cast<std::size_t>(n));
  if (name.ends_with('\n')) name.remove_suffix(1);
  return name == kPauseComm;
}

struct NetnsVotes {
  std::size_t processes = 0;
  bool holds_pause = false;
};

// The ranking scan() documents; `a` is seen after `b`, in ascending inode
// order, so an exact tie keeps `b`, the lower inode.
bool outranks(const NetnsVotes& a, std::uint32_t a_inode, const NetnsVotes& b, std::uint32_t b_inode,
              std::uint32_t host_netns) {
  if (a.holds_pause != b.holds_pause) return a.holds_pause;
  if (a.processes != b.processes) return a.processes > b.processes;
  const bool a_is_own = a_inode != host_netns;
  const bool b_is_own = b_inode != host_netns;
  return a_is_own && !b_is_own;
}

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};

}  // namespace

NetnsInode stat_netns_inode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {0, errno};
  return {static_cast<std::uint32_t>(st.st_ino), 0};
}

UniqueFd pin_netns(const std::string& proc_root, std::uint32_t inode, const std::string& pod_uid) {
  if (inode == 0) return {};
  std::unique_ptr<DIR, DirCloser> dir(::opendir(proc_root.c_str()));
  if (!dir) return {};
  const int proc_fd = ::dirfd(dir.get());
  std::vector<char> cgroup_text(kCgroupFileLimit);
  const auto in_pod = [&](int pid_fd) {
    if (pod_uid.empty()) return true;
    const ssize_t n = read_bounded(pid_fd, "cgroup", cgroup_text.data(), cgroup_text.size());
    if (n < 0) return false;
    const auto length = static_cast<std::size_t>(n);
    const std::optional<PodContainer> pod =
        pod_of_cgroup_file({cgroup_text.data(), length}, length == cgroup_text.size());
    return pod && !pod->runtime_monitor && pod->pod_uid == pod_uid;
  };
  while (const dirent* entry = ::readdir(dir.get())) {
    if (!is_pid(entry->d_name)) continue;
    UniqueFd pid_fd(::openat(proc_fd, entry->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!pid_fd || !in_pod(pid_fd.get())) continue;
    UniqueFd netns(::openat(pid_fd.get(), "ns/net", O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!netns || ::fstat(netns.get(), &st) != 0 || st.st_ino != inode) continue;
    // Still the pod's process now that its netns is held: it did not exit
    // (its /proc directory would fail) or change cgroup meanwhile.
    if (in_pod(pid_fd.get())) return netns;
  }
  return {};
}

ProcScanner::ProcScanner(std::string proc_root, NetnsInodeLookup netns_inode_of)
    : proc_root_(std::move(proc_root)), netns_inode_of_(std::move(netns_inode_of)) {}

ProcScanResult ProcScanner::scan() const {
  ProcScanResult result;
  if (const NetnsInode init = netns_inode_of_(proc_root_ + "/1/ns/net"); init.inode != 0) {
    result.host_netns = init.inode;
    result.host_netns_source = HostNetnsSource::kPid1;
  } else if (const NetnsInode self = netns_inode_of_("/proc/self/ns/net"); self.inode != 0) {
    result.host_netns = self.inode;
    result.host_netns_source = HostNetnsSource::kSelf;
  }

  std::unique_ptr<DIR, DirCloser> dir(::opendir(proc_root_.c_str()));
  if (!dir) {
    throw SystemError("cannot list " + proc_root_ +
                          " to map pods to network namespaces; in a container, mount the host's /proc "
                          "there (hostPID: true, or a hostPath volume)",
                      errno);
  }
  const int proc_fd = ::dirfd(dir.get());

  std::map<std::string, std::map<std::uint32_t, NetnsVotes>> votes;
  std::vector<char> cgroup_text(kCgroupFileLimit);
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir.get());
    if (entry == nullptr) {
      if (errno != 0) throw SystemError("cannot read the process list in " + proc_root_, errno);
      break;
    }
    if (entry->d_type != DT_DIR && entry->d_type != DT_UNKNOWN) continue;
    if (!is_pid(entry->d_name)) continue;
    ++result.processes_scanned;

    char relative[NAME_MAX + sizeof "/cgroup"];
    std::snprintf(relative, sizeof relative, "%s/cgroup", entry->d_name);
    const ssize_t n = read_bounded(proc_fd, relative, cgroup_text.data(), cgroup_text.size());
    if (n < 0) {
      count_skip(result, static_cast<int>(-n));
      continue;
    }
    const auto length = static_cast<std::size_t>(n);
    const std::optional<PodContainer> pod =
        pod_of_cgroup_file({cgroup_text.data(), length}, length == cgroup_text.size());
    if (!pod) continue;
    if (pod->runtime_monitor) {
      ++result.runtime_monitors_skipped;
      continue;
    }

    const NetnsInode netns = netns_inode_of_(proc_root_ + "/" + entry->d_name + "/ns/net");
    if (netns.inode == 0) {
      count_skip(result, netns.error);
      continue;
    }
    NetnsVotes& slot = votes[pod->pod_uid][netns.inode];
    ++slot.processes;
    if (!slot.holds_pause && is_pause_process(proc_fd, entry->d_name)) slot.holds_pause = true;
    ++result.pod_processes;
  }

  for (const auto& [pod_uid, by_netns] : votes) {
    if (by_netns.size() > 1) ++result.pods_in_several_netns;
    std::uint32_t chosen = 0;
    const NetnsVotes* chosen_votes = nullptr;
    for (const auto& [inode, netns_votes] : by_netns) {
      if (chosen_votes == nullptr || outranks(netns_votes, inode, *chosen_votes, chosen, result.host_netns)) {
        chosen = inode;
        chosen_votes = &netns_votes;
      }
    }
    if (result.host_netns != 0 && chosen == result.host_netns) {
      result.host_network_pods.insert(pod_uid);
    } else {
      result.pod_netns.emplace(pod_uid, chosen);
    }
  }
  return result;
}

}  // namespace pwru
