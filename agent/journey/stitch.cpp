#include "journey/stitch.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "pwru_abi.h"

namespace pwru {

namespace {

// What the rule needs of one journey, read once.
struct Facts {
  bool usable = false;  // has an identity, a tuple and wall times
  bool v6 = false;
  int proto = 0;
  std::string saddr, daddr;
  int sport = 0, dport = 0;
  std::uint32_t seq = 0, ack = 0, flow_label = 0;
  std::uint32_t ip_id = 0, len = 0;
  int tcp_flags = -1;
  std::int64_t first = 0, last = 0;
  bool left_pod = false;
  bool tcp() const { return proto == PWRU_IPPROTO_TCP; }
};

bool is_transmit(const std::string& func) {
  return func.find("xmit") != std::string::npos || func.rfind("net_dev_queue", 0) == 0;
}

bool left_pod(const nlohmann::json& j) {
  const std::string fate = j.value("fate", "");
  if (fate == "transmitted") return true;
  if (fate != "in_flight") return false;
  const auto hooks = j.find("hooks");
  if (hooks == j.end() || !hooks->is_array() || hooks->empty()) return false;
  return is_transmit(hooks->back().value("func", ""));
}

Facts facts_of(const nlohmann::json& j) {
  Facts f;
  try {
    const auto ident = j.find("ident");
    const auto tuple = j.find("tuple");
    if (ident == j.end() || !ident->is_object() || tuple == j.end() || !tuple->is_object()) return f;
    if (!j.contains("first_wall_ns") || !j.contains("last_wall_ns")) return f;
    f.saddr = tuple->value("saddr", "");
    f.daddr = tuple->value("daddr", "");
    if (f.saddr.empty() || f.daddr.empty()) return f;
    f.v6 = f.saddr.find(':') != std::string::npos;
    f.sport = tuple->value("sport", 0);
    f.dport = tuple->value("dport", 0);
    f.proto = tuple->value("proto", 0);
    f.seq = ident->value("seq", 0u);
    f.ack = ident->value("ack", 0u);
    f.flow_label = ident->value("flow_label", 0u);
    f.ip_id = ident->value("ip_id", 0u);
    f.len = ident->value("len", 0u);
    f.tcp_flags = ident->value("tcp_flags", -1);
    f.first = j["first_wall_ns"].get<std::int64_t>();
    f.last = j["last_wall_ns"].get<std::int64_t>();
    f.left_pod = left_pod(j);
    f.usable = true;
  } catch (const nlohmann::json::exception&) {
    f.usable = false;  // a field of another type: not this rule's journey
  }
  return f;
}

// B's seq inside A's data, modulo 2^32.
bool inside(const Facts& a, const Facts& b) { return a.len > 0 && b.seq - a.seq < a.len; }

bool ident_matches(const Facts& a, const Facts& b) {
  if (a.v6 != b.v6 || a.proto != b.proto) return false;
  if (a.tcp()) return a.ack == b.ack && ((a.seq == b.seq && a.tcp_flags == b.tcp_flags) || inside(a, b));
  if (a.len != b.len || a.seq != b.seq) return false;
  return a.v6 ? a.flow_label == b.flow_label : a.ip_id == b.ip_id;
}

bool tuple_matches(const Facts& a, const Facts& b) {
  return (a.saddr == b.saddr && a.sport == b.sport) || (a.daddr == b.daddr && a.dport == b.dport);
}

bool in_window(const Facts& a, const Facts& b) {
  return b.first >= a.last - static_cast<std::int64_t>(kStitchSkewAllowNs) &&
         b.first <= a.last + static_cast<std::int64_t>(kStitchMaxTransitNs);
}

std::int64_t gap(const Facts& a, const Facts& b) { return b.first > a.last ? b.first - a.last : a.last - b.first; }

// Where to look for the As a B may continue: TCP by ack (both matches need
// it), the rest by the whole identity.
using BucketKey = std::tuple<bool, int, std::uint32_t, std::uint32_t, std::uint32_t, std::uint32_t>;
BucketKey bucket_of(const Facts& f) {
  if (f.tcp()) return {f.v6, f.proto, f.ack, 0, 0, 0};
  return {f.v6, f.proto, f.v6 ? f.flow_label : f.ip_id, f.len, f.seq, 0};
}

struct BucketKeyHash {
  std::size_t operator()(const BucketKey& k) const {
    std::size_t h = std::get<0>(k);
    const auto mix = [&](std::uint64_t v) { h = h * 1000003u ^ std::hash<std::uint64_t>{}(v); };
    mix(static_cast<std::uint64_t>(std::get<1>(k)));
    mix(std::get<2>(k));
    mix(std::get<3>(k));
    mix(std::get<4>(k));
    return h;
  }
};

// The As of one bucket. TCP: by seq, for the range lookup (its ack and seq
// narrow it down to one connection's recent data). The rest: per node by
// last_wall_ns, for the time window, as their identity can be the same for
// thousands (IP ID 0, flow label 0); the bucket's key is all of it.
using ByLast = std::vector<std::pair<std::int64_t, std::size_t>>;
struct Bucket {
  std::multimap<std::uint32_t, std::size_t> by_seq;
  std::map<std::string, ByLast> by_node;  // each sorted once all are in
};

// Of a non-TCP B's window, at most this many As of other nodes are looked
// at (replies among them): past that, it is ambiguous anyway.
constexpr std::size_t kMaxScanned = 4 * kStitchMaxCandidates;

// The As whose identity B matches (rule 2): for TCP wherever their seq is;
// for the rest only those on other nodes within B's window (rules 1, 3).
// nullopt: too many.
std::optional<std::vector<std::size_t>> ident_candidates(const Bucket& as, const std::vector<Facts>& f, std::size_t b,
                                                         const std::string& b_node) {
  std::vector<std::size_t> out;
  if (!f[b].tcp()) {
    // in_window() turned around: A.last in [B.first - transit, B.first + skew].
    const std::int64_t from = f[b].first - static_cast<std::int64_t>(kStitchMaxTransitNs);
    const std::int64_t to = f[b].first + static_cast<std::int64_t>(kStitchSkewAllowNs);
    std::size_t scanned = 0;
    for (const auto& [node, by_last] : as.by_node) {
      if (node == b_node) continue;
      auto it = std::lower_bound(by_last.begin(), by_last.end(), std::make_pair(from, std::size_t{0}));
      for (; it != by_last.end() && it->first <= to; ++it) {
        if (++scanned > kMaxScanned) return std::nullopt;
        if (ident_matches(f[it->second], f[b])) out.push_back(it->second);
      }
    }
    return out;
  }
  const auto take = [&](auto from, auto to) {
    for (auto it = from; it != to; ++it)
      if (ident_matches(f[it->second], f[b])) out.push_back(it->second);
  };
  // A's data is at most 64 KiB (l4_payload is 16 bits): As starting up to
  // that far before B's seq, wrapping at 2^32.
  const std::uint32_t hi = f[b].seq;
  const std::uint32_t lo = hi - std::numeric_limits<std::uint16_t>::max();
  if (lo <= hi) {
    take(as.by_seq.lower_bound(lo), as.by_seq.upper_bound(hi));
  } else {
    take(as.by_seq.lower_bound(lo), as.by_seq.end());
    take(as.by_seq.begin(), as.by_seq.upper_bound(hi));
  }
  return out;
}

struct Link {
  std::size_t pred = 0;
  bool by_tuple = false;
};

nlohmann::json without_place(nlohmann::json j) {
  for (const char* key : {"node", "namespace", "pod"}) j.erase(key);
  return j;
}

}  // namespace

StitchResult stitch_journeys(std::vector<NodeJourney> in) {
  StitchResult result;
  const std::size_t n = in.size();
  std::vector<Facts> facts(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!in[i].journey.is_object()) in[i].journey = nlohmann::json::object();
    if (!in[i].journey.contains("node")) in[i].journey["node"] = in[i].node;
    facts[i] = facts_of(in[i].journey);
  }

  // The journeys that left their pod, the As, indexed.
  std::unordered_map<BucketKey, Bucket, BucketKeyHash> buckets;
  for (std::size_t i = 0; i < n; ++i) {
    if (!facts[i].usable || !facts[i].left_pod) continue;
    Bucket& bucket = buckets[bucket_of(facts[i])];
    if (facts[i].tcp())
      bucket.by_seq.emplace(facts[i].seq, i);
    else
      bucket.by_node[in[i].node].emplace_back(facts[i].last, i);
  }
  for (auto& [key, bucket] : buckets)
    for (auto& [node, by_last] : bucket.by_node) std::sort(by_last.begin(), by_last.end());

  // Every B's candidates (rules 1-4), sorted for the lookups below. A B
  // with too many is ambiguous: what follows costs their square.
  std::vector<std::vector<std::size_t>> cands(n);
  for (std::size_t b = 0; b < n; ++b) {
    const Facts& fb = facts[b];
    if (!fb.usable) continue;
    const auto bucket = buckets.find(bucket_of(fb));
    if (bucket == buckets.end()) continue;
    const auto idents = ident_candidates(bucket->second, facts, b, in[b].node);
    if (idents) {
      for (std::size_t a : *idents) {
        const Facts& fa = facts[a];
        if (in[a].node == in[b].node || !in_window(fa, fb) || fb.daddr == fa.saddr) continue;
        cands[b].push_back(a);
      }
    }
    if (!idents || cands[b].size() > kStitchMaxCandidates) {
      cands[b].clear();
      ++result.ambiguous;
      continue;
    }
    std::sort(cands[b].begin(), cands[b].end());
  }
  const auto has = [](const std::vector<std::vector<std::size_t>>& sets, std::size_t of, std::size_t x) {
    return std::binary_search(sets[of].begin(), sets[of].end(), x);
  };
  // A packet forwarded through a pod (A -> B -> C) is left-its-pod on two
  // nodes with one identity: A and B are each other's candidates within the
  // skew allowance, and C's candidates are both. Each pair's direction comes
  // from the clocks, and C continues the latest of them: not A, which B
  // already continues.
  std::vector<std::vector<std::size_t>> directed(n);
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t a : cands[b])
      if (!has(cands, a, b) || facts[a].first < facts[b].first) directed[b].push_back(a);
  std::vector<std::vector<std::size_t>> latest(n);
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t a : directed[b])
      if (std::none_of(directed[b].begin(), directed[b].end(),
                       [&](std::size_t x) { return x != a && has(directed, x, a); }))
        latest[b].push_back(a);

  // Each B's one predecessor, if the choice finds exactly one.
  std::vector<std::optional<Link>> link(n);
  for (std::size_t b = 0; b < n; ++b) {
    const Facts& fb = facts[b];
    std::vector<std::size_t>& all = latest[b];
    if (all.empty()) continue;
    std::vector<std::size_t> by_tuple;
    std::copy_if(all.begin(), all.end(), std::back_inserter(by_tuple),
                 [&](std::size_t a) { return tuple_matches(facts[a], fb); });
    std::vector<std::size_t>& pool = by_tuple.empty() ? all : by_tuple;
    std::sort(pool.begin(), pool.end(),
              [&](std::size_t x, std::size_t y) { return gap(facts[x], fb) < gap(facts[y], fb); });
    if (pool.size() > 1 &&
        gap(facts[pool[1]], fb) - gap(facts[pool[0]], fb) <= static_cast<std::int64_t>(kStitchTieNs)) {
      ++result.ambiguous;
      continue;
    }
    link[b] = Link{pool[0], !by_tuple.empty()};
  }

  // An A continued by several Bs: only a TCP split keeps them all.
  std::unordered_map<std::size_t, std::vector<std::size_t>> successors;
  for (std::size_t b = 0; b < n; ++b)
    if (link[b]) successors[link[b]->pred].push_back(b);
  for (auto& [a, bs] : successors) {
    if (bs.size() < 2) continue;
    std::unordered_set<std::uint32_t> seqs;
    bool split = facts[a].tcp();
    for (std::size_t b : bs) split = split && inside(facts[a], facts[b]) && seqs.insert(facts[b].seq).second;
    if (split) continue;
    for (std::size_t b : bs) link[b].reset();
    result.ambiguous += bs.size();
    bs.clear();
  }

  // Chains, from each last segment back; sorted into the input order by
  // their first segment.
  std::vector<std::pair<std::vector<std::size_t>, bool>> chains;  // (journeys, by_tuple)
  std::vector<std::size_t> uses(n, 0);
  for (std::size_t tail = 0; tail < n; ++tail) {
    const auto succ = successors.find(tail);
    if (!link[tail] || (succ != successors.end() && !succ->second.empty())) continue;
    std::vector<std::size_t> chain{tail};
    bool by_tuple = true;
    for (std::size_t cur = tail; link[cur] && chain.size() < kStitchMaxSegments;) {
      const std::size_t pred = link[cur]->pred;
      if (std::find(chain.begin(), chain.end(), pred) != chain.end()) break;
      by_tuple = by_tuple && link[cur]->by_tuple;
      chain.push_back(pred);
      cur = pred;
    }
    std::reverse(chain.begin(), chain.end());
    for (std::size_t i : chain) ++uses[i];
    chains.emplace_back(std::move(chain), by_tuple);
  }
  // Journeys are moved into their chain; only the A of a TCP split, in
  // several, is copied.
  std::vector<bool> emitted(n, false);
  std::vector<std::tuple<std::size_t, std::size_t, nlohmann::json>> out;
  out.reserve(n);
  for (auto& [chain, by_tuple] : chains) {
    const std::size_t tail = chain.back();
    nlohmann::json cross = nlohmann::json::object();
    const nlohmann::json& last = in[tail].journey;
    for (const char* key : {"fate", "where", "reason", "hint"})
      if (last.contains(key)) cross[key] = last[key];
    nlohmann::json nodes = nlohmann::json::array();
    nlohmann::json segments = nlohmann::json::array();
    for (std::size_t i : chain) {
      emitted[i] = true;
      nlohmann::json& j = in[i].journey;
      nodes.push_back(in[i].node);
      nlohmann::json segment = nlohmann::json::object();
      segment["node"] = in[i].node;
      segment["namespace"] = j.value("namespace", nlohmann::json());
      segment["pod"] = j.value("pod", nlohmann::json());
      segment["journey"] = without_place(--uses[i] == 0 ? std::move(j) : nlohmann::json(j));
      segments.push_back(std::move(segment));
    }
    cross["nodes"] = std::move(nodes);
    cross["segments"] = std::move(segments);
    cross["node"] = in[tail].node;
    cross["stitched_by"] = by_tuple ? "ident+tuple" : "ident+time";
    out.emplace_back(chain.front(), tail, std::move(cross));
    ++result.stitched;
  }
  for (std::size_t i = 0; i < n; ++i)
    if (!emitted[i]) out.emplace_back(i, i, std::move(in[i].journey));
  std::stable_sort(out.begin(), out.end(), [](const auto& x, const auto& y) {
    return std::tie(std::get<0>(x), std::get<1>(x)) < std::tie(std::get<0>(y), std::get<1>(y));
  });
  for (auto& entry : out) result.journeys.push_back(std::move(std::get<2>(entry)));
  return result;
}

}  // namespace pwru
