#include "metrics/skb_counter_collector.h"

#include <gtest/gtest.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fake_counter_source.h"

namespace pwru {
namespace {

constexpr std::uint32_t kHostNetns = 4026531840;
constexpr std::uint32_t kPodNetns = 4026532000;
constexpr std::uint32_t kOtherPodNetns = 4026532111;

// Function ranges in a made-up kernel: what Ksyms::nearest would answer.
constexpr std::uint64_t kUdpRcv = 0xffffffff81a00000;    // udp_queue_rcv_one_skb, 0x100 long
constexpr std::uint64_t kVethXmit = 0xffffffffc0a01000;  // veth_xmit [veth], 0x100 long

using FakeSource = testing::FakeCounterSource;

// Two pods; every other netns unknown (as with no Kubernetes), unless a
// test names it.
class FakeResolver final : public NetnsResolver {
 public:
  PodIdentity resolve(std::uint32_t inode) const override {
    std::lock_guard lock(mu_);
    auto it = known_.find(inode);
    return it == known_.end() ? PodIdentity{} : it->second;
  }
  void set(std::uint32_t inode, PodIdentity identity) {
    std::lock_guard lock(mu_);
    known_[inode] = std::move(identity);
  }

 private:
  mutable std::mutex mu_;
  std::map<std::uint32_t, PodIdentity> known_ = {
      {kPodNetns, {PodIdentity::Kind::kPod, "shop", "web-1"}},
      {kOtherPodNetns, {PodIdentity::Kind::kPod, "shop", "db-0"}},
  };
};

using Labels = std::map<std::string, std::string>;

struct Fixture {
  std::shared_ptr<FakeSource> source = std::make_shared<FakeSource>();
  std::shared_ptr<FakeResolver> resolver = std::make_shared<FakeResolver>();
  std::shared_ptr<std::map<std::uint64_t, int>> lookups = std::make_shared<std::map<std::uint64_t, int>>();
  std::unique_ptr<SkbCounterCollector> collector;

  explicit Fixture(std::size_t max_series = 10000, bool visit_pod_labels = true) {
    auto counted = lookups;
    auto function_of = [counted](std::uint64_t addr) -> std::string {
      ++(*counted)[addr];
      if (addr >= kUdpRcv && addr < kUdpRcv + 0x100) return "udp_queue_rcv_one_skb";
      if (addr >= kVethXmit && addr < kVethXmit + 0x100) return "veth_xmit [veth]";
      return "";
    };
    std::map<std::uint64_t, std::string> reasons = {
        {2, "SKB_DROP_REASON_NO_SOCKET"}, {6, "SKB_DROP_REASON_NETFILTER_DROP"}, {7, "OTHERHOST"}};
    collector = std::make_unique<SkbCounterCollector>(source, resolver, function_of, reasons,
                                                      std::vector<std::string>{"ip_rcv", "__netif_receive_skb_core"},
                                                      SkbCounterCollectorConfig{max_series, visit_pod_labels});
  }
};

const prometheus::MetricFamily& family(const std::vector<prometheus::MetricFamily>& fs, const std::string& name) {
  auto it = std::find_if(fs.begin(), fs.end(), [&](const auto& f) { return f.name == name; });
  if (it == fs.end()) throw std::runtime_error("no family " + name);
  return *it;
}

Labels labels_of(const prometheus::ClientMetric& m) {
  Labels l;
  for (const auto& label : m.label) l[label.name] = label.value;
  return l;
}

// Value of the series with exactly these labels; nullopt when absent.
std::optional<double> value(const std::vector<prometheus::MetricFamily>& fs, const std::string& name,
                            const Labels& want) {
  const auto& f = family(fs, name);
  std::optional<double> found;
  for (const auto& m : f.metric) {
    if (labels_of(m) != want) continue;
    if (found) throw std::runtime_error("duplicate series in " + name);
    found = f.type == prometheus::MetricType::Gauge ? m.gauge.value : m.counter.value;
  }
  return found;
}

// All series of a family, keyed by label set; also rejects duplicates.
std::map<Labels, double> series(const std::vector<prometheus::MetricFamily>& fs, const std::string& name) {
  std::map<Labels, double> out;
  for (const auto& m : family(fs, name).metric) {
    if (!out.emplace(labels_of(m), m.counter.value).second) throw std::runtime_error("duplicate series in " + name);
  }
  return out;
}

// A pod's series carry no netns label; an unknown netns's carry its inode.
std::string netns_label(const std::string& pod, std::uint32_t netns) {
  return pod.empty() ? std::to_string(netns) : std::string();
}

Labels drop(const std::string& function, const std::string& reason, const std::string& ns, const std::string& pod,
            std::uint32_t netns) {
  return {
      {"function", function}, {"reason", reason}, {"namespace", ns}, {"pod", pod}, {"netns", netns_label(pod, netns)}};
}

Labels visit(const std::string& function, const std::string& ns, const std::string& pod, std::uint32_t netns) {
  return {{"function", function}, {"namespace", ns}, {"pod", pod}, {"netns", netns_label(pod, netns)}};
}

const Labels kDropOverflow = {{"function", "__overflow__"},
                              {"reason", "__overflow__"},
                              {"namespace", "__overflow__"},
                              {"pod", "__overflow__"},
                              {"netns", "__overflow__"}};

constexpr const char* kReadFailures = "pwru_kernel_map_read_failures_total";

double folded(const std::vector<prometheus::MetricFamily>& fs, const std::string& metric) {
  return value(fs, "pwru_metrics_folded_keys", {{"metric", metric}}).value();
}

TEST(SkbCounterCollector, MapsKernelKeysToLabels) {
  Fixture fx;
  CounterSnapshot s;
  s.drops = {
      {kPodNetns, 2, kUdpRcv + 0x40, 3, 300},         // known reason, vmlinux function
      {kHostNetns, 6, kVethXmit + 0x10, 1, 60},       // module function: " [veth]" dropped
      {kHostNetns, 7, kUdpRcv + 0x8, 4, 40},          // name given without the prefix
      {kHostNetns, 123, 0xffffffff8badf00d, 5, 500},  // unknown reason, no symbol
  };
  s.visits = {{kOtherPodNetns, 1, 9, 900}, {kHostNetns, 7, 2, 200}};
  fx.source->set(s);
  const auto fs = fx.collector->Collect();

  EXPECT_EQ(series(fs, "pwru_skb_drops_total"),
            (std::map<Labels, double>{
                {drop("udp_queue_rcv_one_skb", "NO_SOCKET", "shop", "web-1", kPodNetns), 3},
                {drop("veth_xmit", "NETFILTER_DROP", "", "", kHostNetns), 1},
                {drop("udp_queue_rcv_one_skb", "OTHERHOST", "", "", kHostNetns), 4},
                {drop("0xffffffff8badf00d", "123", "", "", kHostNetns), 5},
            }));
  EXPECT_EQ(value(fs, "pwru_skb_drop_bytes_total", drop("0xffffffff8badf00d", "123", "", "", kHostNetns)), 500);
  EXPECT_EQ(series(fs, "pwru_skb_function_visits_total"),
            (std::map<Labels, double>{
                {visit("__netif_receive_skb_core", "shop", "db-0", kOtherPodNetns), 9},
                {visit("hook_7", "", "", kHostNetns), 2},
            }));
}

TEST(SkbCounterCollector, LabelsComeInDeclaredOrder) {
  Fixture fx;
  CounterSnapshot s;
  s.drops = {{kPodNetns, 2, kUdpRcv, 1, 1}};
  s.visits = {{kPodNetns, 0, 1, 1}};
  fx.source->set(s);
  const auto fs = fx.collector->Collect();
  auto names = [](const prometheus::ClientMetric& m) {
    std::vector<std::string> n;
    for (const auto& l : m.label) n.push_back(l.name);
    return n;
  };
  const std::vector<std::string> drop_order = {"function", "reason", "namespace", "pod", "netns"};
  EXPECT_EQ(names(family(fs, "pwru_skb_drops_total").metric.at(0)), drop_order);
  EXPECT_EQ(names(family(fs, "pwru_skb_drop_bytes_total").metric.at(0)), drop_order);
  EXPECT_EQ(names(family(fs, "pwru_skb_function_visits_total").metric.at(0)),
            (std::vector<std::string>{"function", "namespace", "pod", "netns"}));
}

TEST(SkbCounterCollector, SumsKernelKeysWithTheSameLabels) {
  Fixture fx;
  CounterSnapshot s;
  s.drops = {
      {kPodNetns, 2, kUdpRcv + 0x10, 3, 300},
      {kPodNetns, 2, kUdpRcv + 0x80, 4, 400},  // other call site, same function
      {kOtherPodNetns, 2, kUdpRcv + 0x10, 1, 100},
  };
  fx.source->set(s);
  const auto fs = fx.collector->Collect();
  const Labels web = drop("udp_queue_rcv_one_skb", "NO_SOCKET", "shop", "web-1", kPodNetns);
  EXPECT_EQ(series(fs, "pwru_skb_drops_total").size(), 2u);
  EXPECT_EQ(value(fs, "pwru_skb_drops_total", web), 7);
  EXPECT_EQ(value(fs, "pwru_skb_drop_bytes_total", web), 700);
  EXPECT_EQ(
      value(fs, "pwru_skb_drops_total", drop("udp_queue_rcv_one_skb", "NO_SOCKET", "shop", "db-0", kOtherPodNetns)), 1);
}

TEST(SkbCounterCollector, FoldsLabelSetsBeyondTheCap) {
  Fixture fx(2);
  CounterSnapshot s;
  // Three drop label sets (differing only in reason), two visit label sets:
  // the cap is per family.
  s.drops = {
      {kHostNetns, 2, kUdpRcv, 1, 10},
      {kHostNetns, 6, kUdpRcv, 2, 20},
      {kHostNetns, 7, kUdpRcv, 4, 40},
      {kHostNetns, 7, kUdpRcv + 1, 8, 80},  // same label set as the one above: one fold, not two
  };
  s.visits = {{kHostNetns, 0, 5, 50}, {kPodNetns, 0, 6, 60}};
  fx.source->set(s);
  const auto fs = fx.collector->Collect();

  const auto drops = series(fs, "pwru_skb_drops_total");
  EXPECT_EQ(drops.size(), 3u);  // two own series + overflow
  EXPECT_EQ(drops.at(drop("udp_queue_rcv_one_skb", "NETFILTER_DROP", "", "", kHostNetns)), 2);
  EXPECT_EQ(drops.at(drop("udp_queue_rcv_one_skb", "NO_SOCKET", "", "", kHostNetns)), 1);
  EXPECT_EQ(drops.at(kDropOverflow), 12);
  EXPECT_EQ(value(fs, "pwru_skb_drop_bytes_total", kDropOverflow), 120);
  EXPECT_EQ(folded(fs, "pwru_skb_drops_total"), 1);
  EXPECT_EQ(folded(fs, "pwru_skb_drop_bytes_total"), 1);

  EXPECT_EQ(series(fs, "pwru_skb_function_visits_total").size(), 2u);
  EXPECT_EQ(folded(fs, "pwru_skb_function_visits_total"), 0);

  // A third visit label set folds into the visits' own overflow series.
  s.visits.push_back({kOtherPodNetns, 1, 7, 70});
  fx.source->set(s);
  const auto fs2 = fx.collector->Collect();
  EXPECT_EQ(value(fs2, "pwru_skb_function_visits_total",
                  {{"function", "__overflow__"},
                   {"namespace", "__overflow__"},
                   {"pod", "__overflow__"},
                   {"netns", "__overflow__"}}),
            7);
  EXPECT_EQ(folded(fs2, "pwru_skb_function_visits_total"), 1);
}

TEST(SkbCounterCollector, SeriesAssignmentIsSticky) {
  Fixture fx(2);
  const Labels a = drop("udp_queue_rcv_one_skb", "NETFILTER_DROP", "", "", kHostNetns);
  const Labels b = drop("udp_queue_rcv_one_skb", "NO_SOCKET", "", "", kHostNetns);
  const Labels c = drop("udp_queue_rcv_one_skb", "OTHERHOST", "", "", kHostNetns);

  // c sorts last, so only coming first gets it a series of its own.
  CounterSnapshot s;
  s.drops = {{kHostNetns, 7, kUdpRcv, 1, 1}};
  fx.source->set(s);
  EXPECT_EQ(value(fx.collector->Collect(), "pwru_skb_drops_total", c), 1);

  s.drops = {{kHostNetns, 7, kUdpRcv, 2, 2}, {kHostNetns, 6, kUdpRcv, 3, 3}, {kHostNetns, 2, kUdpRcv, 4, 4}};
  fx.source->set(s);
  auto fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_drops_total"), (std::map<Labels, double>{{c, 2}, {a, 3}, {kDropOverflow, 4}}));

  // Reordered, and the folded label set now the largest: it stays folded.
  s.drops = {{kHostNetns, 2, kUdpRcv, 100, 100}, {kHostNetns, 6, kUdpRcv, 3, 3}, {kHostNetns, 7, kUdpRcv, 2, 2}};
  fx.source->set(s);
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_drops_total"), (std::map<Labels, double>{{c, 2}, {a, 3}, {kDropOverflow, 100}}));
  EXPECT_EQ(value(fs, "pwru_skb_drops_total", b), std::nullopt);

  // The kernel stops reporting c (its netns's counters were erased): its
  // slot is free, but b, folded once, stays folded.
  s.drops = {{kHostNetns, 2, kUdpRcv, 101, 101}, {kHostNetns, 6, kUdpRcv, 3, 3}};
  fx.source->set(s);
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_drops_total"), (std::map<Labels, double>{{a, 3}, {kDropOverflow, 101}}));

  // A new label set takes the freed slot.
  const Labels d = drop("0x1234", "123", "", "", kHostNetns);
  s.drops.push_back({kHostNetns, 123, 0x1234, 1, 1});
  fx.source->set(s);
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_drops_total"), (std::map<Labels, double>{{a, 3}, {d, 1}, {kDropOverflow, 101}}));

  // b goes too: the overflow series keeps its count (it must not go down).
  s.drops = {{kHostNetns, 6, kUdpRcv, 3, 3}, {kHostNetns, 123, 0x1234, 1, 1}};
  fx.source->set(s);
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_drops_total"), (std::map<Labels, double>{{a, 3}, {d, 1}, {kDropOverflow, 101}}));
  EXPECT_EQ(folded(fs, "pwru_skb_drops_total"), 0);
}

TEST(SkbCounterCollector, HostTrafficHasNoNetnsLabelAndGonePodsNoSeries) {
  Fixture fx;
  fx.resolver->set(kHostNetns, {PodIdentity::Kind::kHost, "", ""});
  CounterSnapshot s;
  s.drops = {{kHostNetns, 2, kUdpRcv, 1, 10}, {kPodNetns, 2, kUdpRcv, 2, 20}, {4026539999u, 2, kUdpRcv, 3, 30}};
  s.visits = {{kHostNetns, 0, 4, 40}, {kPodNetns, 0, 5, 50}};
  fx.source->set(s);
  auto fs = fx.collector->Collect();
  const Labels host = {
      {"function", "udp_queue_rcv_one_skb"}, {"reason", "NO_SOCKET"}, {"namespace", ""}, {"pod", ""}, {"netns", ""}};
  EXPECT_EQ(series(fs, "pwru_skb_drops_total"),
            (std::map<Labels, double>{{host, 1},
                                      {drop("udp_queue_rcv_one_skb", "NO_SOCKET", "shop", "web-1", kPodNetns), 2},
                                      {drop("udp_queue_rcv_one_skb", "NO_SOCKET", "", "", 4026539999u), 3}}));
  EXPECT_EQ(value(fs, "pwru_skb_function_visits_total",
                  {{"function", "ip_rcv"}, {"namespace", ""}, {"pod", ""}, {"netns", ""}}),
            4);

  // web-1 is deleted and its grace is over: its series go, nothing folds.
  fx.resolver->set(kPodNetns, {PodIdentity::Kind::kGone, "", ""});
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_drops_total").size(), 2u);
  EXPECT_EQ(value(fs, "pwru_skb_drops_total", drop("udp_queue_rcv_one_skb", "NO_SOCKET", "shop", "web-1", kPodNetns)),
            std::nullopt);
  EXPECT_EQ(series(fs, "pwru_skb_function_visits_total").size(), 1u);
  EXPECT_EQ(folded(fs, "pwru_skb_drops_total"), 0);
}

TEST(SkbCounterCollector, NoDeviceNorSocketIsNetnsNoneNotAnInode) {
  Fixture fx;
  // Whatever a resolver says about 0, it is no namespace.
  fx.resolver->set(0, {PodIdentity::Kind::kHost, "", ""});
  CounterSnapshot s;
  s.drops = {{0, 2, kUdpRcv, 3, 30}, {kHostNetns, 2, kUdpRcv, 1, 10}};
  s.visits = {{0, 0, 4, 40}};
  fx.source->set(s);
  const auto fs = fx.collector->Collect();
  const Labels none = {{"function", "udp_queue_rcv_one_skb"},
                       {"reason", "NO_SOCKET"},
                       {"namespace", ""},
                       {"pod", ""},
                       {"netns", "none"}};
  EXPECT_EQ(series(fs, "pwru_skb_drops_total"),
            (std::map<Labels, double>{{none, 3}, {drop("udp_queue_rcv_one_skb", "NO_SOCKET", "", "", kHostNetns), 1}}));
  EXPECT_EQ(value(fs, "pwru_skb_drop_bytes_total", none), 30);
  EXPECT_EQ(
      series(fs, "pwru_skb_function_visits_total"),
      (std::map<Labels, double>{{{{"function", "ip_rcv"}, {"namespace", ""}, {"pod", ""}, {"netns", "none"}}, 4}}));
  const std::string text = prometheus::TextSerializer().Serialize(fs);
  EXPECT_EQ(text.find("netns=\"0\""), std::string::npos) << text;
}

Labels node_visit(const std::string& function) {
  return {{"function", function}, {"namespace", ""}, {"pod", ""}, {"netns", "all"}};
}

TEST(SkbCounterCollector, WithoutVisitPodLabelsVisitsAreNodeTotalsAndDropsKeepPods) {
  Fixture fx(10000, false);
  fx.resolver->set(kHostNetns, {PodIdentity::Kind::kHost, "", ""});
  CounterSnapshot s;
  s.drops = {{kPodNetns, 2, kUdpRcv, 2, 20}, {4026539999u, 2, kUdpRcv, 3, 30}};
  s.visits = {{kHostNetns, 0, 4, 40}, {kPodNetns, 0, 5, 50}, {kOtherPodNetns, 0, 6, 60},
              {kPodNetns, 1, 7, 70},  {0, 1, 1, 10},         {4026539999u, 1, 2, 20}};
  fx.source->set(s);
  auto fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_function_visits_total"),
            (std::map<Labels, double>{{node_visit("ip_rcv"), 15}, {node_visit("__netif_receive_skb_core"), 10}}));
  EXPECT_EQ(series(fs, "pwru_skb_drops_total"),
            (std::map<Labels, double>{{drop("udp_queue_rcv_one_skb", "NO_SOCKET", "shop", "web-1", kPodNetns), 2},
                                      {drop("udp_queue_rcv_one_skb", "NO_SOCKET", "", "", 4026539999u), 3}}));
  const std::string text = prometheus::TextSerializer().Serialize(fs);
  EXPECT_NE(text.find("pwru_skb_function_visits_total{function=\"ip_rcv\",namespace=\"\",pod=\"\",netns=\"all\"} 15\n"),
            std::string::npos)
      << text;

  // web-1 is gone: its drops go, its visits stay in the node's totals.
  fx.resolver->set(kPodNetns, {PodIdentity::Kind::kGone, "", ""});
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_function_visits_total"),
            (std::map<Labels, double>{{node_visit("ip_rcv"), 15}, {node_visit("__netif_receive_skb_core"), 10}}));
  EXPECT_EQ(series(fs, "pwru_skb_drops_total").size(), 1u);
}

TEST(SkbCounterCollector, NodeVisitTotalsKeepWhatErasedKernelKeysCounted) {
  Fixture fx(10000, false);
  CounterSnapshot s;
  s.visits = {{kPodNetns, 0, 5, 50}, {kOtherPodNetns, 0, 6, 60}};
  fx.source->set(s);
  EXPECT_EQ(value(fx.collector->Collect(), "pwru_skb_function_visits_total", node_visit("ip_rcv")), 11);

  // web-1's keys are erased, all but a per-CPU cache slot holding 1 of its
  // 5; db-0 goes on counting.
  s.visits = {{kPodNetns, 0, 1, 10}, {kOtherPodNetns, 0, 8, 80}};
  fx.source->set(s);
  EXPECT_EQ(value(fx.collector->Collect(), "pwru_skb_function_visits_total", node_visit("ip_rcv")), 5 + 8);

  // The rest of web-1's and all of db-0's go too.
  s.visits = {};
  fx.source->set(s);
  auto fs = fx.collector->Collect();
  EXPECT_EQ(value(fs, "pwru_skb_function_visits_total", node_visit("ip_rcv")), 13);

  // A new pod's netns (even an inode the kernel hands out again) adds on.
  s.visits = {{kPodNetns, 0, 2, 20}};
  fx.source->set(s);
  EXPECT_EQ(value(fx.collector->Collect(), "pwru_skb_function_visits_total", node_visit("ip_rcv")), 15);
}

TEST(SkbCounterCollector, NodeVisitTotalsAreCappedLikeAnyFamily) {
  Fixture fx(1, false);
  CounterSnapshot s;
  s.visits = {{kPodNetns, 0, 5, 50}, {kOtherPodNetns, 1, 6, 60}, {kHostNetns, 1, 1, 10}};
  fx.source->set(s);
  const auto fs = fx.collector->Collect();
  // "__netif_receive_skb_core" sorts before "ip_rcv": it gets the one series.
  EXPECT_EQ(series(fs, "pwru_skb_function_visits_total"),
            (std::map<Labels, double>{{node_visit("__netif_receive_skb_core"), 7},
                                      {{{"function", "__overflow__"},
                                        {"namespace", "__overflow__"},
                                        {"pod", "__overflow__"},
                                        {"netns", "__overflow__"}},
                                       5}}));
  EXPECT_EQ(folded(fs, "pwru_skb_function_visits_total"), 1);
}

void expect_every_series_monotonic(bool visit_pod_labels) {
  Fixture fx(2, visit_pod_labels);
  const std::vector<CounterSnapshot> scrapes = {
      {{{kHostNetns, 2, kUdpRcv, 1, 10}}, {{kHostNetns, 0, 1, 10}}, 0, 0},
      {{{kHostNetns, 2, kUdpRcv, 2, 20}, {kPodNetns, 2, kUdpRcv, 1, 10}, {kOtherPodNetns, 2, kUdpRcv, 5, 50}},
       {{kHostNetns, 0, 3, 30}, {kPodNetns, 1, 1, 10}, {kOtherPodNetns, 1, 2, 20}},
       1,
       2},
      {{{kOtherPodNetns, 2, kUdpRcv, 6, 60},
        {kPodNetns, 2, kUdpRcv, 1, 10},
        {kHostNetns, 2, kUdpRcv, 2, 20},
        {kHostNetns, 2, kUdpRcv + 4, 3, 30},
        {kPodNetns, 6, kVethXmit, 9, 90}},
       {{kOtherPodNetns, 1, 4, 40}, {kPodNetns, 1, 1, 10}, {kHostNetns, 0, 3, 30}, {kHostNetns, 1, 8, 80}},
       4,
       2},
  };
  const char* counters[] = {"pwru_skb_drops_total", "pwru_skb_drop_bytes_total", "pwru_skb_function_visits_total",
                            "pwru_skb_uncounted_packets_total"};
  std::map<std::string, std::map<Labels, double>> previous;
  for (std::size_t i = 0; i < scrapes.size(); ++i) {
    fx.source->set(scrapes[i]);
    const auto fs = fx.collector->Collect();
    for (const char* name : counters) {
      const auto now = series(fs, name);
      for (const auto& [labels, before] : previous[name]) {
        auto it = now.find(labels);
        ASSERT_NE(it, now.end()) << name << " lost a series in scrape " << i;
        EXPECT_GE(it->second, before) << name << " went down in scrape " << i;
      }
      previous[name] = now;
    }
  }
  // web-1 lost the race for the last slot to db-0 (sorted first) in scrape
  // 2; scrape 3 adds a new label set to the same overflow series.
  EXPECT_EQ(previous["pwru_skb_drops_total"].at(kDropOverflow), 1 + 9);
  EXPECT_EQ(previous["pwru_skb_drops_total"].at(drop("udp_queue_rcv_one_skb", "NO_SOCKET", "", "", kHostNetns)), 5);
}

TEST(SkbCounterCollector, EverySeriesIsMonotonicAcrossScrapes) {
  {
    SCOPED_TRACE("visit_pod_labels: true");
    expect_every_series_monotonic(true);
  }
  SCOPED_TRACE("visit_pod_labels: false");
  expect_every_series_monotonic(false);
}

TEST(SkbCounterCollector, OverflowAndFoldedSeriesAlwaysPresent) {
  Fixture fx;
  auto fs = fx.collector->Collect();  // nothing counted yet
  EXPECT_TRUE(family(fs, "pwru_skb_drops_total").metric.empty());
  EXPECT_EQ(series(fs, "pwru_skb_uncounted_packets_total"),
            (std::map<Labels, double>{{{{"map", "drops"}}, 0}, {{{"map", "visits"}}, 0}}));
  const auto& f = family(fs, "pwru_metrics_folded_keys");
  EXPECT_EQ(f.type, prometheus::MetricType::Gauge);
  EXPECT_EQ(f.metric.size(), 3u);
  EXPECT_EQ(folded(fs, "pwru_skb_drops_total"), 0);
  EXPECT_EQ(folded(fs, "pwru_skb_drop_bytes_total"), 0);
  EXPECT_EQ(folded(fs, "pwru_skb_function_visits_total"), 0);

  CounterSnapshot s;
  s.drops_overflow_packets = 17;
  s.visits_overflow_packets = 4;
  fx.source->set(s);
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, "pwru_skb_uncounted_packets_total"),
            (std::map<Labels, double>{{{{"map", "drops"}}, 17}, {{{"map", "visits"}}, 4}}));
  // Trace losses are the agent's (TraceService), not the counting probes'.
  EXPECT_THROW(family(fs, "pwru_events_lost_total"), std::exception);
}

TEST(SkbCounterCollector, FailedCounterLookupsAreCountedAndNeverLookLikeAReset) {
  Fixture fx;
  CounterSnapshot s;
  s.drops_overflow_packets = 17;
  s.visits_overflow_packets = 4;
  fx.source->set(s);
  auto fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, kReadFailures), (std::map<Labels, double>{{{}, 0}}));
  EXPECT_EQ(family(fs, kReadFailures).type, prometheus::MetricType::Counter);

  // Both lookups fail: the kernel's values read 0.
  CounterSnapshot failed;
  failed.failed_counter_lookups = 2;
  failed.failed_lookup_errno = EPERM;
  fx.source->set(failed);
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, kReadFailures), (std::map<Labels, double>{{{}, 2}}));
  EXPECT_EQ(series(fs, "pwru_skb_uncounted_packets_total"),
            (std::map<Labels, double>{{{{"map", "drops"}}, 17}, {{{"map", "visits"}}, 4}}));
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, kReadFailures), (std::map<Labels, double>{{{}, 4}}));

  s.drops_overflow_packets = 20;
  fx.source->set(s);
  fs = fx.collector->Collect();
  EXPECT_EQ(series(fs, kReadFailures), (std::map<Labels, double>{{{}, 4}}));
  EXPECT_EQ(series(fs, "pwru_skb_uncounted_packets_total"),
            (std::map<Labels, double>{{{{"map", "drops"}}, 20}, {{{"map", "visits"}}, 4}}));
}

TEST(SkbCounterCollector, LooksUpEachLocationOnce) {
  Fixture fx;
  CounterSnapshot s;
  s.drops = {{kHostNetns, 2, kUdpRcv + 1, 1, 1}, {kPodNetns, 2, kUdpRcv + 1, 1, 1}, {kHostNetns, 2, 0x1234, 1, 1}};
  fx.source->set(s);
  for (int i = 0; i < 3; ++i) fx.collector->Collect();
  EXPECT_EQ(*fx.lookups, (std::map<std::uint64_t, int>{{kUdpRcv + 1, 1}, {0x1234, 1}}));
}

TEST(SkbCounterCollector, ConcurrentScrapesAgree) {
  Fixture fx(3);
  CounterSnapshot s;
  for (std::uint32_t r = 0; r < 10; ++r) s.drops.push_back({kHostNetns, r, kUdpRcv, r + 1, r + 1});
  for (std::uint16_t h = 0; h < 10; ++h) s.visits.push_back({kPodNetns, h, 1, 1});
  fx.source->set(s);
  std::vector<std::vector<prometheus::MetricFamily>> results(8);
  {
    std::vector<std::jthread> threads;
    for (auto& r : results) {
      threads.emplace_back([&fx, &r] {
        for (int i = 0; i < 50; ++i) r = fx.collector->Collect();
      });
    }
  }
  const prometheus::TextSerializer text;
  const std::string first = text.Serialize(results[0]);
  for (const auto& r : results) EXPECT_EQ(text.Serialize(r), first);
  EXPECT_EQ(series(results[0], "pwru_skb_drops_total").size(), 4u);
  EXPECT_EQ(folded(results[0], "pwru_skb_drops_total"), 7);
  EXPECT_EQ(folded(results[0], "pwru_skb_function_visits_total"), 7);
}

TEST(SkbCounterCollector, RendersAsPrometheusText) {
  Fixture fx(1);
  CounterSnapshot s;
  s.drops = {{kHostNetns, 2, kUdpRcv, 3, 180}, {kPodNetns, 2, kVethXmit, 2, 120}};
  s.visits = {{kPodNetns, 0, 5, 500}};
  s.visits_overflow_packets = 9;
  fx.source->set(s);
  const std::string text = prometheus::TextSerializer().Serialize(fx.collector->Collect());

  for (const char* line : {
           "# TYPE pwru_skb_drops_total counter\n",
           "pwru_skb_drops_total{function=\"udp_queue_rcv_one_skb\",reason=\"NO_SOCKET\",namespace=\"\",pod=\"\","
           "netns=\"4026531840\"} 3\n",
           "pwru_skb_drops_total{function=\"__overflow__\",reason=\"__overflow__\",namespace=\"__overflow__\","
           "pod=\"__overflow__\",netns=\"__overflow__\"} 2\n",
           "pwru_skb_drop_bytes_total{function=\"udp_queue_rcv_one_skb\",reason=\"NO_SOCKET\",namespace=\"\","
           "pod=\"\",netns=\"4026531840\"} 180\n",
           "pwru_skb_function_visits_total{function=\"ip_rcv\",namespace=\"shop\",pod=\"web-1\","
           "netns=\"\"} 5\n",
           "pwru_skb_uncounted_packets_total{map=\"drops\"} 0\n",
           "pwru_skb_uncounted_packets_total{map=\"visits\"} 9\n",
           "# TYPE pwru_metrics_folded_keys gauge\n",
           "pwru_metrics_folded_keys{metric=\"pwru_skb_drops_total\"} 1\n",
           "pwru_metrics_folded_keys{metric=\"pwru_skb_function_visits_total\"} 0\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "in:\n" << text;
  }
  for (const char* name : {"pwru_skb_drops_total", "pwru_skb_drop_bytes_total", "pwru_skb_function_visits_total",
                           "pwru_skb_uncounted_packets_total", "pwru_metrics_folded_keys", kReadFailures}) {
    const std::string help = std::string("# HELP ") + name + " ";
    const auto at = text.find(help);
    ASSERT_NE(at, std::string::npos) << name;
    EXPECT_GT(text.find('\n', at), at + help.size() + 20) << "HELP of " << name << " says too little";
  }
}

}  // namespace
}  // namespace pwru
