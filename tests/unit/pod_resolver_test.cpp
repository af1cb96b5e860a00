// netns -> pod from the API's pods and a (fake) /proc scan: who is labelled,
// who is host traffic, and when the scan is redone.
#include <gtest/gtest.h>

#include "k8s/pod_resolver.h"

namespace pwru {
namespace {

constexpr std::uint32_t kHost = 4026531840u;

TEST(PodResolver, PodsOfThisNodeGetTheirLabelsHostNetworkAndStrangersDoNot) {
  PodCache cache;
  cache.replace({PodInfo{"u-web", "shop", "web-0", false}, PodInfo{"u-proxy", "kube-system", "kube-proxy", true}},
                "10");
  int scans = 0;
  PodResolver resolver(
      cache,
      [&] {
        ++scans;
        ProcScanResult r;
        r.host_netns = kHost;
        r.pod_netns = {{"u-web", 4026532300u}, {"u-unknown", 4026532400u}};
        r.host_network_pods = {"u-proxy"};
        return r;
      },
      std::chrono::seconds(30));
  EXPECT_EQ(resolver.resolve(4026532300u).pod, "");  // nothing before the first refresh
  ASSERT_TRUE(resolver.refresh());
  EXPECT_EQ(resolver.resolve(4026532300u).namespace_name, "shop");
  EXPECT_EQ(resolver.resolve(4026532300u).pod, "web-0");
  EXPECT_EQ(resolver.resolve(kHost).pod, "");          // host traffic, not kube-proxy
  EXPECT_EQ(resolver.resolve(4026532400u).pod, "");    // a pod the API does not list here
  EXPECT_EQ(resolver.resolved_netns(), 1u);
  EXPECT_EQ(scans, 1);
}

TEST(PodResolver, RescansWhenPodsChangeOrTimePasses) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  int scans = 0;
  std::map<std::string, std::uint32_t> netns = {{"u1", 4026532300u}};
  PodResolver resolver(
      cache,
      [&] {
        ++scans;
        ProcScanResult r;
        r.host_netns = kHost;
        r.pod_netns = netns;
        return r;
      },
      std::chrono::seconds(30));
  const auto t0 = PodResolver::Clock::now();
  ASSERT_TRUE(resolver.refresh(t0));
  EXPECT_FALSE(resolver.refresh(t0 + std::chrono::seconds(1)));  // nothing changed
  EXPECT_EQ(scans, 1);

  // A deleted pod's netns loses its labels at the next refresh.
  WatchEvent deleted;
  deleted.type = WatchEvent::Type::kDeleted;
  deleted.pod = PodInfo{"u1", "shop", "web-0", false};
  cache.apply(deleted);
  ASSERT_TRUE(resolver.refresh(t0 + std::chrono::seconds(2)));
  EXPECT_EQ(resolver.resolve(4026532300u).pod, "");

  // A pod whose processes appear after its event is found by the periodic scan.
  WatchEvent added;
  added.type = WatchEvent::Type::kAdded;
  added.pod = PodInfo{"u2", "shop", "web-1", false};
  cache.apply(added);
  ASSERT_TRUE(resolver.refresh(t0 + std::chrono::seconds(3)));  // event: scanned, processes not there yet
  EXPECT_EQ(resolver.resolve(4026532500u).pod, "");
  netns["u2"] = 4026532500u;
  EXPECT_FALSE(resolver.refresh(t0 + std::chrono::seconds(10)));
  ASSERT_TRUE(resolver.refresh(t0 + std::chrono::seconds(34)));
  EXPECT_EQ(resolver.resolve(4026532500u).pod, "web-1");
  EXPECT_EQ(scans, 4);
}

}  // namespace
}  // namespace pwru
