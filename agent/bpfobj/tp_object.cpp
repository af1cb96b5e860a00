#include "bpfobj/tp_object.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/error.h"
#include "filter/pcap_injector.h"
// The skeleton's rodata struct names the ABI types, so the ABI header must
// come first (it is included by tp_object.h).
#include "pwru_tp.skel.h"

namespace pwru {

namespace {

// Slot programs are named pwru_tp_<tens><units> with octal digits.
int slot_of(const char* name) {
  constexpr std::string_view prefix = "pwru_tp_";
  if (std::strncmp(name, prefix.data(), prefix.size()) != 0 || std::strlen(name) != prefix.size() + 2) return -1;
  const char hi = name[prefix.size()], lo = name[prefix.size() + 1];
  if (hi < '0' || hi > '7' || lo < '0' || lo > '7') return -1;
  return (hi - '0') * 8 + (lo - '0');
}

}  // namespace

TpObject::TpObject() {
  register_pcap_sections();
  skel_ = pwru_tp__open();
  if (!skel_) throw_libbpf("opening the embedded tracepoint BPF object", 0);
  by_slot_.assign(kMaxSlots, nullptr);
  struct bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    const int slot = slot_of(bpf_program__name(prog));
    if (slot >= 0 && static_cast<std::size_t>(slot) < kMaxSlots) by_slot_[slot] = prog;
  }
}

TpObject::~TpObject() {
  for (struct bpf_program* prog : by_slot_) clear_program_filter(prog);
  pwru_tp__destroy(skel_);
}

void TpObject::configure(const std::vector<TpSlot>& slots, const pwru_filter_cfg& filter, std::uint32_t ring_bytes,
                         std::shared_ptr<const CompiledPcap> pcap, std::size_t netns_set_size) {
  if (netns_set_size > PWRU_MAX_NETNS_SET)
    throw UsageError("a trace filters on at most " + std::to_string(PWRU_MAX_NETNS_SET) + " network namespaces, not " +
                     std::to_string(netns_set_size));
  // A set without members would drop every skb in silence.
  if ((filter.netns_in_map != 0) != (netns_set_size != 0))
    throw SystemError(filter.netns_in_map ? "a netns-set filter with no netns in it"
                                          : "netns to filter on without the filter's netns_in_map",
                      EINVAL);
  if (slots.size() > kMaxSlots)
    throw UsageError("this kernel has " + std::to_string(slots.size()) + " skb tracepoints but the object has " +
                     std::to_string(kMaxSlots) + " program slots; narrow them down with --filter-func");
  const std::vector<struct bpf_program*> used(by_slot_.begin(), by_slot_.begin() + static_cast<long>(slots.size()));
  const pwru_filter_cfg cfg = arm_pcap(used, filter, pcap);
  std::memcpy(const_cast<pwru_filter_cfg*>(&skel_->rodata->filter_cfg), &cfg, sizeof(cfg));
  for (std::size_t i = 0; i < kMaxSlots; ++i) {
    struct bpf_program* prog = by_slot_[i];
    if (i >= slots.size()) {
      bpf_program__set_autoload(prog, false);
      continue;
    }
    std::memcpy(const_cast<pwru_hook_cfg*>(&skel_->rodata->hook_cfg[i]), &slots[i].cfg, sizeof(pwru_hook_cfg));
    const std::string target(slots[i].tracepoint);
    if (int err = bpf_program__set_attach_target(prog, 0, target.c_str()))
      throw_libbpf("setting attach target " + target, err);
  }
  if (int err = bpf_map__set_max_entries(skel_->maps.events, ring_bytes))
    throw_libbpf("sizing the ring buffer to " + std::to_string(ring_bytes) + " bytes", err);
  // Texts wait here until user space reads their event: room for what a
  // poll round of a busy trace produces; 4 KiB each, so only when asked.
  constexpr std::uint32_t kPendingTexts = 512;
  bpf_map__set_max_entries(skel_->maps.print_skb, (filter.output_flags & PWRU_OUT_SKB) ? kPendingTexts : 1);
  bpf_map__set_max_entries(skel_->maps.print_shinfo, (filter.output_flags & PWRU_OUT_SHINFO) ? kPendingTexts : 1);
  if (int err = bpf_map__set_max_entries(skel_->maps.filter_netns,
                                         static_cast<std::uint32_t>(std::max<std::size_t>(1, netns_set_size))))
    throw_libbpf("sizing the netns filter map", err);
}

void TpObject::configure_counting(const pwru_count_cfg& counting, std::uint32_t drop_entries,
                                  std::uint32_t visit_entries) {
  if (int err = bpf_map__set_max_entries(skel_->maps.drop_counts, drop_entries))
    throw_libbpf("sizing the drop counter map", err);
  if (int err = bpf_map__set_max_entries(skel_->maps.visit_counts, visit_entries))
    throw_libbpf("sizing the visit counter map", err);
  const std::uint32_t slots = counting.visit_cache_slots;
  if (slots > PWRU_VISIT_CACHE_SLOTS || (slots & (slots - 1)) != 0)
    throw SystemError("visit cache slots must be a power of two up to " + std::to_string(PWRU_VISIT_CACHE_SLOTS),
                      EINVAL);
  std::memcpy(const_cast<pwru_count_cfg*>(&skel_->rodata->count_cfg), &counting, sizeof(counting));
}

void TpObject::load() {
  if (int err = pwru_tp__load(skel_)) {
    throw_if_injection_failed(by_slot_);
    throw_libbpf("loading the tracepoint BPF programs (run with --debug for the verifier log)", err);
  }
}

void TpObject::fill_netns_filter(const std::vector<std::uint32_t>& netns_set) {
  const int fd = bpf_map__fd(skel_->maps.filter_netns);
  const std::uint8_t wanted = 1;
  for (std::uint32_t netns : netns_set)
    if (bpf_map_update_elem(fd, &netns, &wanted, BPF_ANY) != 0)
      throw SystemError("writing netns " + std::to_string(netns) + " into the netns filter map", errno);
}

struct bpf_program* TpObject::program(std::size_t slot) const {
  return by_slot_.at(slot);
}
int TpObject::events_fd() const { return bpf_map__fd(skel_->maps.events); }
int TpObject::counters_fd() const { return bpf_map__fd(skel_->maps.counters); }
int TpObject::stacks_fd() const { return bpf_map__fd(skel_->maps.stacks); }
int TpObject::drop_counts_fd() const { return bpf_map__fd(skel_->maps.drop_counts); }
int TpObject::visit_counts_fd() const { return bpf_map__fd(skel_->maps.visit_counts); }
int TpObject::visit_cache_fd() const { return bpf_map__fd(skel_->maps.visit_cache); }
int TpObject::tracked_skbs_fd() const { return bpf_map__fd(skel_->maps.tracked_skbs); }
int TpObject::print_skb_fd() const { return bpf_map__fd(skel_->maps.print_skb); }
int TpObject::print_shinfo_fd() const { return bpf_map__fd(skel_->maps.print_shinfo); }
SharedMaps TpObject::shared_maps() const { return SharedMaps::of(skel_->obj); }

}  // namespace pwru
