// ProcScanner over a made-up /proc in a temporary directory. Netns inodes
// come from a table (stat() of a made-up file cannot return a chosen inode),
// except in the test of the default stat() lookup.
#include "k8s/proc_scan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "common/error.h"

namespace pwru {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr std::uint32_t kHostNetns = 4026531840;
constexpr std::uint32_t kNetnsA = 4026532301;
constexpr std::uint32_t kNetnsB = 4026532402;

constexpr const char* kUidA = "a5c1f8d5-1919-434d-add7-4afaafdaef89";
constexpr const char* kUidB = "4eede96e-e976-4573-bc90-68dfe2516d3b";
constexpr const char* kUidC = "9692aa0e-748e-11e8-8dfa-76d458035df6";

// The cgroup file of a container process of pod kUidA (systemd driver, CRI-O).
std::string cgroup_of_a(
    const std::string& scope = "crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c") {
  return "0::/kubepods.slice/kubepods-burstable.slice/"
         "kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/" +
         scope + ".scope\n";
}
const std::string kConmonOfA =
    cgroup_of_a("crio-conmon-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c");
// Pod kUidB on cgroup v1 with the cgroupfs driver: every controller's line
// names the pod, after a few that do not (named hierarchies, rdma).
const std::string kCgroupOfB =
    "13:rdma:/\n"
    "12:name=systemd:/\n"
    "11:memory:/kubepods/besteffort/pod4eede96e-e976-4573-bc90-68dfe2516d3b/"
    "c3cd4e0a7993a1c155cc1bdd3326c7b1e260226d0c2c79e3e48dbc360543c768\n"
    "10:pids:/kubepods/besteffort/pod4eede96e-e976-4573-bc90-68dfe2516d3b/"
    "c3cd4e0a7993a1c155cc1bdd3326c7b1e260226d0c2c79e3e48dbc360543c768\n";
const std::string kCgroupOfC =
    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9692aa0e_748e_11e8_8dfa_76d458035df6.slice/"
    "docker-abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152.scope\n";

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

class FakeProc {
 public:
  FakeProc() {
    std::string pattern = (fs::temp_directory_path() / "pwru-proc-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw SystemError("mkdtemp " + pattern, errno);
    root_ = pattern;
  }
  ~FakeProc() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  FakeProc(const FakeProc&) = delete;
  FakeProc& operator=(const FakeProc&) = delete;

  const std::string& root() const { return root_; }
  std::string netns_path(int pid) const { return root_ + "/" + std::to_string(pid) + "/ns/net"; }

  // A process whose netns the lookup table answers with `netns` (0: leave
  // the table alone, the lookup then reports ENOENT as for a vanished one).
  void add(int pid, const std::string& cgroup, std::uint32_t netns, const std::string& comm = "app") {
    const fs::path dir = fs::path(root_) / std::to_string(pid);
    write_file(dir / "cgroup", cgroup);
    write_file(dir / "comm", comm + "\n");
    if (netns != 0) answers[netns_path(pid)] = {netns, 0};
  }
  // A /proc/PID directory whose files are gone: the process exited mid-scan.
  void add_emptied(int pid) { fs::create_directories(fs::path(root_) / std::to_string(pid)); }
  void fail_lookup(int pid, int err) { answers[netns_path(pid)] = {0, err}; }
  // PID 1 of the host in kHostNetns, the scanner's own netns is kHostNetns.
  void add_host_init() {
    add(1, "0::/init.scope\n", kHostNetns, "systemd");
    answers["/proc/self/ns/net"] = {kHostNetns, 0};
  }

  ProcScanner scanner() const {
    return ProcScanner(root_, [this](const std::string& path) -> NetnsInode {
      const auto found = answers.find(path);
      if (found == answers.end()) return {0, ENOENT};
      return found->second;
    });
  }

  std::map<std::string, NetnsInode> answers;

 private:
  std::string root_;
};

TEST(ProcScan, MapsPodsToTheirNetnsAndHostNetworkPodsApart) {
  FakeProc proc;
  proc.add_host_init();
  proc.add(2, "0::/\n", 0, "kthreadd");  // kernel thread: no pod, never looked up
  proc.add(50, "0::/system.slice/containerd.service\n", kHostNetns, "containerd");
  proc.add(51, "0::/user.slice/user-1000.slice/session-2.scope\n", kHostNetns, "bash");
  proc.add(100, cgroup_of_a("crio-0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0"), kNetnsA, "pause");
  proc.add(101, cgroup_of_a(), kNetnsA, "nginx");
  proc.add(102, cgroup_of_a(), kNetnsA, "nginx");
  proc.add(200, kCgroupOfB, kNetnsB, "redis-server");
  proc.add(300, kCgroupOfC, kHostNetns, "kube-proxy");
  // Entries of /proc that are no process.
  fs::create_directories(fs::path(proc.root()) / "self");
  fs::create_directories(fs::path(proc.root()) / "sys");
  fs::create_directories(fs::path(proc.root()) / "12ab");
  write_file(fs::path(proc.root()) / "77", "a numeric file, not a process\n");

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.host_netns, kHostNetns);
  EXPECT_EQ(result.host_netns_source, HostNetnsSource::kPid1);
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, kNetnsA}, {kUidB, kNetnsB}}));
  EXPECT_EQ(result.host_network_pods, std::set<std::string>{kUidC});
  EXPECT_EQ(result.processes_scanned, 9u);
  EXPECT_EQ(result.pod_processes, 5u);
  EXPECT_EQ(result.processes_vanished, 0u);
  EXPECT_EQ(result.processes_denied, 0u);
  EXPECT_EQ(result.processes_unreadable, 0u);
  EXPECT_EQ(result.runtime_monitors_skipped, 0u);
  EXPECT_EQ(result.pods_in_several_netns, 0u);
}

TEST(ProcScan, VanishedAndDeniedProcessesAreCountedAndSkipped) {
  FakeProc proc;
  proc.add_host_init();
  proc.add_emptied(400);            // cgroup file gone: ENOENT
  proc.add(401, cgroup_of_a(), 0);  // ns/net gone after the cgroup was read
  proc.add(402, cgroup_of_a(), 0);
  proc.fail_lookup(402, ESRCH);
  proc.add(403, cgroup_of_a(), 0);
  proc.fail_lookup(403, EACCES);  // no ptrace access
  proc.add(404, cgroup_of_a(), 0);
  proc.fail_lookup(404, EPERM);
  proc.add(405, cgroup_of_a(), 0);
  proc.fail_lookup(405, EIO);
  proc.add(406, kCgroupOfB, kNetnsB);

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidB, kNetnsB}}));
  EXPECT_TRUE(result.host_network_pods.empty());
  EXPECT_EQ(result.processes_scanned, 8u);
  EXPECT_EQ(result.processes_vanished, 3u);
  EXPECT_EQ(result.processes_denied, 2u);
  EXPECT_EQ(result.processes_unreadable, 1u);
  EXPECT_EQ(result.pod_processes, 1u);
}

TEST(ProcScan, FallsBackToItsOwnNetnsWhenInitsIsUnreadable) {
  FakeProc proc;
  proc.add(1, "0::/init.scope\n", 0, "systemd");
  proc.fail_lookup(1, EACCES);
  proc.answers["/proc/self/ns/net"] = {kHostNetns, 0};
  proc.add(300, kCgroupOfC, kHostNetns);
  proc.add(101, cgroup_of_a(), kNetnsA);

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.host_netns, kHostNetns);
  EXPECT_EQ(result.host_netns_source, HostNetnsSource::kSelf);
  EXPECT_EQ(result.host_network_pods, std::set<std::string>{kUidC});
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, kNetnsA}}));
}

TEST(ProcScan, WithoutAnyHostNetnsNoPodIsHostNetwork) {
  FakeProc proc;
  proc.add(300, kCgroupOfC, kHostNetns);
  proc.add(101, cgroup_of_a(), kNetnsA);

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.host_netns, 0u);
  EXPECT_EQ(result.host_netns_source, HostNetnsSource::kUnknown);
  EXPECT_TRUE(result.host_network_pods.empty());
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, kNetnsA}, {kUidC, kHostNetns}}));
}

TEST(ProcScan, ConmonDoesNotPullItsPodIntoTheHostNetns) {
  FakeProc proc;
  proc.add_host_init();
  proc.add(500, kConmonOfA, kHostNetns, "conmon");
  proc.add(501, kConmonOfA, kHostNetns, "conmon");
  proc.add(502, cgroup_of_a(), kNetnsA);

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, kNetnsA}}));
  EXPECT_TRUE(result.host_network_pods.empty());
  EXPECT_EQ(result.runtime_monitors_skipped, 2u);
  EXPECT_EQ(result.pods_in_several_netns, 0u);
  EXPECT_EQ(result.pod_processes, 1u);
}

TEST(ProcScan, ThePauseProcessDecidesAPodFoundInSeveralNetns) {
  FakeProc proc;
  proc.add_host_init();
  proc.add(600, cgroup_of_a(), kNetnsA, "pause");
  // A container that made its own netns (ip netns, a nested runtime).
  proc.add(601, cgroup_of_a(), kNetnsB);
  proc.add(602, cgroup_of_a(), kNetnsB);
  proc.add(603, cgroup_of_a(), kNetnsB);

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, kNetnsA}}));
  EXPECT_EQ(result.pods_in_several_netns, 1u);
  EXPECT_EQ(result.pod_processes, 4u);
}

TEST(ProcScan, WithoutPauseTheMostProcessesDecide) {
  FakeProc proc;
  proc.add_host_init();
  proc.add(601, cgroup_of_a(), kNetnsA);
  proc.add(602, cgroup_of_a(), kNetnsB);
  proc.add(603, cgroup_of_a(), kNetnsB);

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, kNetnsB}}));
  EXPECT_EQ(result.pods_in_several_netns, 1u);
}

TEST(ProcScan, TiesGoToThePodsOwnNetnsThenTheLowestInode) {
  FakeProc proc;
  proc.add_host_init();
  proc.add(701, cgroup_of_a(), kHostNetns);  // a runtime helper left in the pod's cgroup
  proc.add(702, cgroup_of_a(), kNetnsB);
  proc.add(801, kCgroupOfB, kNetnsB);
  proc.add(802, kCgroupOfB, kNetnsA);

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, kNetnsB}, {kUidB, kNetnsA}}));
  EXPECT_TRUE(result.host_network_pods.empty());
  EXPECT_EQ(result.pods_in_several_netns, 2u);
}

TEST(ProcScan, OnlyCompleteLinesOfAnOverlongCgroupFileCount) {
  FakeProc proc;
  proc.add_host_init();
  // The pod's line first, then more than the scanner reads.
  proc.add(900, cgroup_of_a() + std::string(20000, 'x') + "\n", kNetnsA);
  // The pod's line only beyond the cut.
  proc.add(901, std::string(20000, 'x') + "\n" + kCgroupOfB, kNetnsB);

  const ProcScanResult result = proc.scanner().scan();
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, kNetnsA}}));
}

std::uint32_t inode_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<std::uint32_t>(st.st_ino);
}

// Without a lookup table: ns/net are symlinks to files standing in for
// namespaces, so stat() follows them as it follows /proc's magic links.
TEST(ProcScan, DefaultLookupStatsNsNet) {
  FakeProc proc;
  const fs::path root = proc.root();
  write_file(root / "netns" / "host", "");
  write_file(root / "netns" / "a", "");
  auto process = [&](int pid, const std::string& cgroup, const std::string& netns) {
    const fs::path dir = root / std::to_string(pid);
    write_file(dir / "cgroup", cgroup);
    fs::create_directories(dir / "ns");
    fs::create_symlink("../../netns/" + netns, dir / "ns" / "net");
  };
  process(1, "0::/init.scope\n", "host");
  process(101, cgroup_of_a(), "a");
  process(300, kCgroupOfC, "host");
  process(200, kCgroupOfB, "gone");  // dangling: the netns went with the process

  const ProcScanResult result = ProcScanner(proc.root()).scan();
  EXPECT_EQ(result.host_netns, inode_of(root / "netns" / "host"));
  EXPECT_EQ(result.host_netns_source, HostNetnsSource::kPid1);
  EXPECT_EQ(result.pod_netns, (std::map<std::string, std::uint32_t>{{kUidA, inode_of(root / "netns" / "a")}}));
  EXPECT_EQ(result.host_network_pods, std::set<std::string>{kUidC});
  EXPECT_EQ(result.processes_vanished, 1u);
}

TEST(ProcScan, ScansTheRealProc) {
  const ProcScanResult result = ProcScanner().scan();
  EXPECT_GT(result.processes_scanned, 0u);
  EXPECT_NE(result.host_netns, 0u);  // at worst, the test's own netns
  EXPECT_NE(result.host_netns_source, HostNetnsSource::kUnknown);
  EXPECT_LE(result.pod_processes, result.processes_scanned);
}

TEST(ProcScan, AnUnlistableProcRootSaysWhatToDo) {
  try {
    ProcScanner("/nonexistent/pwru-proc").scan();
    FAIL() << "scan() of a missing directory returned";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/pwru-proc"));
    EXPECT_THAT(e.what(), HasSubstr("mount the host's /proc"));
  }
}

}  // namespace
}  // namespace pwru
