// The watch protocol's data side: list pages, watch lines (bookmarks, 410
// Gone, errors, garbage) and what they do to the node's pod cache.
#include "k8s/pod_cache.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace pwru {
namespace {

std::string pod_json(const std::string& uid, const std::string& ns, const std::string& name, const std::string& rv,
                     bool host_network = false) {
  return R"({"kind":"Pod","metadata":{"uid":")" + uid + R"(","namespace":")" + ns + R"(","name":")" + name +
         R"(","resourceVersion":")" + rv + R"("},"spec":{"nodeName":"n1","hostNetwork":)" +
         (host_network ? "true" : "false") + R"(},"status":{"phase":"Running"}})";
}

TEST(PodCache, ListPageWithContinueAndResourceVersion) {
  const PodListPage page = parse_pod_list(
      R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1000","continue":"abc"},"items":[)" +
      pod_json("u1", "shop", "web-0", "900") + "," + pod_json("u2", "kube-system", "kube-proxy-x", "901", true) +
      R"(,{"metadata":{"name":"no-uid"}}]})");
  ASSERT_EQ(page.pods.size(), 2u);  // the item without a uid is skipped
  EXPECT_EQ(page.pods[0].namespace_name, "shop");
  EXPECT_EQ(page.pods[0].name, "web-0");
  EXPECT_FALSE(page.pods[0].host_network);
  EXPECT_TRUE(page.pods[1].host_network);
  EXPECT_EQ(page.resource_version, "1000");
  EXPECT_EQ(page.continue_token, "abc");
  EXPECT_THROW(parse_pod_list("<html>"), std::runtime_error);
  try {
    parse_pod_list(R"({"kind":"Status","status":"Failure","message":"pods is forbidden","code":403})");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("pods is forbidden"), std::string::npos);
  }
}

TEST(PodCache, WatchEventsChangeTheCacheAndItsResourceVersion) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "1000");
  const std::uint64_t g0 = cache.generation();

  EXPECT_TRUE(
      cache.apply(parse_watch_line(R"({"type":"ADDED","object":)" + pod_json("u2", "shop", "web-1", "1001") + "}")));
  EXPECT_EQ(cache.by_uid("u2")->name, "web-1");
  EXPECT_EQ(cache.resource_version(), "1001");
  EXPECT_GT(cache.generation(), g0);

  // A bookmark moves the resourceVersion only.
  const std::uint64_t g1 = cache.generation();
  const WatchEvent bookmark =
      parse_watch_line(R"({"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"1500"}}})");
  EXPECT_EQ(bookmark.type, WatchEvent::Type::kBookmark);
  EXPECT_TRUE(cache.apply(bookmark));
  EXPECT_EQ(cache.resource_version(), "1500");
  EXPECT_EQ(cache.generation(), g1);

  EXPECT_TRUE(
      cache.apply(parse_watch_line(R"({"type":"DELETED","object":)" + pod_json("u1", "shop", "web-0", "1501") + "}")));
  EXPECT_FALSE(cache.by_uid("u1"));
  EXPECT_EQ(cache.pods().size(), 1u);
}

TEST(PodCache, GoneAsksForARelistAndErrorsLeaveTheCacheAlone) {
  PodCache cache;
  cache.replace({PodInfo{"u1", "shop", "web-0", false}}, "10");
  const WatchEvent gone = parse_watch_line(
      R"J({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 10 (2000)","reason":"Expired","code":410}})J");
  EXPECT_EQ(gone.type, WatchEvent::Type::kGone);
  EXPECT_NE(gone.message.find("too old"), std::string::npos);
  EXPECT_FALSE(cache.apply(gone));

  for (const char* bad : {"not json", "[]", R"({"type":"ADDED"})", R"({"type":"WEIRD","object":{}})",
                          R"({"type":"ADDED","object":{"metadata":{"name":"x"}}})",
                          R"({"type":"ERROR","object":{"code":500,"message":"etcd down"}})"}) {
    const WatchEvent e = parse_watch_line(bad);
    EXPECT_EQ(e.type, WatchEvent::Type::kError) << bad;
    EXPECT_FALSE(e.message.empty()) << bad;
    EXPECT_TRUE(cache.apply(e)) << bad;
  }
  EXPECT_EQ(cache.pods().size(), 1u);
  EXPECT_EQ(cache.resource_version(), "10");
}

}  // namespace
}  // namespace pwru
