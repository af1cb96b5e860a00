// netns -> pod from the API's pods and a (fake) /proc scan: who is labelled,
// who is host traffic, when the scan is redone, and how a deleted pod's
// netns goes from labelled, through its grace period, to gone.
#include "k8s/pod_resolver.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace pwru {
namespace {

using Kind = PodIdentity::Kind;
using std::chrono::seconds;

constexpr std::uint32_t kHost = 4026531840u;
constexpr std::uint32_t kWebNetns = 4026532300u;

WatchEvent event(WatchEvent::Type type, PodInfo pod) {
  WatchEvent e;
  e.type = type;
  e.pod = std::move(pod);
  return e;
}

// A scan whose result the test edits between refreshes.
struct FakeScan {
  explicit FakeScan(std::map<std::string, std::uint32_t> pods, std::set<std::string> host_network_pods = {})
      : netns(std::move(pods)), host_network(std::move(host_network_pods)) {}
  std::map<std::string, std::uint32_t> netns;
  std::set<std::string> host_network;
  int scans = 0;
  bool fail = false;
  PodResolver::Scan fn() {
    return [this] {
      ++scans;
      if (fail) throw std::runtime_error("listing /proc: Permission denied");
      ProcScanResult r;
      r.host_netns = kHost;
      r.pod_netns = netns;
      r.host_network_pods = host_network;
      return r;
    };
  }
};

TEST(PodResolver, PodsOfThisNodeGetTheirLabelsHostNetworkAndStrangersDoNot) {
  PodCache cache;
  cache.replace({PodInfo{"u-web", "shop", "web-0", false}, PodInfo{"u-proxy", "kube-system", "kube-proxy", true}},
                "10");
  FakeScan scan({{"u-web", kWebNetns}, {"u-unknown", 4026532400u}}, {"u-proxy"});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(30), seconds(60)});
  EXPECT_EQ(resolver.resolve(kWebNetns).kind, Kind::kUnknown);  // nothing before the first refresh
  ASSERT_TRUE(resolver.refresh());
  const PodIdentity web = resolver.resolve(kWebNetns);
  EXPECT_EQ(web.kind, Kind::kPod);
  EXPECT_EQ(web.namespace_name, "shop");
  EXPECT_EQ(web.pod, "web-0");
  EXPECT_EQ(resolver.resolve(kHost).kind, Kind::kHost);  // host traffic, not kube-proxy
  EXPECT_EQ(resolver.resolve(kHost).pod, "");
  EXPECT_EQ(resolver.resolve(4026532400u).kind, Kind::kUnknown);  // a pod the API does not list here
  EXPECT_EQ(resolver.stats().pod_netns, 1u);
  EXPECT_EQ(scan.scans, 1);
}

TEST(PodResolver, RescansWhenPodsChangeOrTimePasses) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  FakeScan scan({{"u1", kWebNetns}});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(30), seconds(60)});
  const auto t0 = PodResolver::Clock::now();
  ASSERT_TRUE(resolver.refresh(t0));
  EXPECT_FALSE(resolver.refresh(t0 + seconds(1)));  // nothing changed
  EXPECT_EQ(scan.scans, 1);

  // A pod whose processes appear after its event is found by the periodic scan.
  cache.apply(event(WatchEvent::Type::kAdded, PodInfo{"u2", "shop", "web-1", false}));
  ASSERT_TRUE(resolver.refresh(t0 + seconds(3)));  // event: scanned, processes not there yet
  EXPECT_EQ(resolver.resolve(4026532500u).kind, Kind::kUnknown);
  scan.netns["u2"] = 4026532500u;
  EXPECT_FALSE(resolver.refresh(t0 + seconds(10)));
  ASSERT_TRUE(resolver.refresh(t0 + seconds(34)));
  EXPECT_EQ(resolver.resolve(4026532500u).pod, "web-1");
  EXPECT_EQ(scan.scans, 3);
}

TEST(PodResolver, ADeletedPodKeepsItsLabelsForTheGraceThenIsGoneOnce) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  FakeScan scan({{"u1", kWebNetns}});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(30), seconds(60)});
  const auto t0 = PodResolver::Clock::now();
  ASSERT_TRUE(resolver.refresh(t0));

  cache.apply(event(WatchEvent::Type::kDeleted, PodInfo{"u1", "shop", "web-0", false}));
  scan.netns.clear();
  ASSERT_TRUE(resolver.refresh(t0 + seconds(5)));
  EXPECT_EQ(resolver.resolve(kWebNetns).kind, Kind::kPod) << "labels must outlive the pod for the grace";
  EXPECT_EQ(resolver.resolve(kWebNetns).pod, "web-0");
  EXPECT_EQ(resolver.stats().departed_netns, 1u);
  EXPECT_TRUE(resolver.take_gone().empty());

  resolver.refresh(t0 + seconds(64));  // no scan due, but time moves on
  EXPECT_EQ(resolver.resolve(kWebNetns).pod, "web-0");
  resolver.refresh(t0 + seconds(66));
  EXPECT_EQ(resolver.resolve(kWebNetns).kind, Kind::kGone);
  EXPECT_EQ(resolver.take_gone(), std::vector<std::uint32_t>{kWebNetns});
  EXPECT_TRUE(resolver.take_gone().empty()) << "each gone netns is handed out once";

  // The kernel reuses the inode for a new pod's netns: labelled again.
  cache.apply(event(WatchEvent::Type::kAdded, PodInfo{"u9", "shop", "web-0", false}));
  scan.netns["u9"] = kWebNetns;
  ASSERT_TRUE(resolver.refresh(t0 + seconds(70)));
  EXPECT_EQ(resolver.resolve(kWebNetns).kind, Kind::kPod);
  EXPECT_EQ(resolver.stats().gone_netns, 0u);
}

TEST(PodResolver, ANetnsIsGoneOnlyIfAScanAfterItsGraceMissesItForANewPodMayHaveItsInode) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  FakeScan scan({{"u1", kWebNetns}});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(300), seconds(60)});
  const auto t0 = PodResolver::Clock::now();
  ASSERT_TRUE(resolver.refresh(t0));
  cache.apply(event(WatchEvent::Type::kDeleted, PodInfo{"u1", "shop", "web-0", false}));
  scan.netns.clear();
  ASSERT_TRUE(resolver.refresh(t0 + seconds(5)));
  // A new pod is listed (scanned: no process yet), then its sandbox gets the
  // destroyed netns's inode; no scan is due for minutes.
  cache.apply(event(WatchEvent::Type::kAdded, PodInfo{"u2", "shop", "web-1", false}));
  ASSERT_TRUE(resolver.refresh(t0 + seconds(30)));
  scan.netns["u2"] = kWebNetns;
  EXPECT_FALSE(resolver.refresh(t0 + seconds(40)));
  const int scans = scan.scans;
  // The grace ends: a scan first, which finds the inode taken.
  EXPECT_TRUE(resolver.refresh(t0 + seconds(66)));
  EXPECT_EQ(scan.scans, scans + 1);
  EXPECT_TRUE(resolver.take_gone().empty()) << "the new pod's counters would be erased";
  EXPECT_EQ(resolver.resolve(kWebNetns).pod, "web-1");
  EXPECT_EQ(resolver.stats().departed_netns, 0u);
}

TEST(PodResolver, AFailingScanAtTheEndOfAGraceIsRetriedAtTheRescanIntervalAndNothingIsGoneMeanwhile) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  FakeScan scan({{"u1", kWebNetns}});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(30), seconds(10)});
  const auto t0 = PodResolver::Clock::now();
  ASSERT_TRUE(resolver.refresh(t0));
  cache.apply(event(WatchEvent::Type::kDeleted, PodInfo{"u1", "shop", "web-0", false}));
  scan.netns.clear();
  ASSERT_TRUE(resolver.refresh(t0 + seconds(1)));
  scan.fail = true;
  EXPECT_FALSE(resolver.refresh(t0 + seconds(12)));  // grace over: tried, failed
  EXPECT_FALSE(resolver.refresh(t0 + seconds(13)));
  EXPECT_FALSE(resolver.refresh(t0 + seconds(20)));
  EXPECT_EQ(scan.scans, 3);
  EXPECT_TRUE(resolver.take_gone().empty());
  EXPECT_EQ(resolver.resolve(kWebNetns).pod, "web-0");
  scan.fail = false;
  EXPECT_TRUE(resolver.refresh(t0 + seconds(42)));
  EXPECT_EQ(resolver.take_gone(), std::vector<std::uint32_t>{kWebNetns});
}

TEST(PodResolver, APodSeenAgainWithinTheGraceIsNotGone) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  FakeScan scan({{"u1", kWebNetns}});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(10), seconds(60)});
  const auto t0 = PodResolver::Clock::now();
  ASSERT_TRUE(resolver.refresh(t0));
  scan.netns.clear();  // one scan misses its processes (unreadable for a moment)
  ASSERT_TRUE(resolver.refresh(t0 + seconds(10)));
  scan.netns["u1"] = kWebNetns;
  ASSERT_TRUE(resolver.refresh(t0 + seconds(20)));
  resolver.refresh(t0 + seconds(200));
  EXPECT_EQ(resolver.resolve(kWebNetns).kind, Kind::kPod);
  EXPECT_TRUE(resolver.take_gone().empty());
}

TEST(PodResolver, ZeroGraceIsGoneAtTheNextScan) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  FakeScan scan({{"u1", kWebNetns}});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(30), seconds(0)});
  ASSERT_TRUE(resolver.refresh());
  cache.apply(event(WatchEvent::Type::kDeleted, PodInfo{"u1", "shop", "web-0", false}));
  ASSERT_TRUE(resolver.refresh());
  EXPECT_EQ(resolver.resolve(kWebNetns).kind, Kind::kGone);
}

TEST(PodResolver, ANetnsAPodProcessStillHoldsIsNotGoneEvenForAPodNotListedYet) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  FakeScan scan({{"u1", kWebNetns}});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(30), seconds(0)});
  const auto t0 = PodResolver::Clock::now();
  ASSERT_TRUE(resolver.refresh(t0));
  cache.apply(event(WatchEvent::Type::kDeleted, PodInfo{"u1", "shop", "web-0", false}));
  // A new pod's sandbox has the inode before its ADDED event arrives.
  scan.netns = {{"u2", kWebNetns}};
  ASSERT_TRUE(resolver.refresh(t0 + seconds(1)));
  EXPECT_TRUE(resolver.take_gone().empty());
  cache.apply(event(WatchEvent::Type::kAdded, PodInfo{"u2", "shop", "web-1", false}));
  ASSERT_TRUE(resolver.refresh(t0 + seconds(2)));
  EXPECT_EQ(resolver.resolve(kWebNetns).pod, "web-1");
  EXPECT_TRUE(resolver.take_gone().empty());
}

TEST(PodResolver, AFailingScanKeepsWhatWasKnownAndIsRetriedLater) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  FakeScan scan({{"u1", kWebNetns}});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(30), seconds(60)});
  const auto t0 = PodResolver::Clock::now();
  ASSERT_TRUE(resolver.refresh(t0));
  scan.fail = true;
  EXPECT_FALSE(resolver.refresh(t0 + seconds(31)));
  EXPECT_FALSE(resolver.refresh(t0 + seconds(32)));  // not retried on every call
  EXPECT_EQ(scan.scans, 2);
  EXPECT_EQ(resolver.stats().scan_failures, 1u);
  EXPECT_EQ(resolver.resolve(kWebNetns).pod, "web-0");
  scan.fail = false;
  EXPECT_TRUE(resolver.refresh(t0 + seconds(62)));
}

TEST(PodResolver, NamesThePodsNetnsForTraceRequestsOrSaysWhyNot) {
  PodCache cache;
  cache.replace({PodInfo{"u-web", "shop", "web-0", false}, PodInfo{"u-new", "shop", "web-1", false},
                 PodInfo{"u-proxy", "kube-system", "kube-proxy", true}},
                "10");
  FakeScan scan({{"u-web", kWebNetns}}, {"u-proxy"});
  PodResolver resolver(cache, scan.fn(), PodResolverTimes{seconds(30), seconds(60)});
  ASSERT_TRUE(resolver.refresh());

  const PodNetns web = resolver.netns_of_pod("shop", "web-0");
  EXPECT_EQ(web.error, "");
  EXPECT_EQ(web.netns, kWebNetns);
  EXPECT_EQ(web.pod_uid, "u-web");
  EXPECT_FALSE(web.host_network);

  const PodNetns proxy = resolver.netns_of_pod("kube-system", "kube-proxy");
  EXPECT_EQ(proxy.netns, kHost);
  EXPECT_TRUE(proxy.host_network);

  const PodNetns missing = resolver.netns_of_pod("shop", "web-7");
  EXPECT_EQ(missing.netns, 0u);
  EXPECT_NE(missing.error.find("shop/web-7 is not on this node"), std::string::npos) << missing.error;
  EXPECT_TRUE(missing.not_here);
  EXPECT_EQ(resolver.netns_of_pod("other", "web-0").netns, 0u) << "the namespace is part of the name";

  const PodNetns starting = resolver.netns_of_pod("shop", "web-1");
  EXPECT_EQ(starting.netns, 0u);
  EXPECT_NE(starting.error.find("no process"), std::string::npos) << starting.error;
}

}  // namespace
}  // namespace pwru
