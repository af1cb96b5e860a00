#include "metrics/skb_counter_collector.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace pwru {
namespace {

constexpr const char* kDropsName = "pwru_skb_drops_total";
constexpr const char* kDropBytesName = "pwru_skb_drop_bytes_total";
constexpr const char* kVisitsName = "pwru_skb_function_visits_total";
constexpr const char* kOverflowName = "pwru_skb_uncounted_packets_total";
constexpr const char* kFoldedName = "pwru_metrics_folded_keys";
constexpr const char* kReadFailuresName = "pwru_kernel_map_read_failures_total";
constexpr const char* kOverflowLabel = "__overflow__";
// netns label values that are not inodes. No namespace has inode 0 (they
// sit near 0xF0000000), so the BPF side's 0 means it found no namespace.
constexpr const char* kNoNetnsLabel = "none";
constexpr const char* kAllNetnsLabel = "all";

constexpr const char* kDropsHelp =
    "Packets the kernel dropped (kfree_skb with a drop reason). function: the kernel function that freed the skb "
    "(from kfree_skb's location); reason: enum skb_drop_reason without SKB_DROP_REASON_; namespace/pod: the "
    "Kubernetes pod whose network namespace the skb was in; netns: that namespace's inode when no pod (and not "
    "the host) could be named, \"none\" when the skb had neither a device nor a socket to tell its namespace "
    "by, else empty. All three empty: the host. Label sets beyond the series cap are summed into the series "
    "whose labels are all __overflow__.";
constexpr const char* kDropBytesHelp =
    "Bytes (skb->len) of the packets counted in pwru_skb_drops_total, with the same labels and the same "
    "__overflow__ series.";
constexpr const char* kVisitsHelp =
    "Packets (skbs) that reached a traced kernel function. function: the traced function; namespace, pod, "
    "netns: as in pwru_skb_drops_total, or, with metrics.visit_pod_labels false, empty, empty and \"all\": "
    "one series per function summed over every network namespace. Label sets beyond the series cap are summed "
    "into the series whose labels are all __overflow__.";
constexpr const char* kOverflowHelp =
    "Packets the kernel could not count because its counter map (map=drops or map=visits) was full: they are "
    "missing from the pwru_skb_* counters. Raise the map size if this grows.";
constexpr const char* kFoldedHelp =
    "Distinct label sets of a metric (in this scrape) that did not get their own series because the metric "
    "reached its series cap (max_series), and were summed into its __overflow__ series.";
constexpr const char* kReadFailuresHelp =
    "Lookups of the kernel's per-CPU counters (those behind pwru_skb_uncounted_packets_total) that failed "
    "during scrapes; the agent's log says why, with the errno. While they fail, "
    "pwru_skb_uncounted_packets_total keeps its last value.";

// A failing counter lookup is logged at most this often: scrapes come every
// few seconds, and the count is in pwru_kernel_map_read_failures_total anyway.
constexpr auto kReadFailureLogEvery = std::chrono::minutes(10);

// Kernel addresses are never re-symbolized (kallsyms only changes on module
// load/unload, and a stale name then is no worse than a scrape-old one); the
// bound only guards against a kernel that keeps producing new locations.
constexpr std::size_t kMaxCachedLocations = 65536;

constexpr std::array<const char*, 5> kDropLabelNames = {"function", "reason", "namespace", "pod", "netns"};
constexpr std::array<const char*, 4> kVisitLabelNames = {"function", "namespace", "pod", "netns"};

template <std::size_t N>
using LabelValues = std::array<std::string, N>;

struct Sum {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  void add(std::uint64_t p, std::uint64_t b) {
    packets += p;
    bytes += b;
  }
};

// Label sets in one family that own a series. A label set never moves between
// its own series and the overflow series (in either direction): the counter
// it left would lose its count and go down, which Prometheus reads as a reset.
// A label set the kernel no longer reports (its pod is gone and its counters
// erased) frees its slot; what it had added to the overflow series stays
// there, so that series only grows.
template <std::size_t N>
struct StickyCap {
  std::set<LabelValues<N>> owned;
  std::map<LabelValues<N>, Sum> folded_last;  // bounded by the kernel maps' sizes
  Sum folded_retired;                         // last counts of folded label sets that went away
};

template <std::size_t N>
struct CappedSeries {
  std::map<LabelValues<N>, Sum> own;
  Sum overflow;
  std::size_t folded = 0;  // distinct label sets summed into `overflow` now
  bool has_overflow = false;
};

// `sums` is ordered, so when one scrape brings more new label sets than free
// slots, which ones get them does not depend on the kernel map's hash order.
template <std::size_t N>
CappedSeries<N> apply_cap(std::map<LabelValues<N>, Sum> sums, StickyCap<N>& cap, std::size_t max_series) {
  for (auto it = cap.owned.begin(); it != cap.owned.end();) it = sums.count(*it) ? std::next(it) : cap.owned.erase(it);
  for (auto it = cap.folded_last.begin(); it != cap.folded_last.end();) {
    if (sums.count(it->first)) {
      ++it;
      continue;
    }
    cap.folded_retired.add(it->second.packets, it->second.bytes);
    it = cap.folded_last.erase(it);
  }
  CappedSeries<N> out;
  out.overflow = cap.folded_retired;
  for (auto& [labels, sum] : sums) {
    bool own = cap.owned.count(labels) != 0;
    if (!own && cap.folded_last.count(labels) == 0 && cap.owned.size() < max_series) {
      cap.owned.insert(labels);
      own = true;
    }
    if (own) {
      out.own.emplace(labels, sum);
    } else {
      out.overflow.add(sum.packets, sum.bytes);
      cap.folded_last[labels] = sum;
      ++out.folded;
    }
  }
  out.has_overflow = out.folded != 0 || cap.folded_retired.packets != 0 || cap.folded_retired.bytes != 0;
  return out;
}

template <std::size_t N>
prometheus::ClientMetric make_metric(const std::array<const char*, N>& names, const LabelValues<N>& values) {
  prometheus::ClientMetric m;
  m.label.reserve(N);
  for (std::size_t i = 0; i < N; ++i) m.label.push_back({names[i], values[i]});
  return m;
}

template <std::size_t N>
LabelValues<N> overflow_labels() {
  LabelValues<N> v;
  v.fill(kOverflowLabel);
  return v;
}

// Appends one counter series per owned label set plus the overflow series
// (only once something folded, so an uncapped agent shows no phantom series;
// then for good, so it never vanishes mid-life).
template <std::size_t N, typename Value>
void add_counters(prometheus::MetricFamily& family, const std::array<const char*, N>& names,
                  const CappedSeries<N>& series, Value value) {
  for (const auto& [labels, sum] : series.own) {
    auto m = make_metric(names, labels);
    m.counter.value = static_cast<double>(value(sum));
    family.metric.push_back(std::move(m));
  }
  if (series.has_overflow) {
    auto m = make_metric(names, overflow_labels<N>());
    m.counter.value = static_cast<double>(value(series.overflow));
    family.metric.push_back(std::move(m));
  }
}

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

std::string strip_module(std::string name) {
  // Ksyms::nearest appends " [module]" for module symbols; the label keeps the
  // bare function so a series survives the module being built in or not.
  if (!name.empty() && name.back() == ']') {
    const auto open = name.rfind(" [");
    if (open != std::string::npos) name.erase(open);
  }
  return name;
}

// A pod's series are named by namespace/pod alone, so they survive the pod
// being recreated in a new netns (a StatefulSet's web-0); the host's carry
// no netns either. Only a netns nobody could name keeps its inode.
std::string netns_label(const PodIdentity& pod, std::uint32_t netns) {
  if (netns == 0) return kNoNetnsLabel;
  return pod.kind == PodIdentity::Kind::kUnknown ? std::to_string(netns) : std::string();
}

// Node-wide visit totals (visit_pod_labels false). The kernel keys stay per
// netns, and a gone pod's keys are erased from the map: a total that simply
// summed the keys it reads would go down then, which Prometheus takes for a
// counter reset. What a key loses between two reads is kept per function.
struct VisitTotals {
  std::map<std::pair<std::uint32_t, std::uint16_t>, Sum> last;  // bounded by the kernel map's size
  std::map<std::uint16_t, Sum> erased;                          // by hook: bounded by the hooks
};

using PodsByNetns = std::unordered_map<std::uint32_t, PodIdentity>;

// The packets the kernel could not count, as the series show them.
struct Uncounted {
  std::uint64_t drops = 0;
  std::uint64_t visits = 0;
};

template <std::size_t N, typename Value>
prometheus::MetricFamily counter_family(const char* name, const char* help, const std::array<const char*, N>& labels,
                                        const CappedSeries<N>& series, Value value) {
  prometheus::MetricFamily f = family(name, help, prometheus::MetricType::Counter);
  add_counters(f, labels, series, value);
  return f;
}

prometheus::MetricFamily uncounted_family(const Uncounted& uncounted) {
  prometheus::MetricFamily f = family(kOverflowName, kOverflowHelp, prometheus::MetricType::Counter);
  for (auto [map, value] : {std::pair{"drops", uncounted.drops}, std::pair{"visits", uncounted.visits}}) {
    prometheus::ClientMetric m;
    m.label.push_back({"map", map});
    m.counter.value = static_cast<double>(value);
    f.metric.push_back(std::move(m));
  }
  return f;
}

prometheus::MetricFamily folded_family(const CappedSeries<5>& drops, const CappedSeries<4>& visits) {
  prometheus::MetricFamily f = family(kFoldedName, kFoldedHelp, prometheus::MetricType::Gauge);
  for (auto [metric, folded] : {std::pair{kDropsName, drops.folded}, std::pair{kDropBytesName, drops.folded},
                                std::pair{kVisitsName, visits.folded}}) {
    prometheus::ClientMetric m;
    m.label.push_back({"metric", metric});
    m.gauge.value = static_cast<double>(folded);
    f.metric.push_back(std::move(m));
  }
  return f;
}

prometheus::MetricFamily read_failures_family(std::uint64_t failures) {
  prometheus::MetricFamily f = family(kReadFailuresName, kReadFailuresHelp, prometheus::MetricType::Counter);
  prometheus::ClientMetric m;
  m.counter.value = static_cast<double>(failures);
  f.metric.push_back(std::move(m));
  return f;
}

}  // namespace

struct SkbCounterCollector::Impl {
  std::shared_ptr<const CounterSource> source;
  std::shared_ptr<const NetnsResolver> resolver;
  std::function<std::string(std::uint64_t)> function_of;
  std::map<std::uint64_t, std::string> reason_names;  // prefix already stripped
  std::vector<std::string> hook_names;
  SkbCounterCollectorConfig config;

  // Scrapes run on the HTTP server's threads, possibly several at once.
  mutable std::mutex mu;
  mutable std::unordered_map<std::uint64_t, std::string> function_cache;
  mutable StickyCap<5> drop_cap;  // shared by drops and drop bytes: same label sets
  mutable StickyCap<4> visit_cap;
  mutable VisitTotals visit_totals;
  mutable Uncounted uncounted;
  mutable std::uint64_t read_failures = 0;
  mutable std::uint64_t read_failures_logged = 0;
  mutable std::chrono::steady_clock::time_point next_failure_log{};

  // Caller holds mu.
  const std::string& function_label(std::uint64_t location) const {
    if (auto it = function_cache.find(location); it != function_cache.end()) return it->second;
    if (function_cache.size() >= kMaxCachedLocations) function_cache.clear();
    std::string name = function_of ? strip_module(function_of(location)) : std::string();
    if (name.empty()) name = fmt::format("{:#x}", location);
    return function_cache.emplace(location, std::move(name)).first->second;
  }

  std::string reason_label(std::uint32_t reason) const {
    if (auto it = reason_names.find(reason); it != reason_names.end()) return it->second;
    // A reason newer than the kernel BTF we read (or no BTF): the number still
    // identifies it in `enum skb_drop_reason` of that kernel.
    return std::to_string(reason);
  }

  std::string hook_label(std::uint16_t hook_id) const {
    if (hook_id < hook_names.size()) return hook_names[hook_id];
    return "hook_" + std::to_string(hook_id);
  }

  // Who each netns of the snapshot belongs to, each asked once.
  PodsByNetns resolve_pods(const CounterSnapshot& snap) const {
    PodsByNetns pods;
    auto resolve = [&](std::uint32_t netns) {
      if (!pods.count(netns)) pods.emplace(netns, netns == 0 ? PodIdentity{} : resolver->resolve(netns));
    };
    for (const auto& d : snap.drops) resolve(d.netns);
    if (config.visit_pod_labels)
      for (const auto& v : snap.visits) resolve(v.netns);
    return pods;
  }

  // Several kernel keys (two locations in one function, a reason and the
  // same reason under another name) land on one label set: their sum is the
  // series, which stays monotonic because every addend is.
  std::map<LabelValues<5>, Sum> drop_sums(const CounterSnapshot& snap, const PodsByNetns& pods) const {
    std::map<LabelValues<5>, Sum> sums;
    for (const auto& d : snap.drops) {
      const PodIdentity& pod = pods.at(d.netns);
      if (pod.kind == PodIdentity::Kind::kGone) continue;
      sums[{function_label(d.location), reason_label(d.reason), pod.namespace_name, pod.pod, netns_label(pod, d.netns)}]
          .add(d.packets, d.bytes);
    }
    return sums;
  }

  std::map<LabelValues<4>, Sum> pod_visit_sums(const CounterSnapshot& snap, const PodsByNetns& pods) const {
    std::map<LabelValues<4>, Sum> sums;
    for (const auto& v : snap.visits) {
      const PodIdentity& pod = pods.at(v.netns);
      if (pod.kind == PodIdentity::Kind::kGone) continue;
      sums[{hook_label(v.hook_id), pod.namespace_name, pod.pod, netns_label(pod, v.netns)}].add(v.packets, v.bytes);
    }
    return sums;
  }

  // Gone pods' visits stay in: they happened on this node. namespace and
  // pod are empty rather than absent, so that a scrape honoring the
  // exported labels does not fill them in with the agent's own pod.
  std::map<LabelValues<4>, Sum> node_visit_sums(const CounterSnapshot& snap) const {
    VisitTotals& totals = visit_totals;
    std::map<std::pair<std::uint32_t, std::uint16_t>, Sum> now;
    for (const auto& v : snap.visits) now[{v.netns, v.hook_id}].add(v.packets, v.bytes);
    for (const auto& [key, before] : totals.last) {
      const auto it = now.find(key);
      const Sum after = it == now.end() ? Sum{} : it->second;
      // A key's erased entry and freed slots can go in different reads
      // (and a slot on an offline CPU stays): count only what went.
      totals.erased[key.second].add(before.packets - std::min(before.packets, after.packets),
                                    before.bytes - std::min(before.bytes, after.bytes));
    }
    totals.last = now;
    std::map<LabelValues<4>, Sum> sums;
    auto node_total = [&](std::uint16_t hook_id) -> Sum& {
      return sums[{hook_label(hook_id), "", "", kAllNetnsLabel}];
    };
    for (const auto& [key, sum] : now) node_total(key.second).add(sum.packets, sum.bytes);
    for (const auto& [hook_id, sum] : totals.erased) node_total(hook_id).add(sum.packets, sum.bytes);
    return sums;
  }

  // The kernel's counters only grow, and a failed lookup reads 0: the
  // series keep the highest value read, so a failure never looks like a
  // counter reset. Failures are counted, and logged now and then.
  const Uncounted& note_uncounted(const CounterSnapshot& snap) const {
    uncounted.drops = std::max(uncounted.drops, snap.drops_overflow_packets);
    uncounted.visits = std::max(uncounted.visits, snap.visits_overflow_packets);
    if (snap.failed_counter_lookups == 0) return uncounted;
    read_failures += snap.failed_counter_lookups;
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_failure_log) {
      spdlog::warn(
          "reading the kernel's uncounted-packet counters: {} lookups failed since the last such line "
          "(this one: {}); pwru_skb_uncounted_packets_total keeps its last value",
          read_failures - read_failures_logged, std::strerror(snap.failed_lookup_errno));
      read_failures_logged = read_failures;
      next_failure_log = now + kReadFailureLogEvery;
    }
    return uncounted;
  }
};

SkbCounterCollector::SkbCounterCollector(std::shared_ptr<const CounterSource> source,
                                         std::shared_ptr<const NetnsResolver> resolver,
                                         std::function<std::string(std::uint64_t)> function_of,
                                         std::map<std::uint64_t, std::string> reason_names,
                                         std::vector<std::string> hook_names, SkbCounterCollectorConfig config)
    : impl_(std::make_unique<Impl>()) {
  if (!source) throw std::invalid_argument("SkbCounterCollector: no counter source");
  impl_->source = std::move(source);
  impl_->resolver = resolver ? std::move(resolver) : std::make_shared<NoPodResolver>();
  impl_->function_of = std::move(function_of);
  constexpr std::string_view kPrefix = "SKB_DROP_REASON_";
  for (auto& [value, name] : reason_names) {
    if (std::string_view(name).substr(0, kPrefix.size()) == kPrefix) name.erase(0, kPrefix.size());
    impl_->reason_names.emplace(value, std::move(name));
  }
  impl_->hook_names = std::move(hook_names);
  impl_->config = config;
}

SkbCounterCollector::~SkbCounterCollector() = default;

std::vector<prometheus::MetricFamily> SkbCounterCollector::Collect() const {
  const Impl& impl = *impl_;
  // The read is inside the lock, though it takes milliseconds: the state
  // below (retired and erased counts) compares each snapshot with the one
  // before, which only works when snapshots are applied in the order they
  // were read. Two scrapes reading at once could otherwise apply the older
  // one last and count what a key lost twice.
  std::lock_guard lock(impl.mu);
  const CounterSnapshot snap = impl.source->read();
  const PodsByNetns pods = impl.resolve_pods(snap);
  const CappedSeries<5> drops = apply_cap(impl.drop_sums(snap, pods), impl.drop_cap, impl.config.max_series);
  const CappedSeries<4> visits =
      apply_cap(impl.config.visit_pod_labels ? impl.pod_visit_sums(snap, pods) : impl.node_visit_sums(snap),
                impl.visit_cap, impl.config.max_series);
  const Uncounted& uncounted = impl.note_uncounted(snap);

  std::vector<prometheus::MetricFamily> out;
  out.reserve(6);
  out.push_back(counter_family(kDropsName, kDropsHelp, kDropLabelNames, drops, [](const Sum& s) { return s.packets; }));
  out.push_back(
      counter_family(kDropBytesName, kDropBytesHelp, kDropLabelNames, drops, [](const Sum& s) { return s.bytes; }));
  out.push_back(
      counter_family(kVisitsName, kVisitsHelp, kVisitLabelNames, visits, [](const Sum& s) { return s.packets; }));
  out.push_back(uncounted_family(uncounted));
  out.push_back(folded_family(drops, visits));
  out.push_back(read_failures_family(impl.read_failures));
  return out;
}

}  // namespace pwru
