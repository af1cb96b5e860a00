// --summary's fate decisions over event sequences as the tracepoint and
// kprobe backends report them, and the drop-hint catalogue.
#include "journey/journey.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

#include "common/error.h"

namespace pwru {
namespace {

struct Ev {
  Ev(std::string hook_, std::string reason_ = "", std::string location_ = "", std::uint32_t netns_ = 4026532001,
     const char* ifname_ = "veth0", const char* comm_ = "curl")
      : hook(std::move(hook_)),
        reason(std::move(reason_)),
        location(std::move(location_)),
        netns(netns_),
        ifname(ifname_),
        comm(comm_) {}
  Ev(const char* hook_) : Ev(std::string(hook_)) {}
  std::string hook;
  std::string reason;    // "" when the hook carries none
  std::string location;  // function of the drop/free location
  std::uint32_t netns;
  const char* ifname;
  const char* comm;
};

class Journeys {
 public:
  explicit Journeys(JourneyTracker::Limits limits = {},
                    std::shared_ptr<JourneyBudget> budget = std::make_shared<JourneyBudget>(64u << 20, "test", ""))
      : tracker_(DropHints::builtin(), limits, std::move(budget)) {}

  // Later events carry this identity part, as in a trace with PWRU_OUT_IDENT.
  Journeys& with_ident(const pwru_part_ident& id) {
    ident_ = id;
    return *this;
  }

  Journeys& skb(std::uint64_t addr, std::initializer_list<Ev> events) {
    for (const Ev& ev : events) {
      pwru_event e{};
      if (ident_) {
        e.parts = PWRU_PART_IDENT;
        e.ident = *ident_;
      }
      e.skb_addr = addr;
      e.ts_ns = ts_ += 1000;
      e.netns = ev.netns;
      e.ifindex = 5;
      std::strncpy(e.ifname, ev.ifname, sizeof(e.ifname) - 1);
      std::strncpy(e.comm, ev.comm, sizeof(e.comm) - 1);
      e.pid = 42;
      e.has_drop_reason = ev.reason.empty() ? 0 : 1;
      e.tuple.l3_proto = PWRU_ETH_P_IP;
      const std::uint8_t src[4] = {10, 0, 0, 1}, dst[4] = {10, 0, 0, 2};
      std::memcpy(e.tuple.saddr, src, 4);
      std::memcpy(e.tuple.daddr, dst, 4);
      e.tuple.l4_proto = 17;
      e.tuple.dport = htons(9);
      const std::string func = ev.reason.empty() ? ev.hook : ev.hook + "(" + ev.reason + ")";
      tracker_.add(JourneyEvent{e, ev.hook, func, ev.reason, ev.location});
    }
    return *this;
  }
  std::vector<Journey> result() const { return tracker_.journeys(); }
  const JourneyTracker& tracker() const { return tracker_; }

 private:
  JourneyTracker tracker_;
  std::uint64_t ts_ = 0;
  std::optional<pwru_part_ident> ident_;
};

TEST(Journey, NetfilterDropNamesFunctionReasonNetnsAndHint) {
  Journeys j;
  j.skb(0x1000, {{"net_dev_queue"},
                 {"netif_receive_skb"},
                 {"kfree_skb", "SKB_DROP_REASON_NETFILTER_DROP", "nf_hook_slow", 4026532099}});
  const auto out = j.result();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].fate, Fate::Dropped);
  EXPECT_EQ(out[0].where, "nf_hook_slow");
  EXPECT_EQ(out[0].reason, "SKB_DROP_REASON_NETFILTER_DROP");
  EXPECT_EQ(out[0].netns, 4026532099u);
  EXPECT_NE(out[0].hint.find("netfilter rule"), std::string::npos) << out[0].hint;
  EXPECT_NE(out[0].hint.find("4026532099"), std::string::npos) << "the netns fills the hint";
  ASSERT_EQ(out[0].steps.size(), 3u);
  EXPECT_EQ(out[0].steps[2].func, "kfree_skb(SKB_DROP_REASON_NETFILTER_DROP)");
}

TEST(Journey, UnknownReasonGetsTheDefaultHint) {
  Journeys j;
  j.skb(0x1000, {{"kfree_skb", "SKB_DROP_REASON_SOMETHING_NEW", "new_function"}});
  const auto out = j.result();
  EXPECT_EQ(out[0].fate, Fate::Dropped);
  EXPECT_NE(out[0].hint.find("new_function (SOMETHING_NEW)"), std::string::npos) << out[0].hint;
}

TEST(Journey, CopyToTheReaderIsDeliveredEvenWithoutAFree) {
  Journeys j;
  j.skb(0x2000, {{"netif_receive_skb"}, {"tcp_probe"}, {"skb_copy_datagram_iovec", "", "", 1, "lo", "nc"}});
  const auto out = j.result();
  EXPECT_EQ(out[0].fate, Fate::Delivered);
  EXPECT_EQ(out[0].where, "read by nc:42");
}

TEST(Journey, KprobeQueueFunctionIsDelivered) {
  Journeys j;
  j.skb(0x2000, {{"ip_rcv"}, {"__udp_enqueue_schedule_skb"}});
  EXPECT_EQ(j.result()[0].fate, Fate::Delivered);
  EXPECT_EQ(j.result()[0].where, "queued by __udp_enqueue_schedule_skb");
}

TEST(Journey, LastLiveStepTransmitIsTransmittedFreedOrNot) {
  Journeys j;
  j.skb(0x3000, {{"net_dev_queue", "", "", 1, "eth0"},
                 {"net_dev_start_xmit", "", "", 1, "eth0"},
                 {"net_dev_xmit", "", "", 1, "eth0"},
                 {"consume_skb", "", "e1000_clean_tx_irq", 1, "eth0"}});
  j.skb(0x3100, {{"net_dev_queue", "", "", 1, "eth0"}, {"net_dev_xmit", "", "", 1, "eth0"}});
  const auto out = j.result();
  ASSERT_EQ(out.size(), 2u);
  for (const Journey& x : out) {
    EXPECT_EQ(x.fate, Fate::Transmitted);
    EXPECT_EQ(x.where, "eth0:5");
  }
}

TEST(Journey, ConsumedWithoutDeliveryNamesTheFreeingFunction) {
  Journeys j;
  j.skb(0x4000, {{"netif_receive_skb"}, {"consume_skb", "", "icmp_rcv"}});
  EXPECT_EQ(j.result()[0].fate, Fate::Consumed);
  EXPECT_EQ(j.result()[0].where, "icmp_rcv");
}

TEST(Journey, NothingAfterReceiveIsInFlightWithTheLastHook) {
  Journeys j;
  j.skb(0x5000, {{"net_dev_queue"}, {"netif_receive_skb"}});
  const auto out = j.result();
  EXPECT_EQ(out[0].fate, Fate::InFlight);
  EXPECT_EQ(out[0].where, "netif_receive_skb");
  EXPECT_FALSE(out[0].hint.empty());
}

TEST(Journey, ReusedAddressAfterAFreeStartsANewJourneyButTheFreePathDoesNot) {
  Journeys j;
  // kprobe backend: the drop tracepoint sits between kprobes of the free path.
  j.skb(0x6000, {{"ip_rcv"},
                 {"kfree_skb_reason"},
                 {"kfree_skb", "SKB_DROP_REASON_NO_SOCKET", "__udp4_lib_rcv"},
                 {"skb_release_head_state"},
                 {"kfree_skbmem"}});
  j.skb(0x6000, {{"net_dev_queue"}, {"net_dev_xmit"}});
  const auto out = j.result();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].fate, Fate::Dropped);
  EXPECT_EQ(out[0].steps.size(), 5u);
  EXPECT_EQ(out[0].where, "__udp4_lib_rcv");
  EXPECT_EQ(out[1].fate, Fate::Transmitted);
  EXPECT_EQ(out[1].steps.size(), 2u);
}

TEST(Journey, ADeviceHookSeenAgainOnTheSameDeviceIsAnotherPacket) {
  // TCP frees its skbs with __kfree_skb, which no tracepoint sees: the
  // address comes back for the next segment without a free in between.
  Journeys j;
  j.skb(0x8000, {{"netif_rx"},
                 {"netif_receive_skb"},
                 {"nf_hook_slow"},
                 {"nf_hook_slow"},
                 {"ip_rcv"},
                 {"netif_rx"},
                 {"netif_receive_skb"}});
  const auto out = j.result();
  ASSERT_EQ(out.size(), 2u) << "netif_rx on veth0 twice; nf_hook_slow twice is one packet's PREROUTING and INPUT";
  EXPECT_EQ(out[0].steps.size(), 5u);
  EXPECT_EQ(out[1].steps.size(), 2u);
}

TEST(Journey, IpRcvSeenAgainOnTheSameDeviceIsAnotherPacket) {
  // pwru --filter-func '^(ip_rcv|tcp_v4_rcv|__udp4_lib_rcv|kfree_skb_reason)$':
  // a TCP ACK freed by __kfree_skb (not traced), then a UDP datagram to a
  // closed port at the same address.
  Journeys j;
  j.skb(0x9000, {{"ip_rcv", "", "", 2, "vb"},
                 {"tcp_v4_rcv", "", "", 2, "vb"},
                 {"ip_rcv", "", "", 2, "vb"},
                 {"__udp4_lib_rcv", "", "", 2, "vb"},
                 {"kfree_skb_reason", "SKB_DROP_REASON_NO_SOCKET", "__udp4_lib_rcv", 2, "vb"}});
  const auto out = j.result();
  ASSERT_EQ(out.size(), 2u) << "the ACK's hops were taken for the datagram's";
  EXPECT_EQ(out[0].steps.size(), 2u);
  EXPECT_EQ(out[1].fate, Fate::Dropped);
}

TEST(Journey, TheSameDeviceHookOnAnotherDeviceIsTheSamePacket) {
  Journeys j;
  j.skb(0x8000, {{"net_dev_xmit", "", "", 1, "veth0"},
                 {"netif_receive_skb", "", "", 2, "veth1"},
                 {"net_dev_xmit", "", "", 2, "vxlan0"},
                 {"netif_receive_skb", "", "", 3, "eth0"}});
  EXPECT_EQ(j.result().size(), 1u);
}

TEST(Journey, LimitsCountWhatTheyDoNotKeepAndAlwaysKeepTheDrop) {
  Journeys j(JourneyTracker::Limits{2, 3});
  j.skb(0x7000, {{"a"}, {"b"}, {"c"}, {"d"}, {"e"}, {"kfree_skb", "SKB_DROP_REASON_QDISC_DROP", "dev_qdisc"}});
  j.skb(0x7100, {{"a"}});
  j.skb(0x7200, {{"a"}});
  j.skb(0x7300, {{"a"}});
  const auto out = j.result();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].steps.size(), 4u);
  EXPECT_EQ(out[0].steps_not_kept, 2u);
  EXPECT_EQ(out[0].fate, Fate::Dropped);
  EXPECT_EQ(j.tracker().skbs_not_kept(), 2u);
}

TEST(JourneyBudget, TrackersSharingABudgetStopFollowingWhenItIsSpentAndKeepEveryFate) {
  auto budget = std::make_shared<JourneyBudget>(16 * 1024, "test budget = 16 KiB", "raise it");
  Journeys first({}, budget);
  for (std::uint64_t skb = 0x10000; budget->used() < 12 * 1024; skb += 0x100) first.skb(skb, {{"netif_receive_skb"}});
  const std::uint64_t followed_by_first = first.result().size();
  Journeys second({}, budget);
  // Followed while there was room; then the budget runs out under it.
  second.skb(0x1000, {{"netif_receive_skb"}});
  for (std::uint64_t skb = 0x20000; skb < 0x20000 + 200 * 0x100; skb += 0x100) second.skb(skb, {{"ip_rcv"}});
  // Hooks after the cut are not listed, but the drop still decides the fate.
  second.skb(0x1000,
             {{"ip_rcv_core"}, {"ip_local_deliver"}, {"kfree_skb", "SKB_DROP_REASON_NO_SOCKET", "__udp4_lib_rcv"}});
  const JourneyCounts counts = second.tracker().counts();
  EXPECT_GT(counts.cut, 0u) << "the shared budget ran out";
  EXPECT_EQ(counts.not_followed, counts.cut) << "no journey limit was reached, only the budget";
  EXPECT_LE(budget->used(), budget->limit() + 4096) << "only the fates' names may overdraw, a little";
  const auto out = second.result();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0].skb, 0x1000u);
  EXPECT_EQ(out[0].fate, Fate::Dropped);
  EXPECT_EQ(out[0].where, "__udp4_lib_rcv");
  EXPECT_EQ(out[0].steps.back().func, "kfree_skb(SKB_DROP_REASON_NO_SOCKET)") << "the drop is always shown";
  const std::string note = budget_note(counts, *budget);
  EXPECT_NE(note.find("test budget = 16 KiB"), std::string::npos) << note;
  EXPECT_NE(note.find(std::to_string(counts.cut) + " skbs were not followed"), std::string::npos) << note;
  EXPECT_NE(note.find("raise it"), std::string::npos) << note;
  EXPECT_NE(journeys_text_header(counts, note).find("NOTE: incomplete"), std::string::npos);
  EXPECT_GT(followed_by_first, 10u);
}

TEST(JourneyBudget, ATrackerGivesBackWhatItChargedAndAnUncutOneHasNoNote) {
  auto budget = std::make_shared<JourneyBudget>(1u << 20, "b", "");
  {
    Journeys j({}, budget);
    j.skb(0x1000, {{"netif_receive_skb"}, {"kfree_skb", "SKB_DROP_REASON_NO_SOCKET", "__udp4_lib_rcv"}});
    EXPECT_GT(budget->used(), 0u);
    EXPECT_EQ(budget->used(), j.tracker().charged());
    EXPECT_EQ(budget_note(j.tracker().counts(), *budget), "");
  }
  EXPECT_EQ(budget->used(), 0u);
}

TEST(JourneyBudget, AHookCostsTensOfBytesNotThreeStrings) {
  auto budget = std::make_shared<JourneyBudget>(1ull << 30, "b", "");
  Journeys j(JourneyTracker::Limits{100000, 64}, budget);
  for (std::uint64_t skb = 0; skb < 2000; ++skb)
    j.skb(0x100000 + skb * 0x100, {{"netif_receive_skb"},
                                   {"ip_rcv_core"},
                                   {"ip_route_input_noref"},
                                   {"ip_local_deliver"},
                                   {"ip_local_deliver_finish"},
                                   {"__udp4_lib_rcv"},
                                   {"udp_unicast_rcv_skb"},
                                   {"__udp_enqueue_schedule_skb"}});
  const double per_skb = static_cast<double>(j.tracker().charged()) / 2000;
  // The Tracked record with its fate hops, plus 8 interned hops of 24 bytes.
  EXPECT_LT(per_skb, 700.0) << "charged " << j.tracker().charged() << " bytes for 2000 skbs of 8 hooks";
  EXPECT_EQ(j.result().size(), 2000u);
}

TEST(Journey, TextAndJsonCarryTheSameFacts) {
  Journeys j;
  j.skb(0x1000, {{"netif_receive_skb"}, {"kfree_skb", "SKB_DROP_REASON_NO_SOCKET", "__udp4_lib_rcv"}});
  const auto out = j.result();
  const std::string text = journeys_text(out, JourneyCounts{1, 3, 0, 0});
  EXPECT_NE(text.find("SUMMARY: 1 skb (3 more seen but not followed"), std::string::npos) << text;
  EXPECT_NE(text.find("SKB 0x1000 10.0.0.1:0->10.0.0.2:9(udp)"), std::string::npos) << text;
  EXPECT_NE(text.find("fate: dropped in __udp4_lib_rcv with NO_SOCKET (netns 4026532001)"), std::string::npos) << text;
  EXPECT_NE(text.find("hint: nothing listens"), std::string::npos) << text;
  const nlohmann::json js = journey_json(out[0]);
  EXPECT_EQ(js["fate"], "dropped");
  EXPECT_EQ(js["where"], "__udp4_lib_rcv");
  EXPECT_EQ(js["reason"], "SKB_DROP_REASON_NO_SOCKET");
  EXPECT_EQ(js["tuple"]["daddr"], "10.0.0.2");
  EXPECT_EQ(js["tuple"]["dport"], 9);
  ASSERT_EQ(js["hooks"].size(), 2u);
  EXPECT_EQ(js["hooks"][1]["rel_ns"], 1000);
  EXPECT_EQ(js["hint"], out[0].hint);
}

TEST(Journey, IdentityIsInTheJsonWhenTheTraceHadIt) {
  Journeys plain;
  plain.skb(0x1000, {{"net_dev_queue"}, {"net_dev_xmit"}});
  EXPECT_FALSE(plain.result()[0].ident);
  EXPECT_FALSE(journey_json(plain.result()[0]).contains("ident"));

  Journeys j;
  j.with_ident(pwru_part_ident{0, 0, 0x5a5a5, 0x1234, 72});
  j.skb(0x2000, {{"net_dev_queue"}, {"net_dev_start_xmit"}, {"net_dev_xmit"}});
  const auto out = j.result();
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].ident);
  EXPECT_EQ(out[0].ident->ip_id, 0x1234);
  const nlohmann::json js = journey_json(out[0]);
  EXPECT_EQ(js["fate"], "transmitted");
  EXPECT_EQ(js["ident"],
            (nlohmann::json{{"ip_id", 0x1234}, {"seq", 0}, {"ack", 0}, {"flow_label", 0x5a5a5}, {"len", 72}}))
      << "UDP: no tcp_flags";
  // The existing fields stay.
  for (const char* key : {"skb", "tuple", "hooks", "fate", "where", "netns"}) EXPECT_TRUE(js.contains(key)) << key;
}

TEST(Journey, TcpIdentityCarriesTheFlags) {
  JourneyTracker tracker(DropHints::builtin(), std::make_shared<JourneyBudget>(1u << 20, "test", ""));
  pwru_event e{};
  e.skb_addr = 0x3000;
  e.tuple.l3_proto = PWRU_ETH_P_IP;
  e.tuple.l4_proto = PWRU_IPPROTO_TCP;
  e.tuple.tcp_flags = 0x18;
  e.parts = PWRU_PART_IDENT;
  e.ident = pwru_part_ident{1000, 2000, 0, 7, 1448};
  tracker.add(JourneyEvent{e, "net_dev_queue", "net_dev_queue", "", ""});
  // A later event's numbers (after a rewrite) do not replace the first.
  e.ident.seq = 99;
  tracker.add(JourneyEvent{e, "net_dev_xmit", "net_dev_xmit", "", ""});
  const nlohmann::json js = journey_json(tracker.journeys().at(0));
  EXPECT_EQ(js["ident"]["seq"], 1000);
  EXPECT_EQ(js["ident"]["ack"], 2000);
  EXPECT_EQ(js["ident"]["len"], 1448);
  EXPECT_EQ(js["ident"]["tcp_flags"], 0x18);
}

TEST(DropHints, BuiltinCatalogueKnowsTheCommonReasons) {
  const DropHints hints = DropHints::builtin();
  for (const char* reason : {"NETFILTER_DROP", "NO_SOCKET", "SKB_DROP_REASON_IP_RPFILTER", "QDISC_DROP", "NEIGH_FAILED",
                             "TCP_LISTEN_OVERFLOW", "SOCKET_RCVBUFF", "IP_OUTNOROUTES"})
    EXPECT_TRUE(hints.knows(reason)) << reason;
  EXPECT_GE(hints.size(), 50u);
}

TEST(DropHints, FillsEveryPlaceholder) {
  const DropHints hints = DropHints::parse(
      "default: 'x'\nreasons:\n  IP_RPFILTER: 'rp {iface} in {netns} by {function}: {reason} {other}'\n", "t");
  EXPECT_EQ(hints.hint(HintContext{"SKB_DROP_REASON_IP_RPFILTER", "fib_validate_source", "eth0:2", 7}),
            "rp eth0:2 in 7 by fib_validate_source: IP_RPFILTER {other}");
}

TEST(DropHints, BadCataloguesSayWhatToFix) {
  const auto message = [](const char* yaml) {
    try {
      DropHints::parse(yaml, "hints.yaml");
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message("reasons: {A: b}").find("needs a `default:`"), std::string::npos);
  EXPECT_NE(message("default: [1]").find("default must be a string"), std::string::npos);
  EXPECT_NE(message("default: x\nreasons: [1]").find("reasons must be a map"), std::string::npos);
  EXPECT_NE(message("default: x\nreasons: {A: {b: c}}").find("reasons.A must be a string"), std::string::npos);
  EXPECT_NE(message("default: x\nreason: {}").find("unknown key 'reason'"), std::string::npos);
  EXPECT_NE(message("default: [x").find("not valid YAML"), std::string::npos);
}

}  // namespace
}  // namespace pwru
