// Owns the tracepoint BPF object (bpftool skeleton): configures program
// slots and load-time settings, loads it, and hands out programs and maps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "bpfobj/shared_maps.h"
#include "filter/pcap_compiler.h"
#include "pwru_abi.h"

struct pwru_tp;
struct bpf_program;
struct bpf_map;

namespace pwru {

struct TpSlot {
  std::string_view tracepoint;  // attach target, without btf_trace_
  pwru_hook_cfg cfg{};
};

class TpObject {
 public:
  // Opens the embedded object. Nothing reaches the kernel until load().
  TpObject();
  ~TpObject();
  TpObject(const TpObject&) = delete;
  TpObject& operator=(const TpObject&) = delete;

  static constexpr std::size_t kMaxSlots = PWRU_MAX_TP_SLOTS;

  // Points slot i at slots[i].tracepoint; slots past the end are not loaded.
  // `pcap` (may be null: match all) is written into every loaded program.
  // `netns_set_size`: the netns fill_netns_filter() will write (filter's
  // netns_in_map), up to PWRU_MAX_NETNS_SET; 0 for any other trace.
  void configure(const std::vector<TpSlot>& slots, const pwru_filter_cfg& filter, std::uint32_t ring_bytes,
                 std::shared_ptr<const CompiledPcap> pcap, std::size_t netns_set_size);
  // pwru-agent's counting (count_cfg in rodata) and the sizes of its drop
  // and visit counter maps; a trace passes a zero `counting` and one entry
  // each. Before load().
  void configure_counting(const pwru_count_cfg& counting, std::uint32_t drop_entries, std::uint32_t visit_entries);
  // Verifies and loads every configured slot (one BTF parse for all).
  void load();
  // After load(), before any program is attached: the netns a netns-set
  // trace keeps (every object of the trace reads them through SharedMaps).
  void fill_netns_filter(const std::vector<std::uint32_t>& netns_set);

  struct bpf_program* program(std::size_t slot) const;
  int events_fd() const;
  int counters_fd() const;
  int stacks_fd() const;
  int drop_counts_fd() const;
  int visit_counts_fd() const;
  int visit_cache_fd() const;
  int tracked_skbs_fd() const;
  int print_skb_fd() const;
  int print_shinfo_fd() const;
  // The maps the other objects of a trace write into (after load()).
  SharedMaps shared_maps() const;

 private:
  struct pwru_tp* skel_ = nullptr;
  std::vector<struct bpf_program*> by_slot_;
};

}  // namespace pwru
