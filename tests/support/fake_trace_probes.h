// TraceProbes without BPF: a TraceSession (and the agent's traces) run over
// programs that "load" and "attach" in memory, with events the test feeds
// through the same handler path the ring buffer's reader takes
// (RecordDispatcher: stop on false, system failures rethrown, others counted).
#pragma once

#include <bpf/btf.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "output/sink.h"
#include "session/trace_probes.h"
#include "session/trace_session.h"

namespace pwru::testing {

// What a test sets and reads of the fake programs. Shared by the loader
// and every FakeProbes it made, so it outlives the sessions.
class FakeKernel : public std::enable_shared_from_this<FakeKernel> {
 public:
  // Refuse the next loads: `load_failure` as the kernel refusing a program
  // (std::runtime_error), `usage_failure` as an option this kernel cannot
  // honour (UsageError), `read_failure` when the ring buffer is opened.
  std::string load_failure;
  std::string usage_failure;
  std::string read_failure;
  std::vector<Hook> hooks{{0, "netif_receive_skb", false}, {1, "kfree_skb", true}};
  // Called when loaded probes are detached (the first time each).
  std::function<void()> on_detach;

  ProbeLoader loader() {
    return [self = shared_from_this()](const KernelBtf&, const TraceConfig& config,
                                       StartupPhases&) -> std::unique_ptr<TraceProbes> {
      {
        std::lock_guard lock(self->mu_);
        self->last_config_ = config;
        // What kernel_probes writes into the filter_netns map.
        self->netns_filter_ = config.filter.netns_in_map ? config.netns_set : std::vector<std::uint32_t>{};
      }
      if (!self->usage_failure.empty()) throw UsageError(self->usage_failure);
      if (!self->load_failure.empty()) throw std::runtime_error(self->load_failure);
      return std::make_unique<Probes>(self);
    };
  }

  // Delivered at the next poll (or drain) of a session's events.
  void feed(const pwru_event& event) {
    {
      std::lock_guard lock(mu_);
      pending_.push_back(event);
    }
    fed_.notify_all();
  }
  void set_lost(std::uint64_t lost) {
    std::lock_guard lock(mu_);
    counters_.values[PWRU_CNT_LOST] = lost;
  }

  int alive() const {
    std::lock_guard lock(mu_);
    return alive_;
  }
  std::vector<std::string> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::size_t pending() const {
    std::lock_guard lock(mu_);
    return pending_.size();
  }
  std::optional<TraceConfig> last_config() const {
    std::lock_guard lock(mu_);
    return last_config_;
  }
  // The netns the last loaded programs' filter_netns map holds (empty: no set).
  std::vector<std::uint32_t> netns_filter() const {
    std::lock_guard lock(mu_);
    return netns_filter_;
  }

  // A plain event on hook `hook_id`.
  static pwru_event event(std::uint64_t skb, std::uint16_t hook_id = 0, std::uint32_t netns = 0) {
    pwru_event e;
    std::memset(&e, 0, sizeof e);
    e.skb_addr = skb;
    e.hook_id = hook_id;
    e.netns = netns;
    e.len = 84;
    e.stack_id = -1;
    std::strncpy(e.comm, "ping", sizeof e.comm - 1);
    return e;
  }

 private:
  class Events final : public EventSource {
   public:
    Events(std::shared_ptr<FakeKernel> kernel, RingReader::Handler on_event)
        : kernel_(std::move(kernel)), dispatcher_(std::move(on_event)) {}
    bool poll(int timeout_ms) override {
      {
        std::unique_lock lock(kernel_->mu_);
        kernel_->fed_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !kernel_->pending_.empty(); });
      }
      return drain();
    }
    bool drain() override {
      if (dispatcher_.stopped()) return false;
      for (;;) {
        std::unique_lock lock(kernel_->mu_);
        if (kernel_->pending_.empty()) break;
        const pwru_event event = kernel_->pending_.front();
        lock.unlock();
        const int answer = dispatcher_.dispatch(RingRecord{event, {}, 0});
        lock.lock();
        // Consumed whatever the answer, as libbpf does; the events after
        // one that stopped reading stay in the ring.
        kernel_->pending_.pop_front();
        if (answer != 0) break;
      }
      dispatcher_.rethrow_failure();
      return !dispatcher_.stopped();
    }
    std::uint64_t malformed() const override { return 0; }
    std::uint64_t unhandled() const override { return dispatcher_.unhandled(); }
    const std::string& first_unhandled_reason() const override { return dispatcher_.first_unhandled_reason(); }

   private:
    std::shared_ptr<FakeKernel> kernel_;
    RecordDispatcher dispatcher_;
  };

  class Probes final : public TraceProbes {
   public:
    explicit Probes(std::shared_ptr<FakeKernel> kernel) : kernel_(std::move(kernel)) {
      std::lock_guard lock(kernel_->mu_);
      ++kernel_->alive_;
      kernel_->calls_.push_back("load");
    }
    ~Probes() override {
      detach();
      std::lock_guard lock(kernel_->mu_);
      --kernel_->alive_;
      kernel_->calls_.push_back("unload");
    }
    const std::string& backend_name() const override { return name_; }
    const std::string& backend_reason() const override { return reason_; }
    const std::string& plan_summary() const override { return plan_; }
    const Ksyms& ksyms() const override { return ksyms_; }
    ProbeHooks hooks() const override { return {kernel_->hooks}; }
    AttachReport attach(const std::function<bool()>&, const std::function<void(std::size_t, std::size_t)>&) override {
      std::lock_guard lock(kernel_->mu_);
      kernel_->calls_.push_back("attach");
      attached_ = true;
      return {kernel_->hooks.size(), {}};
    }
    void detach() noexcept override {
      {
        std::lock_guard lock(kernel_->mu_);
        if (!attached_) return;
        attached_ = false;
        kernel_->calls_.push_back("detach");
      }
      if (kernel_->on_detach) kernel_->on_detach();
    }
    std::unique_ptr<EventSource> read_events(RingReader::Handler on_event) override {
      if (!kernel_->read_failure.empty()) throw std::runtime_error(kernel_->read_failure);
      return std::make_unique<Events>(kernel_, std::move(on_event));
    }
    CounterTotals counters() const override {
      std::lock_guard lock(kernel_->mu_);
      return kernel_->counters_;
    }
    std::vector<std::uint64_t> stack(std::int64_t) const override { return {}; }
    bool take_text(BtfTextMap, std::uint64_t, pwru_btf_text&) override { return false; }

   private:
    std::shared_ptr<FakeKernel> kernel_;
    std::string name_ = "fake";
    std::string reason_ = "a unit test's programs";
    std::string plan_;
    Ksyms ksyms_;
    bool attached_ = false;
  };

  mutable std::mutex mu_;
  std::condition_variable fed_;
  std::deque<pwru_event> pending_;
  CounterTotals counters_;
  std::vector<std::string> calls_;
  int alive_ = 0;
  std::optional<TraceConfig> last_config_;
  std::vector<std::uint32_t> netns_filter_;
};

// A BTF without types: the fake kernel names no drop reasons or functions.
inline KernelBtf empty_btf() { return KernelBtf(btf__new_empty()); }

// The lines a trace wrote, whole, in order; closes (as a client hanging up)
// once `close_after` lines arrived, when set.
class RecordingSink final : public LineSink {
 public:
  std::function<void(const std::string& line)> on_line;
  std::size_t close_after = 0;

  void write(std::string_view text) override {
    std::vector<std::string> complete;
    {
      std::lock_guard lock(mu_);
      partial_.append(text);
      for (std::size_t end; (end = partial_.find('\n')) != std::string::npos;) {
        complete.push_back(partial_.substr(0, end));
        partial_.erase(0, end + 1);
      }
      lines_.insert(lines_.end(), complete.begin(), complete.end());
    }
    for (const std::string& line : complete)
      if (on_line) on_line(line);
  }
  void flush() override {}
  bool closed() const override {
    std::lock_guard lock(mu_);
    return close_after != 0 && lines_.size() >= close_after;
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(mu_);
    return lines_;
  }

 private:
  mutable std::mutex mu_;
  std::string partial_;
  std::vector<std::string> lines_;
};

}  // namespace pwru::testing
