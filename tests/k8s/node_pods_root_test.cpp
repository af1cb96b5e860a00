// Pod identity end to end, as root: the fake API server lists and watches
// pods whose processes the test places in real network namespaces and in
// real cgroups named as the kubelet names them (systemd and cgroupfs
// drivers). The metrics collector must label their series with namespace
// and pod, and drop the series of a pod deleted through the watch once its
// grace is over.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "eventually.h"
#include "fake_apiserver.h"
#include "fake_counter_source.h"
#include "k8s/node_pods.h"
#include "metrics/skb_counter_collector.h"
#include "netns_fixture.h"
#include "pod_processes.h"

namespace pwru {
namespace {

using Labels = std::map<std::string, std::string>;

using testing::eventually;

// The drop series of one scrape, keyed by label set.
std::map<Labels, double> drop_series(const SkbCounterCollector& collector) {
  std::map<Labels, double> out;
  for (const auto& family : collector.Collect()) {
    if (family.name != "pwru_skb_drops_total") continue;
    for (const auto& metric : family.metric) {
      Labels labels;
      for (const auto& label : metric.label) labels[label.name] = label.value;
      out[labels] = metric.counter.value;
    }
  }
  return out;
}

Labels pod_drop(const std::string& ns, const std::string& pod) {
  return {{"function", "0x1"}, {"reason", "2"}, {"namespace", ns}, {"pod", pod}, {"netns", ""}};
}

TEST(NodePodsRoot, RealProcessesAreLabelledWithTheirPodsAndADeletedPodLosesItsSeries) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root (netns, cgroups, ptrace access to /proc/PID/ns/net)";
  const std::string mount = testing::cgroup2_mount_point();
  ASSERT_FALSE(mount.empty()) << "no cgroup2 hierarchy in /proc/self/mountinfo; mount one "
                                 "(mount -t cgroup2 none /sys/fs/cgroup/unified) to run this test";

  testing::FakeApiServer api;
  ASSERT_TRUE(api.start());
  testing::NetnsPair net(11);
  std::mt19937_64 rng(std::random_device{}());
  const std::string uid_web = testing::random_pod_uid(rng);  // systemd driver, netns A
  const std::string uid_db = testing::random_pod_uid(rng);   // cgroupfs driver, netns B
  const std::string root = "pwrutest-" + std::to_string(::getpid());
  testing::CgroupDirs cgroups;
  const std::string web_cgroup =
      cgroups.make(mount, testing::systemd_container_cgroup(root, uid_web, testing::random_hex(rng, 64)));
  const std::string db_cgroup =
      cgroups.make(mount, testing::cgroupfs_container_cgroup(root, uid_db, testing::random_hex(rng, 64)));
  ASSERT_FALSE(::testing::Test::HasFailure());
  testing::Sleepers sleepers;
  sleepers.start(net.path_a(), web_cgroup);
  sleepers.start(net.path_b(), db_cgroup);
  ASSERT_FALSE(::testing::Test::HasFailure());
  api.add_pod(uid_web, "shop", "web-0");
  api.add_pod(uid_db, "shop", "db-0");
  api.add_pod(testing::random_pod_uid(rng), "shop", "web-9", "n2");  // another node's

  NodePods pods(api.config(), "/proc", PodResolverTimes{std::chrono::seconds(1), std::chrono::seconds(2)});
  pods.start();
  auto source = std::make_shared<testing::FakeCounterSource>();
  CounterSnapshot counts;
  counts.drops = {{net.inode_a, 2, 1, 5, 500}, {net.inode_b, 2, 1, 7, 700}};
  source->set(counts);
  SkbCounterCollector collector(
      source, pods.resolver(), [](std::uint64_t) { return std::string(); }, {}, {}, SkbCounterCollectorConfig{});

  std::vector<std::uint32_t> gone;
  const auto refresh = [&] {
    for (std::uint32_t netns : pods.refresh()) gone.push_back(netns);
  };
  std::map<Labels, double> series;
  ASSERT_TRUE(eventually([&] {
    refresh();
    series = drop_series(collector);
    return series.count(pod_drop("shop", "web-0")) && series.count(pod_drop("shop", "db-0"));
  })) << "status: synced "
      << pods.status().synced << ", last API error '" << pods.status().watch.last_error
      << "'; series: " << series.size();
  EXPECT_EQ(series.at(pod_drop("shop", "web-0")), 5);
  EXPECT_EQ(series.at(pod_drop("shop", "db-0")), 7);
  EXPECT_EQ(series.size(), 2u) << "no unlabelled leftovers of the two netns";
  EXPECT_EQ(pods.status().pods, 2u);

  const PodNetns db = pods.netns_of_pod("shop", "db-0");
  EXPECT_EQ(db.error, "");
  EXPECT_EQ(db.netns, net.inode_b);
  EXPECT_NE(pods.netns_of_pod("shop", "web-9").error, "") << "another node's pod";

  // Deleted through the watch: labelled through the grace, then gone.
  api.delete_pod(uid_web);
  ASSERT_TRUE(eventually([&] { return pods.status().pods == 1; }));
  refresh();
  EXPECT_EQ(drop_series(collector).count(pod_drop("shop", "web-0")), 1u) << "gone before its grace was over";
  ASSERT_TRUE(eventually([&] {
    refresh();
    return drop_series(collector).count(pod_drop("shop", "web-0")) == 0;
  })) << "the deleted pod's series never went";
  series = drop_series(collector);
  EXPECT_EQ(series.size(), 1u);
  EXPECT_EQ(series.count(pod_drop("shop", "db-0")), 1u);
  EXPECT_EQ(gone, std::vector<std::uint32_t>{net.inode_a});
  pods.stop();
}

}  // namespace
}  // namespace pwru
