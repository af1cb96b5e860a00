#include "probe/tracepoint_backend.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include "bpfobj/libbpf_quiet.h"
#include "bpfobj/tp_object.h"
#include "common/error.h"

namespace pwru {

namespace {

// One object, one slot per tracepoint, hook id = index in `tracepoints`.
std::unique_ptr<TpObject> load_object(const std::vector<SkbTracepoint>& tracepoints, const pwru_filter_cfg& filter,
                                      std::uint32_t ring_bytes, const std::shared_ptr<const CompiledPcap>& pcap,
                                      const pwru_count_cfg& counting, CounterMapSizes counter_sizes,
                                      const std::vector<std::uint32_t>& netns_set) {
  std::vector<TpSlot> slots;
  for (std::size_t i = 0; i < tracepoints.size(); ++i) {
    TpSlot slot;
    slot.tracepoint = tracepoints[i].name;
    slot.cfg.skb_arg = static_cast<std::int8_t>(tracepoints[i].skb_arg);
    slot.cfg.reason_arg = static_cast<std::int8_t>(tracepoints[i].reason_arg);
    slot.cfg.location_arg = static_cast<std::int8_t>(tracepoints[i].location_arg);
    slot.cfg.hook_id = static_cast<std::uint16_t>(i);
    // Where the kernel frees skbs: --filter-track-skb forgets them there.
    slot.cfg.frees_skb = tracepoints[i].name == "kfree_skb" || tracepoints[i].name == "consume_skb";
    slots.push_back(slot);
  }
  auto object = std::make_unique<TpObject>();
  object->configure(slots, filter, ring_bytes, pcap, netns_set.size());
  object->configure_counting(counting, counter_sizes.drop_entries, counter_sizes.visit_entries);
  object->load();
  object->fill_netns_filter(netns_set);
  return object;
}

}  // namespace

std::vector<SkbTracepoint> tracepoints_beside_kprobes(const std::vector<SkbTracepoint>& all) {
  std::vector<SkbTracepoint> kept;
  // By name too: before 5.17 kfree_skb has a location but no reason.
  for (const SkbTracepoint& tp : all)
    if (tp.reason_arg >= 0 || tp.name == "kfree_skb") kept.push_back(tp);
  return kept;
}

TracepointBackend::TracepointBackend(const std::vector<SkbTracepoint>& tracepoints, const pwru_filter_cfg& filter,
                                     std::uint32_t ring_bytes, std::shared_ptr<const CompiledPcap> pcap,
                                     std::optional<CounterMapSizes> counting,
                                     const std::vector<std::uint32_t>& netns_set) {
  const CounterMapSizes counter_sizes = counting.value_or(CounterMapSizes{});
  if (counting) {
    counting_.count_only = 1;
    counting_.visit_cache_slots = counting->visit_cache_slots;
  }
  if (tracepoints.empty())
    throw SystemError("this kernel's BTF lists no tracepoint with a struct sk_buff * argument", ENOENT);
  std::vector<SkbTracepoint> usable = tracepoints;
  try {
    object_ = load_object(usable, filter, ring_bytes, pcap, counting_, counter_sizes, netns_set);
  } catch (const SystemError&) {
    // One tracepoint this kernel's verifier refuses must not take the others
    // down: load each alone to find it, then all that passed together. The
    // failed load above has printed the verifier's log once; the trials stay quiet.
    QuietLibbpf quiet;
    usable.clear();
    for (const SkbTracepoint& tp : tracepoints) {
      try {
        load_object({tp}, filter, ring_bytes, pcap, counting_, counter_sizes, netns_set);
        usable.push_back(tp);
      } catch (const SystemError& e) {
        refused_.push_back(tp.name + ": the kernel refused its program (" + e.what() + ")");
      }
    }
    if (usable.empty()) throw;
    object_ = load_object(usable, filter, ring_bytes, pcap, counting_, counter_sizes, netns_set);
  }
  for (const SkbTracepoint& tp : usable)
    hooks_.push_back(Hook{static_cast<std::uint16_t>(hooks_.size()), tp.name, tp.reason_arg >= 0});
}

TracepointBackend::~TracepointBackend() { detach(); }

AttachReport TracepointBackend::attach(const std::function<bool()>& cancelled) {
  AttachReport report;
  report.skipped = refused_;
  int first_refusal = 0;
  for (const Hook& hook : hooks_) {
    if (cancelled && cancelled()) break;
    BpfLink link(bpf_program__attach(object_->program(hook.id)));
    if (!link) {
      const int err = errno ? errno : EINVAL;
      if (!first_refusal) first_refusal = err;
      report.skipped.push_back(hook.name + ": " + std::strerror(err));
      continue;
    }
    links_.push_back(std::move(link));
    ++report.attached;
  }
  if (report.attached == 0 && !(cancelled && cancelled())) {
    std::string why = report.skipped.empty() ? "none tried" : report.skipped.front();
    throw SystemError("could not attach to any skb tracepoint (" + why + ")", first_refusal ? first_refusal : ENOENT);
  }
  return report;
}

void TracepointBackend::detach() noexcept { links_.clear(); }

int TracepointBackend::events_fd() const { return object_->events_fd(); }
int TracepointBackend::counters_fd() const { return object_->counters_fd(); }
int TracepointBackend::stacks_fd() const { return object_->stacks_fd(); }
int TracepointBackend::drop_counts_fd() const { return object_->drop_counts_fd(); }
int TracepointBackend::visit_counts_fd() const { return object_->visit_counts_fd(); }
int TracepointBackend::visit_cache_fd() const { return object_->visit_cache_fd(); }
int TracepointBackend::tracked_skbs_fd() const { return object_->tracked_skbs_fd(); }
int TracepointBackend::print_skb_fd() const { return object_->print_skb_fd(); }
int TracepointBackend::print_shinfo_fd() const { return object_->print_shinfo_fd(); }
SharedMaps TracepointBackend::shared_maps() const { return object_->shared_maps(); }

}  // namespace pwru
