#include "events/counter_maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include "bpfobj/visit_sweep_object.h"
#include "common/error.h"
#include "events/ring_reader.h"
#include "pwru_abi.h"

namespace pwru {

namespace {

// Entries fetched per batch syscall: one scrape of 10k series is a few calls.
constexpr std::uint32_t kBatch = 1024;

// Every entry of a per-CPU hash map as (key, values of all CPUs), in
// batches where the kernel has them (5.6+), key by key otherwise.
template <typename Key>
void for_each_entry(int fd, int ncpus, const std::function<void(const Key&, const pwru_count*)>& visit) {
  const auto n = static_cast<std::size_t>(ncpus);
  std::vector<Key> keys(kBatch);
  std::vector<pwru_count> values(kBatch * n);
  Key out_batch{};
  bool first = true;
  for (;;) {
    std::uint32_t count = kBatch;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int err =
        bpf_map_lookup_batch(fd, first ? nullptr : &out_batch, &out_batch, keys.data(), values.data(), &count, &opts);
    const int e = err ? errno : 0;
    if (err && e != ENOENT) {
      if (first && (e == EINVAL || e == ENOTSUP || e == EOPNOTSUPP)) break;  // no batch ops: fall through
      throw SystemError("reading a counter map", e);
    }
    for (std::uint32_t i = 0; i < count; ++i) visit(keys[i], &values[i * n]);
    if (e == ENOENT) return;  // that was the last batch
    first = false;
  }
  Key key{}, next{};
  const Key* cursor = nullptr;
  std::vector<pwru_count> per_cpu(n);
  for (;;) {
    if (bpf_map_get_next_key(fd, cursor, &next) != 0) {
      if (errno == ENOENT) return;  // past the last key
      throw SystemError("reading a counter map's keys", errno);
    }
    if (bpf_map_lookup_elem(fd, &next, per_cpu.data()) == 0)
      visit(next, per_cpu.data());
    else if (errno != ENOENT)  // ENOENT: erased since get_next_key, nothing to count
      throw SystemError("reading a counter map", errno);
    key = next;
    cursor = &key;
  }
}

pwru_count sum(const pwru_count* per_cpu, int ncpus) {
  pwru_count total{};
  for (int c = 0; c < ncpus; ++c) {
    total.packets += per_cpu[c].packets;
    total.bytes += per_cpu[c].bytes;
  }
  return total;
}

}  // namespace

BpfCounterSource::BpfCounterSource(CounterMapFds fds) : fds_(fds), ncpus_(libbpf_num_possible_cpus()) {
  if (ncpus_ <= 0) throw SystemError("counting the possible CPUs", -ncpus_);
  try {
    sweeper_ = std::make_unique<VisitSweepObject>(fds_.visit_cache);
  } catch (const std::exception& e) {
    spdlog::warn(
        "visit cache slots of deleted pods' netns will not be freed (their traffic is counted in the "
        "slower hash map instead once the cache is full): {}",
        e.what());
  }
}

BpfCounterSource::~BpfCounterSource() = default;

CounterSnapshot BpfCounterSource::read() const {
  CounterSnapshot snapshot;
  for_each_entry<pwru_drop_key>(fds_.drop_counts, ncpus_, [&](const pwru_drop_key& k, const pwru_count* v) {
    const pwru_count total = sum(v, ncpus_);
    snapshot.drops.push_back(DropCount{k.netns, k.reason, k.location, total.packets, total.bytes});
  });
  // A key is counted on each CPU either in its cache slot or in the hash
  // map, for good: the sum of both places is the key's total.
  std::map<std::pair<std::uint32_t, std::uint16_t>, pwru_count> visits;
  for_each_entry<pwru_visit_key>(fds_.visit_counts, ncpus_, [&](const pwru_visit_key& k, const pwru_count* v) {
    const pwru_count total = sum(v, ncpus_);
    pwru_count& into = visits[{k.netns, k.hook_id}];
    into.packets += total.packets;
    into.bytes += total.bytes;
  });
  std::vector<pwru_visit_cache> caches(static_cast<std::size_t>(ncpus_));
  const std::uint32_t zero = 0;
  if (bpf_map_lookup_elem(fds_.visit_cache, &zero, caches.data()) != 0)
    throw SystemError("reading the visit cache", errno);
  for (const pwru_visit_cache& cache : caches) {
    for (const pwru_visit_slot& slot : cache.slot) {
      if (slot.packets == 0) continue;
      pwru_count& into = visits[{slot.key.netns, slot.key.hook_id}];
      into.packets += slot.packets;
      into.bytes += slot.bytes;
    }
  }
  for (const auto& [key, total] : visits)
    snapshot.visits.push_back(VisitCount{key.first, key.second, total.packets, total.bytes});
  const auto counters = read_counters(fds_.counters);
  snapshot.drops_overflow_packets = counters[PWRU_CNT_DROPS_OVERFLOW];
  snapshot.visits_overflow_packets = counters[PWRU_CNT_VISITS_OVERFLOW];
  snapshot.failed_counter_lookups = counters.failed_lookups;
  snapshot.failed_lookup_errno = counters.first_errno;
  return snapshot;
}

namespace {

template <typename Key>
std::size_t erase_keys_of(int fd, int ncpus, const std::set<std::uint32_t>& netns) {
  std::vector<Key> doomed;
  for_each_entry<Key>(fd, ncpus, [&](const Key& k, const pwru_count*) {
    if (netns.count(k.netns)) doomed.push_back(k);
  });
  std::size_t erased = 0;
  for (const Key& k : doomed) {
    // ENOENT: another erase got there first; anything else leaves a dead
    // entry behind, which costs a slot, not a count.
    if (bpf_map_delete_elem(fd, &k) == 0) ++erased;
  }
  return erased;
}

}  // namespace

ErasedCounters BpfCounterSource::erase_netns(const std::vector<std::uint32_t>& netns) const {
  ErasedCounters erased;
  if (netns.empty()) return erased;
  const std::set<std::uint32_t> doomed(netns.begin(), netns.end());
  erased.entries = erase_keys_of<pwru_drop_key>(fds_.drop_counts, ncpus_, doomed) +
                   erase_keys_of<pwru_visit_key>(fds_.visit_counts, ncpus_, doomed);
  if (sweeper_) {
    try {
      erased.cache_slots = sweeper_->free_slots_of(std::vector<std::uint32_t>(doomed.begin(), doomed.end()));
    } catch (const SystemError& e) {
      // EINVAL: the kernel loaded the sweeper but cannot run it on a chosen
      // CPU (older than 5.10), and no later call will do better. Anything
      // else leaves these slots taken; the next gone netns try again.
      const bool for_good = e.code() == EINVAL || e.code() == ENOTSUP || e.code() == EOPNOTSUPP;
      spdlog::warn("visit cache slots of deleted pods' netns {}freed: {}", for_good ? "will not be " : "not ",
                   e.what());
      if (for_good) sweeper_.reset();
    }
  }
  return erased;
}

}  // namespace pwru
