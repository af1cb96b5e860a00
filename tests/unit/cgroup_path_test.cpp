// Cgroup paths as kubelets, runtimes and distributions really write them.
// Each row names where the path was seen: /proc/PID/cgroup output, systemd
// unit listings and error messages quoted in public issues and test
// fixtures. Rows marked "shape" follow a documented naming rule with made-up
// ids where no verbatim sample was at hand.
#include "k8s/cgroup_path.h"

#include <gtest/gtest.h>

#include <string>

namespace pwru {
namespace {

struct PodRow {
  const char* seen_in;
  const char* line;
  const char* pod_uid;
  const char* container_id;
  const char* qos;
  bool runtime_monitor = false;
};

const PodRow kPodRows[] = {
    {"opencontainers/runc#4620: /proc/PID/cgroup, CRI-O, systemd driver, cgroup v1",
     "13:freezer:/kubepods.slice/kubepods-burstable.slice/"
     "kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/"
     "crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
     "a5c1f8d5-1919-434d-add7-4afaafdaef89", "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c",
     "burstable"},
    {"opencontainers/runc#4620: systemctl status of CRI-O's conmon scope",
     "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod207aaad1_659f_4db8_88e0_46e0cdcc3004.slice/"
     "crio-conmon-32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b6224a6.scope",
     "207aaad1-659f-4db8-88e0-46e0cdcc3004", "32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b6224a6",
     "burstable", true},
    {"netdata/netdata#4868: cgroup v1 tree, containerd, besteffort",
     "4:net_cls,net_prio:/kubepods.slice/kubepods-besteffort.slice/"
     "kubepods-besteffort-pode1465238_4518_4c21_832f_fd9f87033dad.slice/"
     "cri-containerd-66be9b2efdf4d85288c319b8c1a2f50d2439b5617e36f45d9d0d0be1381113be.scope",
     "e1465238-4518-4c21-832f-fd9f87033dad", "66be9b2efdf4d85288c319b8c1a2f50d2439b5617e36f45d9d0d0be1381113be",
     "besteffort"},
    {"netdata/netdata#4868: a static pod, named by the kubelet's md5 of its manifest",
     "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice/"
     "cri-containerd-2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5.scope",
     "8daa50c3a64c9ff60bb9eab7b44b56fd", "2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5",
     "burstable"},
    {"containers/crun#1794: guaranteed pod, directly under kubepods.slice",
     "0::/kubepods.slice/kubepods-poda42d5875_23e6_41e2_86e1_e3c11d3f466b.slice/"
     "crio-11271ae07aa52bd47ef2e5f5ee4efe373f8819f7ec0fbe4d146de2344427486a.scope",
     "a42d5875-23e6-41e2-86e1-e3c11d3f466b", "11271ae07aa52bd47ef2e5f5ee4efe373f8819f7ec0fbe4d146de2344427486a",
     "guaranteed"},
    {"lxc/lxc#3890: /proc/self/cgroup, dockershim, systemd driver",
     "11:freezer:/kubepods.slice/kubepods-burstable.slice/"
     "kubepods-burstable-pod7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice/"
     "docker-d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope",
     "7d4424e6-bb13-42f4-a47a-45a4828bf54d", "d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98",
     "burstable"},
    {"kontena/pharos-cluster#440: systemd-cgls, the pause container of a v1-UUID pod",
     "1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/"
     "kubepods-besteffort-pod9692aa0e_748e_11e8_8dfa_76d458035df6.slice/"
     "docker-f58c1c55e72c336d11c6af795260b57f7597d62e4d16951086f754d2e9ce5114.scope",
     "9692aa0e-748e-11e8-8dfa-76d458035df6", "f58c1c55e72c336d11c6af795260b57f7597d62e4d16951086f754d2e9ce5114",
     "besteffort"},
    {"peass-ng/PEASS-ng#124: /proc/self/cgroup in a pod, cgroupfs driver",
     "11:memory:/kubepods/besteffort/pod4eede96e-e976-4573-bc90-68dfe2516d3b/"
     "c3cd4e0a7993a1c155cc1bdd3326c7b1e260226d0c2c79e3e48dbc360543c768",
     "4eede96e-e976-4573-bc90-68dfe2516d3b", "c3cd4e0a7993a1c155cc1bdd3326c7b1e260226d0c2c79e3e48dbc360543c768",
     "besteffort"},
    {"a container-id parser's fixture: cgroupfs, burstable, blkio line",
     "11:blkio:/kubepods/burstable/podf6adb0af-0855-4bab-b25b-c853f18d0ce2/"
     "35b97177dada20362ab90d90ac63cd54e8a41cf87bea34f270631b6da17f4a93",
     "f6adb0af-0855-4bab-b25b-c853f18d0ce2", "35b97177dada20362ab90d90ac63cd54e8a41cf87bea34f270631b6da17f4a93",
     "burstable"},
    {"google/cadvisor#2540: pod-level cgroup, no container below it in the path",
     "/kubepods/burstable/pod1ff47ee6-9685-4726-ac6f-0ff070c452d6", "1ff47ee6-9685-4726-ac6f-0ff070c452d6", "",
     "burstable"},
    {"coreos/bugs#2646: a kind node's kubelet inside a guaranteed pod (the outer pod wins)",
     "/kubepods/podfb87cd2a-bc2d-46ac-b5c0-e1673b21a438/"
     "cce19d47d2587cc2c3996a0d1042d70ef25434abe454edd5a269e98edaae670d/system.slice/kubelet.service",
     "fb87cd2a-bc2d-46ac-b5c0-e1673b21a438", "cce19d47d2587cc2c3996a0d1042d70ef25434abe454edd5a269e98edaae670d",
     "guaranteed"},
    {"kubernetes/minikube#11280: minikube's docker driver with CRI-O, node container in /docker",
     "0::/docker/d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22/kubepods.slice/"
     "kubepods-besteffort.slice/kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/"
     "crio-0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0.scope",
     "2ca4a155-3599-498d-bb9d-4446693fa3ea", "0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0",
     "besteffort"},
    {"a kind user's cgroup v2 line: kind's kubelet-root slices, node container in /docker",
     "0::/docker/65a1b6ad09655b3f1475ede1aa0061a97c0d1ada9f2b2acac959afbc92094463/kubelet.slice/kubelet-kubepods.slice/"
     "kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod96dd7de3_0783_4613_a707_e0effc077ef5.slice/"
     "cri-containerd-13a0f64b909e3ff2d63f196d6947927a8af997ab68f8fa9ebb6d6c7018af4ec9.scope",
     "96dd7de3-0783-4613-a707-e0effc077ef5", "13a0f64b909e3ff2d63f196d6947927a8af997ab68f8fa9ebb6d6c7018af4ec9",
     "besteffort"},
    {"a kind node seen from a systemd host: docker's scope, then kind's slices",
     "0::/system.slice/docker-3350ade4226f0adcd9e4e9545d7c2a16a5aa362d12315f2a88e2024cea1246cf.scope/kubelet.slice/"
     "kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     "kubelet-kubepods-besteffort-podb6a16766_05ee_446a_8ee5_ff96a817f47c.slice/"
     "cri-containerd-679f3691f7f1b20198548be43b86f265f9fff9be0ac4c973638f5ee89decbca9.scope",
     "b6a16766-05ee-446a-8ee5-ff96a817f47c", "679f3691f7f1b20198548be43b86f265f9fff9be0ac4c973638f5ee89decbca9",
     "besteffort"},
    {"containerd/containerd#5226: runc on cgroupfs took containerd's systemd name literally",
     "4:memory:/system.slice/containerd.service/kubepods-burstable-pod7a875b5c_4d3c_4345_ac0f_5c847d8d7129.slice:"
     "cri-containerd:ee05f876e981d258209f91f25f139f7abc13a0246a5f343298572602fea8c7bb",
     "7a875b5c-4d3c-4345-ac0f-5c847d8d7129", "ee05f876e981d258209f91f25f139f7abc13a0246a5f343298572602fea8c7bb",
     "burstable"},
    {"shape (cri-o/cri-o#9251): crun's \"container\" sub-cgroup below the scope",
     "0::/kubepods.slice/kubepods-poda42d5875_23e6_41e2_86e1_e3c11d3f466b.slice/"
     "crio-11271ae07aa52bd47ef2e5f5ee4efe373f8819f7ec0fbe4d146de2344427486a.scope/container",
     "a42d5875-23e6-41e2-86e1-e3c11d3f466b", "11271ae07aa52bd47ef2e5f5ee4efe373f8819f7ec0fbe4d146de2344427486a",
     "guaranteed"},
    {"shape (cri-o/cri-o#812): CRI-O's cgroupfs naming, crio-<id> without .scope",
     "0::/kubepods/besteffort/pod2cde702b-a0cf-438d-a228-fb164e54434b/"
     "crio-0765f197c9158576f202e50498b488cd0d2b022fb2462b0a629f214bb51cd57d",
     "2cde702b-a0cf-438d-a228-fb164e54434b", "0765f197c9158576f202e50498b488cd0d2b022fb2462b0a629f214bb51cd57d",
     "besteffort"},
    {"shape: k3d (k3s in docker, cgroupfs driver)",
     "0::/docker/8d1f3c09b4d2e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0/kubepods/burstable/"
     "pod0b0e005c-39ec-4719-bbfe-78aadbc3e4ad/f3ee04629f75567e95fae8425cb3e9b3e1c91346a1b2c3d4e5f6a7b8c9d0e1f2",
     "0b0e005c-39ec-4719-bbfe-78aadbc3e4ad", "f3ee04629f75567e95fae8425cb3e9b3e1c91346a1b2c3d4e5f6a7b8c9d0e1f2",
     "burstable"},
    {"shape (kernel's proc_cgroup_show): a cgroup v2 path removed under a dying process",
     "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pode1465238_4518_4c21_832f_fd9f87033dad.slice/"
     "cri-containerd-66be9b2efdf4d85288c319b8c1a2f50d2439b5617e36f45d9d0d0be1381113be.scope (deleted)",
     "e1465238-4518-4c21-832f-fd9f87033dad", "66be9b2efdf4d85288c319b8c1a2f50d2439b5617e36f45d9d0d0be1381113be",
     "besteffort"},
};

TEST(CgroupPath, RealWorldPodPaths) {
  for (const PodRow& row : kPodRows) {
    SCOPED_TRACE(std::string(row.seen_in) + "\n  " + row.line);
    const std::optional<PodContainer> parsed = parse_kubepods_cgroup(row.line);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->pod_uid, row.pod_uid);
    EXPECT_EQ(parsed->container_id, row.container_id);
    EXPECT_EQ(parsed->qos, row.qos);
    EXPECT_EQ(parsed->runtime_monitor, row.runtime_monitor);
  }
}

struct NotPodRow {
  const char* why;
  const char* line;
};

const NotPodRow kNotPodRows[] = {
    {"a system service", "0::/system.slice/containerd.service"},
    {"a user session", "0::/user.slice/user-1000.slice/session-2.scope"},
    {"the root cgroup (kernel threads, init in a container)", "0::/"},
    {"systemd's own scope", "0::/init.scope"},
    {"the kubelet's QoS-level slice holds pods, it is none", "0::/kubepods.slice/kubepods-burstable.slice"},
    {"the kubelet's top-level cgroupfs directory", "12:memory:/kubepods"},
    {"a QoS-level cgroupfs directory", "12:memory:/kubepods/besteffort"},
    {"kubernetes/kubernetes#36807: pre-1.6 kubelet QoS slices had no kubepods parent",
     "11:memory:/system.slice/docker.service/BestEffort.slice/BestEffort-pod0d33f94b_ab1a_11e6_9e1a_68f7281d8004.slice/"
     "0c34bcd7d02f321d0df7aa6ea703285b02abebc9096c5128c14091fc43ea1f3b"},
    {"rootless kubelet (KubeletInUserNamespace): containers but no pod cgroups",
     "0::/user.slice/user-1001.slice/user@1001.service/user.slice/"
     "cri-containerd-6938564e754ad86269a536ed19172af0eff5f7ff0a41eefc5b433a76f1f38f16.scope"},
    {"a plain docker container on a systemd host",
     "10:devices:/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.scope"},
    {"shape: a podman pod, pod-like but no kubelet",
     "0::/machine.slice/machine-libpod_pod_3c1f0e7a2b4d.slice/"
     "libpod-2f4a3c1b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a.scope"},
    {"a pod<uid> directory outside kubepods",
     "0::/machine.slice/pod4eede96e-e976-4573-bc90-68dfe2516d3b/"
     "c3cd4e0a7993a1c155cc1bdd3326c7b1e260226d0c2c79e3e48dbc3"},
    {"an empty line", ""},
    {"a v1 line without a path", "12:memory"},
    {"a hierarchy id that is not a number", "memory:/kubepods/besteffort/pod4eede96e-e976-4573-bc90-68dfe2516d3b/c3"},
    {"a relative path", "0::kubepods/besteffort/pod4eede96e-e976-4573-bc90-68dfe2516d3b/c3"},
};

TEST(CgroupPath, NonPodPathsGiveNothing) {
  for (const NotPodRow& row : kNotPodRows) {
    EXPECT_FALSE(parse_kubepods_cgroup(row.line).has_value()) << row.why << "\n  " << row.line;
  }
}

TEST(CgroupPath, MalformedUidsAreRejected) {
  const char* const lines[] = {
      // 35 characters: one hex digit short
      "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef8.slice/"
      "crio-5eed9175.scope",
      // 'g' is no hex digit
      "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podg5c1f8d5_1919_434d_add7_4afaafdaef89.slice/"
      "crio-5eed9175.scope",
      // dashes in a systemd unit name would be slice separators
      "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5-1919-434d-add7-4afaafdaef89.slice/"
      "crio-5eed9175.scope",
      // underscores are the systemd driver's escaping, never cgroupfs's
      "0::/kubepods/burstable/poda5c1f8d5_1919_434d_add7_4afaafdaef89/5eed9175",
      // separators in the wrong places
      "0::/kubepods/burstable/poda5c1f8d51-919-434d-add7-4afaafdaef89/5eed9175",
      // mixed separators
      "0::/kubepods.slice/kubepods-poda5c1f8d5_1919_434d-add7_4afaafdaef89.slice/crio-5eed9175.scope",
      // no UID at all
      "0::/kubepods/burstable/pod/5eed9175",
      "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod.slice/crio-5eed9175.scope",
      // 33 hex: neither a UUID nor an md5
      "0::/kubepods/pod8daa50c3a64c9ff60bb9eab7b44b56fd0/5eed9175",
      // an unknown QoS class between kubepods and the pod
      "0::/kubepods.slice/kubepods-critical.slice/kubepods-critical-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/"
      "crio-5eed9175.scope",
      "0::/kubepods/critical/poda5c1f8d5-1919-434d-add7-4afaafdaef89/5eed9175",
  };
  for (const char* line : lines) EXPECT_FALSE(parse_kubepods_cgroup(line).has_value()) << line;
}

TEST(CgroupPath, LineAndBarePathAgree) {
  const std::string path =
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/"
      "cri-containerd-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope";
  for (const std::string& text : {path, "0::" + path, "5:cpu,cpuacct:" + path, "1:name=systemd:" + path + "\n"}) {
    const std::optional<PodContainer> parsed = parse_kubepods_cgroup(text);
    ASSERT_TRUE(parsed.has_value()) << text;
    EXPECT_EQ(parsed->pod_uid, "a5c1f8d5-1919-434d-add7-4afaafdaef89");
    EXPECT_EQ(parsed->container_id, "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c");
    EXPECT_EQ(parsed->qos, "burstable");
    EXPECT_FALSE(parsed->runtime_monitor);
  }
}

TEST(CgroupPath, UidsComeOutLowercaseWithDashes) {
  const std::optional<PodContainer> systemd =
      parse_kubepods_cgroup("0::/kubepods.slice/kubepods-podA42D5875_23E6_41E2_86E1_E3C11D3F466B.slice/x.scope");
  ASSERT_TRUE(systemd.has_value());
  EXPECT_EQ(systemd->pod_uid, "a42d5875-23e6-41e2-86e1-e3c11d3f466b");
  EXPECT_EQ(systemd->container_id, "x");
  const std::optional<PodContainer> static_pod = parse_kubepods_cgroup("/kubepods/pod8DAA50C3A64C9FF60BB9EAB7B44B56FD");
  ASSERT_TRUE(static_pod.has_value());
  EXPECT_EQ(static_pod->pod_uid, "8daa50c3a64c9ff60bb9eab7b44b56fd");
  EXPECT_EQ(static_pod->container_id, "");
}

TEST(CgroupPath, ConmonWithCgroupfsIsAMonitorToo) {
  const std::optional<PodContainer> parsed = parse_kubepods_cgroup(
      "0::/kubepods/burstable/poda5c1f8d5-1919-434d-add7-4afaafdaef89/"
      "crio-conmon-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_TRUE(parsed->runtime_monitor);
  EXPECT_EQ(parsed->container_id, "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c");
}

}  // namespace
}  // namespace pwru
