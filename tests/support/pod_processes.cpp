#include "pod_processes.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "eventually.h"

namespace pwru::testing {

// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on unified
// hosts, /sys/fs/cgroup/unified on hybrid ones; "" without one.
std::string cgroup2_mount_point() {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    // "36 25 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw"
    const std::size_t separator = line.find(" - ");
    if (separator == std::string::npos) continue;
    std::istringstream after(line.substr(separator + 3));
    std::string fstype;
    after >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream fields(line);
    std::string field;
    for (int i = 0; i < 5; ++i) fields >> field;
    return field;
  }
  return "";
}

std::string random_hex(std::mt19937_64& rng, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < digits; ++i) out += kHex[rng() % 16];
  return out;
}

std::string random_pod_uid(std::mt19937_64& rng) {
  return random_hex(rng, 8) + "-" + random_hex(rng, 4) + "-" + random_hex(rng, 4) + "-" + random_hex(rng, 4) + "-" +
         random_hex(rng, 12);
}

std::string systemd_escaped(std::string uid) {
  for (char& c : uid) {
    if (c == '-') c = '_';
  }
  return uid;
}

std::uint32_t inode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) ADD_FAILURE() << "stat " << path << ": " << std::strerror(errno);
  return static_cast<std::uint32_t>(st.st_ino);
}

CgroupDirs::~CgroupDirs() {
  for (auto dir = made_.rbegin(); dir != made_.rend(); ++dir) {
    // A killed process leaves its cgroup a moment after waitpid() on some
    // kernels: EBUSY until then.
    eventually([&] { return ::rmdir(dir->c_str()) == 0 || errno != EBUSY; }, std::chrono::seconds(1),
               std::chrono::milliseconds(10));
  }
}

std::string CgroupDirs::make(const std::string& mount, const std::string& relative) {
  std::string path = mount;
  std::size_t pos = 0;
  while (pos < relative.size()) {
    std::size_t end = relative.find('/', pos);
    if (end == std::string::npos) end = relative.size();
    path += "/" + relative.substr(pos, end - pos);
    pos = end + 1;
    if (::mkdir(path.c_str(), 0755) == 0) {
      made_.push_back(path);
    } else if (errno != EEXIST) {
      ADD_FAILURE() << "mkdir " << path << ": " << std::strerror(errno)
                    << " (the test needs root and a writable cgroup v2 hierarchy)";
      return "";
    }
  }
  return path;
}

Sleepers::~Sleepers() {
  for (const pid_t pid : pids_) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
}

pid_t Sleepers::start(const std::string& netns_path, const std::string& cgroup_dir) {
  const std::string procs_file = cgroup_dir + "/cgroup.procs";
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return 0;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    ::close(report[0]);
    ::close(report[1]);
    return 0;
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    ::close(report[0]);
    int failure[2] = {0, 0};  // {step, errno}
    if (!netns_path.empty()) {
      const int ns = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) failure[0] = 1;
    }
    if (failure[0] == 0) {
      const int procs = ::open(procs_file.c_str(), O_WRONLY | O_CLOEXEC);
      if (procs < 0 || ::write(procs, "0", 1) != 1) failure[0] = 2;
    }
    if (failure[0] == 0) {
      ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
      failure[0] = 3;
    }
    failure[1] = errno;
    [[maybe_unused]] const ssize_t ignored = ::write(report[1], failure, sizeof failure);
    ::_exit(127);
  }
  ::close(report[1]);
  int failure[2] = {0, 0};
  const ssize_t n = ::read(report[0], failure, sizeof failure);
  ::close(report[0]);
  if (n != 0) {
    ::waitpid(pid, nullptr, 0);
    const std::string step = failure[0] == 1   ? "setns into " + netns_path
                             : failure[0] == 2 ? "join the cgroup through " + procs_file
                                               : std::string("exec /bin/sleep");
    ADD_FAILURE() << "child could not " << step << ": " << std::strerror(failure[1]);
    return 0;
  }
  pids_.push_back(pid);
  return pid;
}

std::string cgroup_file_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string systemd_container_cgroup(const std::string& root, const std::string& pod_uid,
                                     const std::string& container_id) {
  return root + "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemd_escaped(pod_uid) +
         ".slice/cri-containerd-" + container_id + ".scope";
}

std::string cgroupfs_container_cgroup(const std::string& root, const std::string& pod_uid,
                                      const std::string& container_id) {
  return root + "/kubepods/burstable/pod" + pod_uid + "/" + container_id;
}

}  // namespace pwru::testing
