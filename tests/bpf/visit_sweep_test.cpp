// Freeing the visit cache slots of gone netns (bpf/pwru_visit_sweep.bpf.c
// through BpfCounterSource::erase_netns) on the running kernel: the slots of
// the erased netns are free on every CPU, the others keep their counts, and
// a freed slot is taken by the next key instead of the hash map.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <map>
#include <set>

#include "btf/kernel_btf.h"
#include "enrich/ksyms.h"
#include "events/counter_maps.h"
#include "netns_fixture.h"
#include "probe/counting_probes.h"

namespace pwru {
namespace {

CountingSpec net_dev_queue_spec(std::uint32_t cache_slots) {
  CountingSpec spec;
  spec.backend = "tracepoint";
  spec.all_tracepoints = false;
  spec.tracepoints = {"net_dev_queue"};
  spec.sizes = CounterMapSizes{1024, 1024, cache_slots};
  return spec;
}

CounterMapFds fds_of(const CountingProbes& probes) {
  return CounterMapFds{probes.drop_counts_fd(), probes.visit_counts_fd(), probes.visit_cache_fd(),
                       probes.counters_fd()};
}

// Occupied slots as (cpu, slot index) -> (netns, packets), read raw.
std::map<std::pair<int, int>, std::pair<std::uint32_t, std::uint64_t>> occupied_slots(int cache_fd) {
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<pwru_visit_cache> caches(static_cast<std::size_t>(ncpus));
  const std::uint32_t zero = 0;
  EXPECT_EQ(bpf_map_lookup_elem(cache_fd, &zero, caches.data()), 0);
  std::map<std::pair<int, int>, std::pair<std::uint32_t, std::uint64_t>> out;
  for (int cpu = 0; cpu < ncpus; ++cpu)
    for (int i = 0; i < PWRU_VISIT_CACHE_SLOTS; ++i) {
      const pwru_visit_slot& s = caches[static_cast<std::size_t>(cpu)].slot[i];
      if (s.packets != 0) out[{cpu, i}] = {s.key.netns, s.packets};
    }
  return out;
}

std::set<std::uint32_t> hash_netns(int visit_counts_fd) {
  std::set<std::uint32_t> out;
  pwru_visit_key key{}, next{};
  const pwru_visit_key* cursor = nullptr;
  while (bpf_map_get_next_key(visit_counts_fd, cursor, &next) == 0) {
    out.insert(next.netns);
    key = next;
    cursor = &key;
  }
  return out;
}

// Sends from `ns_path` once on every online CPU, so each CPU's cache has a
// slot for it (a new thread, which send_udp uses, inherits this affinity).
void send_on_every_cpu(const std::string& ns_path, const std::string& dst) {
  cpu_set_t saved;
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved), 0);
  for (int cpu = 0; cpu < libbpf_num_possible_cpus(); ++cpu) {
    if (!CPU_ISSET(cpu, &saved)) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof(one), &one), 0);
    testing::send_udp(ns_path, dst, 9);
  }
  ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved), 0);
}

TEST(VisitSweep, ErasingANetnsFreesItsSlotsOnEveryCpuAndLeavesTheOthersCounts) {
  const KernelBtf btf = KernelBtf::load();
  CountingProbes probes(btf, Ksyms{}, net_dev_queue_spec(PWRU_VISIT_CACHE_SLOTS));
  probes.attach(nullptr);
  testing::NetnsPair pair(11);
  const BpfCounterSource source(fds_of(probes));
  ASSERT_TRUE(source.frees_cache_slots());
  send_on_every_cpu(pair.path_a(), pair.ip_b);
  send_on_every_cpu(pair.path_b(), pair.ip_a);

  std::size_t slots_a = 0;
  std::map<std::pair<int, int>, std::pair<std::uint32_t, std::uint64_t>> others;
  for (const auto& [where, what] : occupied_slots(probes.visit_cache_fd())) {
    if (what.first == pair.inode_a)
      ++slots_a;
    else
      others.emplace(where, what);
  }
  cpu_set_t mask;
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(mask), &mask), 0);
  const int online = CPU_COUNT(&mask);
  EXPECT_GE(slots_a, static_cast<std::size_t>(online)) << "one slot per CPU the test sent from";

  const ErasedCounters erased = source.erase_netns({pair.inode_a});
  EXPECT_EQ(erased.cache_slots, slots_a);
  const auto after = occupied_slots(probes.visit_cache_fd());
  for (const auto& [where, what] : after) {
    EXPECT_NE(what.first, pair.inode_a) << "cpu " << where.first << " slot " << where.second << " still held";
    // Counting goes on meanwhile (neighbour discovery): others only grow.
    if (auto it = others.find(where); it != others.end()) {
      EXPECT_GE(what.second, it->second.second);
    }
  }
  for (const auto& [where, what] : others)
    EXPECT_TRUE(after.count(where)) << "cpu " << where.first << " slot " << where.second << " of netns " << what.first
                                    << " was freed too";
  for (const VisitCount& v : source.read().visits) EXPECT_NE(v.netns, pair.inode_a);
  // Erasing again finds nothing: the first call left no slot behind.
  EXPECT_EQ(source.erase_netns({pair.inode_a}).cache_slots, 0u);
}

TEST(VisitSweep, AFreedSlotGoesToTheNextKeyNotToTheHashMap) {
  const KernelBtf btf = KernelBtf::load();
  // One slot: whoever holds it pushes every other key into the hash map.
  CountingProbes probes(btf, Ksyms{}, net_dev_queue_spec(1));
  probes.attach(nullptr);
  testing::NetnsPair pair(12);
  const BpfCounterSource source(fds_of(probes));
  cpu_set_t saved, one;
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved), 0);
  int cpu = 0;
  while (!CPU_ISSET(cpu, &saved)) ++cpu;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof(one), &one), 0);
  testing::send_udp(pair.path_a(), pair.ip_b, 9);
  // Whichever netns got the slot on this CPU first, A's datagram or a
  // neighbour message: erase it, and the next sender gets the slot.
  std::uint32_t holder = 0;
  for (const auto& [where, what] : occupied_slots(probes.visit_cache_fd()))
    if (where.first == cpu) holder = what.first;
  ASSERT_NE(holder, 0u);
  const std::uint32_t other = holder == pair.inode_a ? pair.inode_b : pair.inode_a;
  const std::string other_path = holder == pair.inode_a ? pair.path_b() : pair.path_a();
  const std::string other_dst = holder == pair.inode_a ? pair.ip_a : pair.ip_b;
  EXPECT_GE(source.erase_netns({holder}).cache_slots, 1u);
  source.erase_netns({other});  // the other one starts from nothing as well
  ASSERT_EQ(hash_netns(probes.visit_counts_fd()).count(other), 0u);
  testing::send_udp(other_path, other_dst, 9);
  ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved), 0);
  bool in_slot = false;
  for (const auto& [where, what] : occupied_slots(probes.visit_cache_fd()))
    if (where.first == cpu && what.first == other) in_slot = true;
  EXPECT_TRUE(in_slot) << "the freed slot was not taken by netns " << other;
  EXPECT_EQ(hash_netns(probes.visit_counts_fd()).count(other), 0u);
}

}  // namespace
}  // namespace pwru
