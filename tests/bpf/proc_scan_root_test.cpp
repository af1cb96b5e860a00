// ProcScanner on the real kernel: processes in real network namespaces,
// placed in real cgroup v2 directories named the way the kubelet names pods
// (systemd and cgroupfs drivers), found again through the real /proc.
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
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "k8s/proc_scan.h"
#include "netns_fixture.h"

namespace pwru {
namespace {

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
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) ADD_FAILURE() << "stat " << path << ": " << std::strerror(errno);
  return static_cast<std::uint32_t>(st.st_ino);
}

// Directories made under the cgroup v2 mount, removed leaf-first.
class CgroupDirs {
 public:
  CgroupDirs() = default;
  CgroupDirs(const CgroupDirs&) = delete;
  CgroupDirs& operator=(const CgroupDirs&) = delete;
  ~CgroupDirs() {
    for (auto dir = made_.rbegin(); dir != made_.rend(); ++dir) {
      // A killed process leaves its cgroup a moment after waitpid() on some
      // kernels: EBUSY until then.
      for (int attempt = 0; attempt < 100; ++attempt) {
        if (::rmdir(dir->c_str()) == 0 || errno != EBUSY) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }

  // mkdir -p below the mount; returns "" after a test failure naming the
  // refusal.
  std::string make(const std::string& mount, const std::string& relative) {
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

 private:
  std::vector<std::string> made_;
};

// `sleep 30`s started in a netns and a cgroup, killed and reaped at the end.
class Sleepers {
 public:
  Sleepers() = default;
  Sleepers(const Sleepers&) = delete;
  Sleepers& operator=(const Sleepers&) = delete;
  ~Sleepers() {
    for (const pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  // The child joins netns_path (none: stays in ours) and cgroup_dir before
  // exec, so the scan never sees it half-placed; returns its pid, or 0 after
  // a test failure naming the step the kernel refused.
  pid_t start(const std::string& netns_path, const std::string& cgroup_dir) {
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

 private:
  std::vector<pid_t> pids_;
};

std::string cgroup_file_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ProcScanRoot, FindsPodsOfBothCgroupDriversInTheirNetns) {
  ASSERT_EQ(::geteuid(), 0u) << "ProcScanRoot needs root (netns, cgroups, ptrace access to /proc/PID/ns/net)";
  const std::string mount = cgroup2_mount_point();
  ASSERT_FALSE(mount.empty()) << "no cgroup2 hierarchy in /proc/self/mountinfo; mount one "
                                 "(mount -t cgroup2 none /sys/fs/cgroup/unified) to run this test";

  testing::NetnsPair net(10);
  std::mt19937_64 rng(std::random_device{}());
  const std::string uid_systemd = random_pod_uid(rng);
  const std::string uid_cgroupfs = random_pod_uid(rng);
  const std::string uid_host_network = random_pod_uid(rng);
  const std::string root = "pwrutest-" + std::to_string(::getpid());

  CgroupDirs cgroups;
  const std::string pod_slice = root + "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                                systemd_escaped(uid_systemd) + ".slice";
  const std::string systemd_container = cgroups.make(mount, pod_slice + "/cri-containerd-" + random_hex(rng, 64) + ".scope");
  // CRI-O's monitor of a container of the same pod: in the pod's cgroup, in
  // the host's netns.
  const std::string conmon = cgroups.make(mount, pod_slice + "/crio-conmon-" + random_hex(rng, 64) + ".scope");
  const std::string cgroupfs_container =
      cgroups.make(mount, root + "/kubepods/burstable/pod" + uid_cgroupfs + "/" + random_hex(rng, 64));
  const std::string host_network_container =
      cgroups.make(mount, root + "/kubepods/besteffort/pod" + uid_host_network + "/" + random_hex(rng, 64));
  ASSERT_FALSE(::testing::Test::HasFailure());

  Sleepers sleepers;
  const pid_t in_systemd_pod = sleepers.start(net.path_a(), systemd_container);
  sleepers.start("", conmon);
  sleepers.start(net.path_b(), cgroupfs_container);
  sleepers.start("", host_network_container);
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_NE(cgroup_file_of(in_systemd_pod).find("0::/" + pod_slice + "/cri-containerd-"), std::string::npos)
      << "the kernel shows another cgroup for pid " << in_systemd_pod << ":\n"
      << cgroup_file_of(in_systemd_pod);

  const ProcScanResult result = ProcScanner().scan();
  const std::uint32_t own_netns = inode_of("/proc/self/ns/net");
  SCOPED_TRACE("host netns " + std::to_string(result.host_netns) + " from " +
               (result.host_netns_source == HostNetnsSource::kPid1 ? "PID 1" : "this process"));

  ASSERT_EQ(result.pod_netns.count(uid_systemd), 1u) << uid_systemd;
  EXPECT_EQ(result.pod_netns.at(uid_systemd), inode_of(net.path_a()));
  ASSERT_EQ(result.pod_netns.count(uid_cgroupfs), 1u) << uid_cgroupfs;
  EXPECT_EQ(result.pod_netns.at(uid_cgroupfs), inode_of(net.path_b()));
  EXPECT_EQ(result.host_network_pods.count(uid_systemd), 0u) << "conmon pulled its pod into the host netns";
  EXPECT_GE(result.runtime_monitors_skipped, 1u);
  if (result.host_netns == own_netns) {
    EXPECT_EQ(result.host_network_pods.count(uid_host_network), 1u) << uid_host_network;
    EXPECT_EQ(result.pod_netns.count(uid_host_network), 0u);
  } else {
    // PID 1 lives elsewhere (the test runs in a container's netns): to the
    // scanner this pod then has a netns of its own, ours.
    ASSERT_EQ(result.pod_netns.count(uid_host_network), 1u);
    EXPECT_EQ(result.pod_netns.at(uid_host_network), own_netns);
  }
}

}  // namespace
}  // namespace pwru
