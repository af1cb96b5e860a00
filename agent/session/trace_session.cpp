#include "session/trace_session.h"

#include "btf/kernel_btf.h"
#include "enrich/event_namer.h"
#include "enrich/ksyms.h"
#include "events/ring_reader.h"
#include "output/sink.h"

namespace pwru {

namespace {
constexpr std::size_t kFlushBytes = 1 << 16;
constexpr int kPollMs = 100;
}  // namespace

struct TraceSession::Impl {
  std::unique_ptr<TracepointBackend> backend;
  Ksyms ksyms;
  std::unique_ptr<EventNamer> namer;
  std::unique_ptr<EventFormatter> formatter;
  std::unique_ptr<RingReader> reader;
};

TraceSession::TraceSession(const KernelBtf& btf, TraceConfig config, LineSink& sink)
    : config_(std::move(config)), sink_(sink), impl_(std::make_unique<Impl>()) {
  // Only the tracepoint backend exists so far; "auto" picks it.
  backend_name_ = "tracepoint";
  const bool want_stack = config_.output.stack || config_.output.caller;
  config_.filter.want_stack = want_stack ? 1 : 0;
  impl_->backend = std::make_unique<TracepointBackend>(btf.skb_tracepoints(), config_.filter,
                                                       config_.ring_bytes, config_.pcap);
  if (want_stack) impl_->ksyms = Ksyms::load();
  std::vector<std::string> names;
  for (const Hook& hook : impl_->backend->hooks()) names.push_back(hook.name);
  impl_->namer = std::make_unique<EventNamer>(std::move(names), btf.enum_values("skb_drop_reason"),
                                              &impl_->ksyms);
  impl_->formatter = std::make_unique<EventFormatter>(config_.output);
  impl_->reader = std::make_unique<RingReader>(
      impl_->backend->events_fd(), [this](const pwru_event& e) { return handle(e); });
}

TraceSession::~TraceSession() {
  if (impl_ && impl_->backend) impl_->backend->detach();
}

std::size_t TraceSession::hook_count() const { return impl_->backend->hooks().size(); }

AttachReport TraceSession::attach(const std::function<bool()>& cancelled) {
  AttachReport report = impl_->backend->attach(cancelled);
  sink_.write(impl_->formatter->header());
  sink_.flush();
  return report;
}

bool TraceSession::handle(const pwru_event& event) {
  if (config_.limit && stats_.events_written >= config_.limit) {
    stats_.limit_reached = true;
    return false;
  }
  std::vector<std::string> stack;
  std::string caller;
  if (event.stack_id >= 0 && (config_.output.stack || config_.output.caller)) {
    stack = impl_->namer->stack_names(read_stack(impl_->backend->stacks_fd(), event.stack_id));
    if (config_.output.caller) caller = EventNamer::caller(stack);
  }
  EventView view{event, impl_->namer->func(event), caller, &stack};
  impl_->formatter->format(view, buffer_);
  ++stats_.events_written;
  if (buffer_.size() >= kFlushBytes) {
    sink_.write(buffer_);
    buffer_.clear();
  }
  if (config_.limit && stats_.events_written >= config_.limit) {
    stats_.limit_reached = true;
    return false;
  }
  return true;
}

void TraceSession::run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
    const bool more = impl_->reader->poll(kPollMs);
    sink_.write(buffer_);
    buffer_.clear();
    sink_.flush();
    if (!more || sink_.closed()) break;
  }
}

TraceStats TraceSession::finish() {
  if (finished_) return stats_;
  finished_ = true;
  impl_->backend->detach();
  // Events the kernel wrote before detach are still in the ring: print them
  // (up to the limit) rather than drop what was already collected.
  impl_->reader->drain();
  sink_.write(buffer_);
  buffer_.clear();
  sink_.flush();
  const auto counters = read_counters(impl_->backend->counters_fd());
  stats_.events_lost = counters[PWRU_CNT_LOST];
  stats_.events_filtered = counters[PWRU_CNT_FILTERED];
  stats_.events_malformed = impl_->reader->malformed();
  return stats_;
}

}  // namespace pwru
