// ProcScanner on the real kernel: processes in real network namespaces,
// placed in real cgroup v2 directories named the way the kubelet names pods
// (systemd and cgroupfs drivers), found again through the real /proc.
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <string>

#include "k8s/proc_scan.h"
#include "netns_fixture.h"
#include "pod_processes.h"

namespace pwru {
namespace {

using testing::cgroup2_mount_point;
using testing::cgroup_file_of;
using testing::CgroupDirs;
using testing::inode_of;
using testing::random_hex;
using testing::random_pod_uid;
using testing::Sleepers;
using testing::systemd_escaped;

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
  const std::string systemd_container =
      cgroups.make(mount, pod_slice + "/cri-containerd-" + random_hex(rng, 64) + ".scope");
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

// pin_netns: the fd holds the pod's netns, taken only from a process of
// that pod, and the held netns's inode is never handed to a new netns.
TEST(ProcScanRoot, PinsAPodsNetnsAndOnlyFromThatPod) {
  ASSERT_EQ(::geteuid(), 0u) << "ProcScanRoot needs root (netns, cgroups, ptrace access to /proc/PID/ns/net)";
  const std::string mount = cgroup2_mount_point();
  ASSERT_FALSE(mount.empty()) << "no cgroup2 hierarchy in /proc/self/mountinfo";

  testing::NetnsPair net(11);
  std::mt19937_64 rng(std::random_device{}());
  const std::string uid = random_pod_uid(rng);
  const std::string other_uid = random_pod_uid(rng);
  const std::string root = "pwrutest-pin-" + std::to_string(::getpid());
  CgroupDirs cgroups;
  const std::string container =
      cgroups.make(mount, root + "/kubepods/besteffort/pod" + uid + "/" + random_hex(rng, 64));
  const std::string other_container =
      cgroups.make(mount, root + "/kubepods/besteffort/pod" + other_uid + "/" + random_hex(rng, 64));
  ASSERT_FALSE(::testing::Test::HasFailure());
  Sleepers sleepers;
  sleepers.start(net.path_a(), container);
  sleepers.start(net.path_b(), other_container);
  ASSERT_FALSE(::testing::Test::HasFailure());

  UniqueFd pinned = pin_netns("/proc", net.inode_a, uid);
  ASSERT_TRUE(pinned) << "no fd on pod " << uid << "'s netns " << net.inode_a;
  EXPECT_EQ(inode_of("/proc/self/fd/" + std::to_string(pinned.get())), net.inode_a);
  // The other pod's process lives in ns_b, not in the pod's netns: no fd.
  EXPECT_FALSE(pin_netns("/proc", net.inode_b, uid)) << "pinned a netns none of the pod's processes is in";
  EXPECT_FALSE(pin_netns("/proc", net.inode_a, other_uid)) << "pinned through another pod's process";
  // A node-level trace: any process in the netns will do.
  EXPECT_TRUE(pin_netns("/proc", net.inode_b));
  EXPECT_FALSE(pin_netns("/proc", 0, uid));
}

}  // namespace
}  // namespace pwru
