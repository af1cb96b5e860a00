#include "probe/tracepoint_backend.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include "bpfobj/tp_object.h"
#include "common/error.h"

namespace pwru {

TracepointBackend::TracepointBackend(const std::vector<SkbTracepoint>& tracepoints,
                                     const pwru_filter_cfg& filter, std::uint32_t ring_bytes,
                                     std::shared_ptr<const CompiledPcap> pcap)
    : object_(std::make_unique<TpObject>()) {
  if (tracepoints.empty())
    throw SystemError("this kernel's BTF lists no tracepoint with a struct sk_buff * argument",
                      ENOENT);
  for (const SkbTracepoint& tp : tracepoints)
    hooks_.push_back(Hook{static_cast<std::uint16_t>(hooks_.size()), tp.name, tp.reason_arg >= 0});
  // Slots view hook names: built only once hooks_ stops growing.
  std::vector<TpSlot> slots;
  for (std::size_t i = 0; i < tracepoints.size(); ++i) {
    TpSlot slot;
    slot.tracepoint = hooks_[i].name;
    slot.cfg.skb_arg = static_cast<std::int8_t>(tracepoints[i].skb_arg);
    slot.cfg.reason_arg = static_cast<std::int8_t>(tracepoints[i].reason_arg);
    slot.cfg.location_arg = static_cast<std::int8_t>(tracepoints[i].location_arg);
    slot.cfg.hook_id = hooks_[i].id;
    slots.push_back(slot);
  }
  object_->configure(slots, filter, ring_bytes, std::move(pcap));
  object_->load();
}

TracepointBackend::~TracepointBackend() { detach(); }

AttachReport TracepointBackend::attach(const std::function<bool()>& cancelled) {
  AttachReport report;
  for (const Hook& hook : hooks_) {
    if (cancelled && cancelled()) break;
    struct bpf_link* link = bpf_program__attach(object_->program(hook.id));
    if (!link) {
      report.skipped.push_back(hook.name + ": " + std::strerror(errno));
      continue;
    }
    links_.push_back(link);
    ++report.attached;
  }
  if (report.attached == 0 && !(cancelled && cancelled())) {
    std::string why = report.skipped.empty() ? "none tried" : report.skipped.front();
    throw SystemError("could not attach to any skb tracepoint (" + why + ")", EPERM);
  }
  return report;
}

void TracepointBackend::detach() noexcept {
  for (struct bpf_link* link : links_) bpf_link__destroy(link);
  links_.clear();
}

int TracepointBackend::events_fd() const { return object_->events_fd(); }
int TracepointBackend::counters_fd() const { return object_->counters_fd(); }
int TracepointBackend::stacks_fd() const { return object_->stacks_fd(); }

}  // namespace pwru
