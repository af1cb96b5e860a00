#include "probe/kprobe_backend.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "bpfobj/libbpf_quiet.h"
#include "common/error.h"
#include "probe/parallel_attach.h"

namespace pwru {

KprobeBackend::KprobeBackend(KprobeKind kind, std::vector<SkbFunction> functions, std::uint16_t first_hook_id,
                             const pwru_filter_cfg& filter, std::shared_ptr<const CompiledPcap> pcap,
                             const SharedMaps& maps)
    : kind_(kind), functions_(std::move(functions)) {
  if (first_hook_id + functions_.size() > 0xffff)
    throw UsageError("too many functions to probe (" + std::to_string(functions_.size()) +
                     "); narrow them with --filter-func");
  for (std::size_t i = 0; i < functions_.size(); ++i)
    hooks_.push_back(Hook{static_cast<std::uint16_t>(first_hook_id + i), functions_[i].name, false});
  object_.load(kind, filter, std::move(pcap), maps);
}

KprobeBackend::~KprobeBackend() { detach(); }

void KprobeBackend::attach_multi_batch(int skb_arg, std::vector<std::size_t> idx, AttachReport& report,
                                       const std::function<bool()>& cancelled) {
  if (idx.empty() || (cancelled && cancelled())) return;
  std::vector<const char*> syms;
  std::vector<__u64> cookies;
  for (std::size_t i : idx) {
    syms.push_back(functions_[i].name.c_str());
    cookies.push_back(hooks_[i].id);
  }
  LIBBPF_OPTS(bpf_kprobe_multi_opts, opts, .syms = syms.data(), .cookies = cookies.data(), .cnt = syms.size());
  struct bpf_link* link = bpf_program__attach_kprobe_multi_opts(object_.program(skb_arg), nullptr, &opts);
  if (link) {
    links_.push_back(link);
    report.attached += idx.size();
    return;
  }
  const int err = errno;
  // One symbol the kernel refuses fails the whole link: halve until it is found.
  if (idx.size() == 1) {
    report.skipped.push_back(functions_[idx[0]].name + ": " + std::strerror(err));
    return;
  }
  const auto mid = idx.begin() + static_cast<long>(idx.size() / 2);
  attach_multi_batch(skb_arg, std::vector<std::size_t>(idx.begin(), mid), report, cancelled);
  attach_multi_batch(skb_arg, std::vector<std::size_t>(mid, idx.end()), report, cancelled);
}

AttachReport KprobeBackend::attach(const std::function<bool()>& cancelled, const AttachProgress& progress,
                                   unsigned threads) {
  // Refusals are reported once each in report.skipped, not by libbpf.
  QuietLibbpf quiet;
  AttachReport report;
  const std::size_t total = functions_.size();
  if (kind_ == KprobeKind::kKprobeMulti) {
    // -1: functions without an skb (--filter-non-skb-funcs).
    for (int arg = -1; arg < 5; ++arg) {
      std::vector<std::size_t> idx;
      for (std::size_t i = 0; i < total; ++i)
        if (functions_[i].skb_arg == arg) idx.push_back(i);
      attach_multi_batch(arg, std::move(idx), report, cancelled);
      if (progress) progress(report.attached + report.skipped.size(), total);
    }
  } else {
    attach_each_kprobe(cancelled, progress, threads, report);
  }
  if (report.attached == 0 && total > 0 && !(cancelled && cancelled()))
    throw SystemError("could not attach a single kprobe (" + report.skipped.front() + ")", EPERM);
  if (object_.skb_freed_program() && !(cancelled && cancelled())) attach_skb_freed();
  if (object_.clone_entry_program() && !(cancelled && cancelled())) attach_clone_tracking(report);
  return report;
}

void KprobeBackend::attach_each_kprobe(const std::function<bool()>& cancelled, const AttachProgress& progress,
                                       unsigned threads, AttachReport& report) {
  const std::size_t total = functions_.size();
  // Slots by function, so threads never share one and the outcome keeps
  // function order; refused[i] stays 0 for functions never tried (cancelled).
  std::vector<struct bpf_link*> made(total, nullptr);
  std::vector<int> refused(total, 0);
  // Reserved up front so handing links over cannot throw: every link made
  // ends up in links_ (and so in detach()), even when attaching throws.
  links_.reserve(links_.size() + total);
  struct HandOver {
    std::vector<struct bpf_link*>& made;
    std::vector<struct bpf_link*>& links;
    ~HandOver() {
      for (struct bpf_link* link : made)
        if (link) links.push_back(link);
    }
  } hand_over{made, links_};
  attach_each_in_parallel(
      total, threads,
      [&](std::size_t i) {
        LIBBPF_OPTS(bpf_kprobe_opts, opts, .bpf_cookie = hooks_[i].id);
        made[i] = bpf_program__attach_kprobe_opts(object_.program(functions_[i].skb_arg),
                                                  functions_[i].name.c_str(), &opts);
        if (!made[i]) refused[i] = errno ? errno : EINVAL;
      },
      cancelled, progress);
  for (std::size_t i = 0; i < total; ++i) {
    if (made[i])
      ++report.attached;
    else if (refused[i])
      report.skipped.push_back(functions_[i].name + ": " + std::strerror(refused[i]));
  }
}

// The functions that make a new skb out of a tracked one (skb_copy_expand
// and pskb_copy are wrappers or inline on the kernels we run).
void KprobeBackend::attach_clone_tracking(AttachReport& report) {
  for (const char* function : {"skb_clone", "skb_copy", "__pskb_copy_fclone", "skb_copy_expand"}) {
    struct bpf_link* entry = bpf_program__attach_kprobe(object_.clone_entry_program(), false, function);
    if (!entry) {
      report.skipped.push_back(std::string(function) + " (following clones): " + std::strerror(errno));
      continue;
    }
    links_.push_back(entry);
    struct bpf_link* exit = bpf_program__attach_kprobe(object_.clone_exit_program(), true, function);
    if (!exit) {
      report.skipped.push_back(std::string(function) + " return (following clones): " + std::strerror(errno));
      continue;
    }
    links_.push_back(exit);
  }
}

// Without it a freed skb would stay tracked until the LRU map evicts it and
// later hooks on its stack would read freed memory: refuse to trace.
void KprobeBackend::attach_skb_freed() {
  constexpr const char* kFreeFunction = "kfree_skbmem";
  struct bpf_link* link = nullptr;
  if (kind_ == KprobeKind::kKprobeMulti) {
    const char* syms[] = {kFreeFunction};
    LIBBPF_OPTS(bpf_kprobe_multi_opts, opts, .syms = syms, .cnt = 1);
    link = bpf_program__attach_kprobe_multi_opts(object_.skb_freed_program(), nullptr, &opts);
  } else {
    link = bpf_program__attach_kprobe(object_.skb_freed_program(), false, kFreeFunction);
  }
  if (!link)
    throw SystemError(std::string("could not attach to ") + kFreeFunction +
                          ", which tracking skbs by stack needs to forget freed skbs; "
                          "run without --filter-track-skb-by-stackid and --filter-non-skb-funcs",
                      errno);
  links_.push_back(link);
}

namespace {

// Closing a kprobe's perf event waits for RCU grace periods, one of them
// (tracepoint_synchronize_unregister) while holding the global event_mutex,
// so detaching ~1.5k kprobes is bound by grace-period latency and threads
// only overlap the part outside the mutex (measured in the Debian 6.1 guest:
// 145 s one by one, 63 s from 10 threads). Expedited grace periods cut that
// latency; the kernel's own knob turns them on for the duration of the
// detach and is put back after, even when detaching fails.
class ExpeditedRcu {
 public:
  explicit ExpeditedRcu(const char* knob = "/sys/kernel/rcu_expedited") : knob_(knob) {
    if (read() == "0") changed_ = write("1");
  }
  ~ExpeditedRcu() {
    if (changed_) write("0");
  }
  bool active() const { return changed_; }

 private:
  std::string read() const {
    std::ifstream in(knob_);
    std::string v;
    in >> v;
    return v;
  }
  bool write(const char* v) const {
    std::ofstream out(knob_);
    out << v;
    out.flush();
    return static_cast<bool>(out);
  }
  const char* knob_;
  bool changed_ = false;
};

}  // namespace

void KprobeBackend::detach(unsigned threads) noexcept {
  if (links_.empty()) return;
  std::optional<ExpeditedRcu> expedite;
  if (kind_ == KprobeKind::kKprobe && links_.size() > 1) {
    try {
      expedite.emplace();
    } catch (...) {
      // Without the knob detach is only slower.
    }
  }
  if (threads <= 1 || links_.size() < 2 * threads) {
    for (struct bpf_link* link : links_) bpf_link__destroy(link);
    links_.clear();
    return;
  }
  // Each thread takes every threads-th link, so the RCU waits overlap.
  std::vector<std::thread> workers;
  try {
    for (unsigned t = 0; t < threads; ++t)
      workers.emplace_back([this, t, threads] {
        for (std::size_t i = t; i < links_.size(); i += threads) bpf_link__destroy(links_[i]);
      });
  } catch (...) {
    // A thread could not be started: this one takes the shares nobody owns.
    for (std::size_t i = 0; i < links_.size(); ++i)
      if (i % threads >= workers.size()) bpf_link__destroy(links_[i]);
  }
  for (std::thread& w : workers) w.join();
  links_.clear();
}

}  // namespace pwru
