// Cross-node journeys (journey/stitch.h): journeys of one packet on several
// nodes joined by its identity, time and a NAT-tolerant tuple; everything
// else left as it was.
#include "journey/stitch.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pwru {
namespace {

using nlohmann::json;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;  // a wall clock, ns

json tcp_ident(std::uint32_t seq, std::uint32_t ack, std::uint32_t len, int flags) {
  return {{"ip_id", 0}, {"seq", seq}, {"ack", ack}, {"flow_label", 0}, {"len", len}, {"tcp_flags", flags}};
}
json v4_ident(std::uint32_t ip_id, std::uint32_t len, std::uint32_t seq = 0) {
  return {{"ip_id", ip_id}, {"seq", seq}, {"ack", 0}, {"flow_label", 0}, {"len", len}};
}
json v6_ident(std::uint32_t flow_label, std::uint32_t len, std::uint32_t seq = 0) {
  return {{"ip_id", 0}, {"seq", seq}, {"ack", 0}, {"flow_label", flow_label}, {"len", len}};
}

// One node's journey of a packet, as a merged trace reports it.
struct J {
  std::string node = "n1", ns = "shop", pod = "client";
  std::string saddr = "10.0.1.5", daddr = "10.96.0.10";
  int sport = 40000, dport = 80, proto = 6;
  json ident = tcp_ident(1000, 0, 0, 0x02);
  std::string fate = "transmitted", where = "eth0";
  std::string reason, hint;
  std::int64_t first = kT0, last = kT0 + kMs / 10;
  std::vector<std::string> hooks = {"net_dev_queue", "net_dev_start_xmit", "net_dev_xmit"};

  NodeJourney make() const {
    json tuple = {{"saddr", saddr}, {"daddr", daddr}, {"proto", proto}};
    if (sport) tuple["sport"] = sport;
    if (dport) tuple["dport"] = dport;
    json hook_list = json::array();
    for (const auto& h : hooks) hook_list.push_back({{"func", h}, {"rel_ns", 0}, {"iface", "eth0:2"}});
    json j = {{"skb", "0x1"},   {"tuple", tuple},         {"hooks", hook_list},  {"fate", fate},
              {"where", where}, {"netns", 4026532001u},   {"node", node},        {"namespace", ns},
              {"pod", pod},     {"first_wall_ns", first}, {"last_wall_ns", last}};
    if (!ident.is_null()) j["ident"] = ident;
    if (!reason.empty()) j["reason"] = reason;
    if (!hint.empty()) j["hint"] = hint;
    return {node, j};
  }
};

// The continuation of `a` on node n2 in pod web-0: DNAT'ed from the VIP to
// the pod, delivered there 200 us later.
J arrived(const J& a, std::string node = "n2", std::string pod = "web-0") {
  J b = a;
  b.node = std::move(node);
  b.pod = std::move(pod);
  b.daddr = "10.0.2.7";
  b.dport = 8080;
  b.fate = "delivered";
  b.where = "read by nginx:7";
  b.hooks = {"netif_receive_skb", "skb_copy_datagram_iovec"};
  b.first = a.last + kMs / 5;
  b.last = b.first + kMs / 10;
  return b;
}

StitchResult stitch(const std::vector<J>& js) {
  std::vector<NodeJourney> in;
  for (const J& j : js) in.push_back(j.make());
  return stitch_journeys(std::move(in));
}

TEST(Stitch, DnatPairBecomesOneJourneyWithTheFateOfTheLastNode) {
  const J a;
  const J b = arrived(a);
  const StitchResult r = stitch({a, b});
  EXPECT_EQ(r.stitched, 1u);
  EXPECT_EQ(r.ambiguous, 0u);
  ASSERT_EQ(r.journeys.size(), 1u);
  const json& x = r.journeys[0];
  EXPECT_EQ(x["nodes"], json({"n1", "n2"}));
  EXPECT_EQ(x["stitched_by"], "ident+tuple");
  EXPECT_EQ(x["fate"], "delivered");
  EXPECT_EQ(x["where"], "read by nginx:7");
  EXPECT_EQ(x["node"], "n2");
  EXPECT_FALSE(x.contains("reason"));
  ASSERT_EQ(x["segments"].size(), 2u);
  EXPECT_EQ(x["segments"][0]["node"], "n1");
  EXPECT_EQ(x["segments"][0]["namespace"], "shop");
  EXPECT_EQ(x["segments"][0]["pod"], "client");
  EXPECT_EQ(x["segments"][1]["pod"], "web-0");
  const json& first = x["segments"][0]["journey"];
  EXPECT_EQ(first["fate"], "transmitted");
  EXPECT_EQ(first["tuple"]["daddr"], "10.96.0.10");
  EXPECT_EQ(first["first_wall_ns"], kT0);
  EXPECT_FALSE(first.contains("node")) << "the segment says where";
  EXPECT_FALSE(first.contains("pod"));
}

TEST(Stitch, SnatPairKeepsTheDestination) {
  J a;
  a.daddr = "10.0.2.7";
  a.dport = 8080;
  J b = arrived(a);
  b.saddr = "192.168.0.1";  // masqueraded on n1
  b.sport = 61000;
  const StitchResult r = stitch({a, b});
  ASSERT_EQ(r.stitched, 1u);
  EXPECT_EQ(r.journeys[0]["stitched_by"], "ident+tuple");

  // Source and destination both rewritten: identity and time alone.
  b.daddr = "10.0.3.3";
  b.dport = 9090;
  const StitchResult both = stitch({a, b});
  ASSERT_EQ(both.stitched, 1u);
  EXPECT_EQ(both.journeys[0]["stitched_by"], "ident+time");
}

// A GSO super-segment is sent as segments, each inside its data; a GRO'd
// one starts at the first segment's seq and takes it.
TEST(Stitch, TcpSegmentsInsideTheSentDataAreItsContinuations) {
  J a;
  a.ident = tcp_ident(5000, 77, 2896, 0x18);
  J b1 = arrived(a);
  b1.ident = tcp_ident(5000, 77, 1448, 0x10);
  J b2 = arrived(a);
  b2.ident = tcp_ident(6448, 77, 1448, 0x18);
  J beyond = arrived(a);
  beyond.ident = tcp_ident(5000 + 2896, 77, 1448, 0x18);
  J other_ack = arrived(a);
  other_ack.ident = tcp_ident(5000, 78, 1448, 0x10);
  const StitchResult r = stitch({a, b1, b2, beyond, other_ack});
  EXPECT_EQ(r.stitched, 2u);
  EXPECT_EQ(r.ambiguous, 0u);
  ASSERT_EQ(r.journeys.size(), 4u);
  EXPECT_EQ(r.journeys[0]["segments"][1]["journey"]["ident"]["seq"], 5000);
  EXPECT_EQ(r.journeys[1]["segments"][0]["journey"]["ident"]["len"], 2896) << "the split's first part, both times";
  EXPECT_EQ(r.journeys[1]["segments"][1]["journey"]["ident"]["seq"], 6448);
  EXPECT_EQ(r.journeys[2]["ident"]["seq"], 5000 + 2896) << "past the data: alone";
  EXPECT_EQ(r.journeys[3]["ident"]["ack"], 78);

  J small = a;
  small.ident = tcp_ident(100, 1, 1448, 0x10);
  J merged = arrived(small);
  merged.ident = tcp_ident(100, 1, 2896, 0x18);
  const StitchResult gro = stitch({small, merged});
  EXPECT_EQ(gro.stitched, 1u);

  // The sequence space wraps: data across 2^32 still holds the segment after it.
  J wrap = a;
  wrap.ident = tcp_ident(0xfffffe00, 5, 1024, 0x10);
  J after = arrived(wrap);
  after.ident = tcp_ident(0x100, 5, 512, 0x10);
  EXPECT_EQ(stitch({wrap, after}).stitched, 1u);
}

TEST(Stitch, RetransmissionsAreToldApartByTimeOrNotAtAll) {
  J first;
  J again = first;
  again.first += 200 * kMs;
  again.last += 200 * kMs;
  J b1 = arrived(first);
  J b2 = arrived(again);
  const StitchResult apart = stitch({first, again, b1, b2});
  EXPECT_EQ(apart.stitched, 2u);
  EXPECT_EQ(apart.ambiguous, 0u);
  ASSERT_EQ(apart.journeys.size(), 2u);
  EXPECT_EQ(apart.journeys[0]["segments"][0]["journey"]["last_wall_ns"], first.last);
  EXPECT_EQ(apart.journeys[0]["segments"][1]["journey"]["first_wall_ns"], b1.first);
  EXPECT_EQ(apart.journeys[1]["segments"][0]["journey"]["last_wall_ns"], again.last);

  // Two attempts within a millisecond of each other: no guess.
  J quick = first;
  quick.last = first.last + kMs / 2;
  const StitchResult close = stitch({first, quick, b1});
  EXPECT_EQ(close.stitched, 0u);
  EXPECT_EQ(close.ambiguous, 1u);
  EXPECT_EQ(close.journeys.size(), 3u) << "all pass through";
  for (const json& j : close.journeys) EXPECT_FALSE(j.contains("segments"));

  // One attempt seen leaving, two arriving: which is its continuation is unknown.
  J b1_again = b1;
  b1_again.first += 100 * kMs;
  const StitchResult two = stitch({first, b1, b1_again});
  EXPECT_EQ(two.stitched, 0u);
  EXPECT_EQ(two.ambiguous, 2u);
}

TEST(Stitch, DropOnTheLastNodeIsTheFate) {
  J a;
  J b = arrived(a, "n3", "web-2");
  b.fate = "dropped";
  b.where = "nf_hook_slow";
  b.reason = "SKB_DROP_REASON_NETFILTER_DROP";
  b.hint = "a netfilter rule dropped it";
  b.hooks = {"netif_receive_skb", "kfree_skb(SKB_DROP_REASON_NETFILTER_DROP)"};
  const StitchResult r = stitch({a, b});
  ASSERT_EQ(r.stitched, 1u);
  const json& x = r.journeys[0];
  EXPECT_EQ(x["fate"], "dropped");
  EXPECT_EQ(x["where"], "nf_hook_slow");
  EXPECT_EQ(x["reason"], "SKB_DROP_REASON_NETFILTER_DROP");
  EXPECT_EQ(x["hint"], "a netfilter rule dropped it");
  EXPECT_EQ(x["node"], "n3");
  EXPECT_EQ(x["nodes"], json({"n1", "n3"}));
}

TEST(Stitch, ClockSkewInsideTheAllowanceOnly) {
  const J a;
  const auto stitched_at = [&](std::int64_t first) {
    J b = arrived(a);
    b.first = first;
    b.last = first + kMs;
    return stitch({a, b}).stitched;
  };
  EXPECT_EQ(stitched_at(a.last - 400 * kMs), 1u) << "B's clock behind";
  EXPECT_EQ(stitched_at(a.last - 500 * kMs), 1u);
  EXPECT_EQ(stitched_at(a.last - 600 * kMs), 0u);
  EXPECT_EQ(stitched_at(a.last + 900 * kMs), 1u);
  EXPECT_EQ(stitched_at(a.last + 1000 * kMs), 1u);
  EXPECT_EQ(stitched_at(a.last + 1100 * kMs), 0u) << "longer than any transit";
}

// Only a journey that left its pod is continued elsewhere, and never on
// its own node.
TEST(Stitch, OnlyJourneysThatLeftTheirPodOnAnotherNode) {
  J a;
  J b = arrived(a);
  a.fate = "consumed";
  EXPECT_EQ(stitch({a, b}).stitched, 0u);
  a.fate = "in_flight";
  a.hooks = {"net_dev_queue", "ip_output"};
  EXPECT_EQ(stitch({a, b}).stitched, 0u);
  a.hooks = {"ip_output", "net_dev_start_xmit"};
  EXPECT_EQ(stitch({a, b}).stitched, 1u) << "in flight after a transmit";
  a.fate = "transmitted";
  b.node = a.node;
  EXPECT_EQ(stitch({a, b}).stitched, 0u);
}

TEST(Stitch, ChainsAcrossThreeNodesAndUpToFourSegments) {
  J a;
  J b = arrived(a, "n2", "proxy");
  b.fate = "transmitted";
  b.hooks = {"netif_receive_skb", "net_dev_xmit"};
  J c = arrived(b, "n3", "web-2");
  const StitchResult r = stitch({c, a, b});
  EXPECT_EQ(r.stitched, 1u);
  ASSERT_EQ(r.journeys.size(), 1u);
  EXPECT_EQ(r.journeys[0]["nodes"], json({"n1", "n2", "n3"}));
  EXPECT_EQ(r.journeys[0]["node"], "n3");
  EXPECT_EQ(r.journeys[0]["fate"], "delivered");

  // Five hops: the last four are one journey, the first stays alone.
  std::vector<J> hops{J{}};
  for (int i = 2; i <= 5; ++i) {
    J next = arrived(hops.back(), "n" + std::to_string(i), "p" + std::to_string(i));
    if (i < 5) {
      next.fate = "transmitted";
      next.hooks = {"netif_receive_skb", "net_dev_xmit"};
    }
    hops.push_back(next);
  }
  const StitchResult five = stitch(hops);
  EXPECT_EQ(five.stitched, 1u);
  ASSERT_EQ(five.journeys.size(), 2u);
  EXPECT_EQ(five.journeys[0]["node"], "n1");
  EXPECT_FALSE(five.journeys[0].contains("segments"));
  EXPECT_EQ(five.journeys[1]["nodes"], json({"n2", "n3", "n4", "n5"}));
}

TEST(Stitch, Ipv4WithoutTcpByIdLengthAndEcho) {
  J a;
  a.proto = 1;
  a.sport = a.dport = 0;
  a.ident = v4_ident(0x4242, 64, 0x12340001);
  J b = arrived(a);
  b.dport = 0;
  EXPECT_EQ(stitch({a, b}).stitched, 1u);
  b.ident = v4_ident(0x4242, 64, 0x12340002);
  EXPECT_EQ(stitch({a, b}).stitched, 0u) << "the next ping";
  b.ident = v4_ident(0x4243, 64, 0x12340001);
  EXPECT_EQ(stitch({a, b}).stitched, 0u);
  b.ident = v4_ident(0x4242, 72, 0x12340001);
  EXPECT_EQ(stitch({a, b}).stitched, 0u);
}

TEST(Stitch, Ipv6ByFlowLabelAndLength) {
  J a;
  a.saddr = "fd00::1:5";
  a.daddr = "fd00::2:7";
  a.proto = 17;
  a.sport = 5353;
  a.dport = 53;
  a.ident = v6_ident(0x12345, 40);
  J b = arrived(a);
  b.daddr = a.daddr;
  b.dport = 53;
  const StitchResult r = stitch({a, b});
  ASSERT_EQ(r.stitched, 1u);
  EXPECT_EQ(r.journeys[0]["stitched_by"], "ident+tuple");
  b.ident = v6_ident(0x12346, 40);
  EXPECT_EQ(stitch({a, b}).stitched, 0u);
  J v4 = b;
  v4.saddr = "10.0.1.5";
  v4.daddr = "10.0.2.7";
  v4.ident = v6_ident(0x12345, 40);
  EXPECT_EQ(stitch({a, v4}).stitched, 0u) << "another IP version";
}

// ICMPv6 echo without flow labels: the reply repeats the request's
// identifier, sequence and length, but goes back to the sender.
TEST(Stitch, RepliesAreNotTheRequest) {
  J request;
  request.saddr = "fd00::1:5";
  request.daddr = "fd00::2:7";
  request.proto = 58;
  request.sport = request.dport = 0;
  request.ident = v6_ident(0, 64, 0x00070001);
  J at_web = arrived(request);
  at_web.daddr = request.daddr;
  at_web.dport = 0;
  at_web.fate = "consumed";
  J reply = at_web;
  std::swap(reply.saddr, reply.daddr);
  reply.fate = "transmitted";
  reply.hooks = {"net_dev_queue", "net_dev_xmit"};
  reply.first = at_web.last + kMs / 10;
  reply.last = reply.first + kMs / 10;
  J back = arrived(reply, "n1", "client");
  back.daddr = reply.daddr;
  const StitchResult r = stitch({request, at_web, reply, back});
  EXPECT_EQ(r.ambiguous, 0u);
  ASSERT_EQ(r.stitched, 2u);
  EXPECT_EQ(r.journeys[0]["nodes"], json({"n1", "n2"}));
  EXPECT_EQ(r.journeys[0]["fate"], "consumed");
  EXPECT_EQ(r.journeys[1]["nodes"], json({"n2", "n1"}));
  EXPECT_EQ(r.journeys[1]["fate"], "delivered");
}

// UDP from a socket-less sender: IP ID 0, one length, for thousands of
// packets. Only the time window tells them apart, and looking only there
// keeps this linear (the whole bucket for each would be 2e8 comparisons).
TEST(Stitch, ThousandsOfOneIdentityAreJoinedWithinTheirWindowOnly) {
  J proto;
  proto.proto = 17;
  proto.sport = 5353;
  proto.dport = 53;
  proto.ident = v4_ident(0, 100);
  std::vector<NodeJourney> in;
  constexpr int kPairs = 10000;
  in.reserve(2 * kPairs);
  for (int i = 0; i < kPairs; ++i) {
    J a = proto;
    a.first = kT0 + i * 300 * kMs;  // five of them in any B's window
    a.last = a.first + kMs / 10;
    in.push_back(a.make());
    in.push_back(arrived(a).make());
  }
  const StitchResult r = stitch_journeys(std::move(in));
  EXPECT_EQ(r.stitched, static_cast<std::uint64_t>(kPairs));
  EXPECT_EQ(r.ambiguous, 0u);
  ASSERT_EQ(r.journeys.size(), static_cast<std::size_t>(kPairs));
  EXPECT_EQ(r.journeys[kPairs - 1]["segments"][0]["journey"]["first_wall_ns"], kT0 + (kPairs - 1) * 300 * kMs);
  EXPECT_EQ(r.journeys[kPairs - 1]["segments"][1]["journey"]["first_wall_ns"],
            kT0 + (kPairs - 1) * 300 * kMs + kMs / 10 + kMs / 5);
}

// More candidates than kStitchMaxCandidates in the window: no choice, not
// even of the closest.
TEST(Stitch, TooManyCandidatesAreAmbiguous) {
  J proto;
  proto.proto = 17;
  proto.ident = v4_ident(0, 100);
  std::vector<J> js;
  for (std::size_t i = 0; i <= kStitchMaxCandidates; ++i) {
    J a = proto;
    a.first = kT0 + static_cast<std::int64_t>(i) * 20 * kMs;
    a.last = a.first + kMs / 10;
    js.push_back(a);
  }
  js.push_back(arrived(js.back()));
  const StitchResult crowded = stitch(js);
  EXPECT_EQ(crowded.stitched, 0u);
  EXPECT_EQ(crowded.ambiguous, 1u);
  EXPECT_EQ(crowded.journeys.size(), js.size());
  js.erase(js.begin());  // exactly kStitchMaxCandidates: the closest wins
  const StitchResult r = stitch(js);
  EXPECT_EQ(r.stitched, 1u);
  EXPECT_EQ(r.ambiguous, 0u);
}

TEST(Stitch, JourneysWithoutIdentityPassThroughUnchanged) {
  J a;
  a.ident = json();
  J b = arrived(a);
  NodeJourney bare{"n4", {{"fate", "delivered"}}};
  std::vector<NodeJourney> in{a.make(), b.make(), bare};
  const json before = in[0].journey;
  const StitchResult r = stitch_journeys(in);
  EXPECT_EQ(r.stitched, 0u);
  ASSERT_EQ(r.journeys.size(), 3u);
  EXPECT_EQ(r.journeys[0], before);
  EXPECT_EQ(r.journeys[2]["node"], "n4") << "a journey without its node gets it";
  EXPECT_EQ(stitch_journeys({}).journeys, json::array());
}

}  // namespace
}  // namespace pwru
