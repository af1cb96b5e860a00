#include "probe/kprobe_backend.h"

#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>

#include "bpfobj/libbpf_quiet.h"
#include "common/error.h"
#include "probe/expedited_rcu.h"
#include "probe/parallel_attach.h"

namespace pwru {

bool kernel_cannot_probe(int err) {
  switch (err) {
    case ENOENT:         // no such symbol (gone, or never traceable)
    case EADDRNOTAVAIL:  // several symbols of that name (6.1.60+, 6.6+)
    case EINVAL:         // kprobe blacklist, notrace, __kprobes sections
    case EILSEQ:         // not at an instruction boundary
      return true;
    default:
      return false;
  }
}

namespace {

std::string refusal(const std::string& function, int err) { return function + ": " + std::strerror(err); }

}  // namespace

KprobeBackend::KprobeBackend(KprobeKind kind, std::vector<SkbFunction> functions, std::uint16_t first_hook_id,
                             const pwru_filter_cfg& filter, std::shared_ptr<const CompiledPcap> pcap,
                             const SharedMaps& maps, const pwru_count_cfg& counting)
    : kind_(kind), functions_(std::move(functions)) {
  if (first_hook_id + functions_.size() > 0xffff)
    throw UsageError("too many functions to probe (" + std::to_string(functions_.size()) +
                     "); narrow them with --filter-func");
  for (std::size_t i = 0; i < functions_.size(); ++i)
    hooks_.push_back(Hook{static_cast<std::uint16_t>(first_hook_id + i), functions_[i].name, false});
  if (kind_ == KprobeKind::kKprobe) {
    const std::string repaired = ExpeditedRcu::shared().restore_left_over();
    if (!repaired.empty()) spdlog::warn("{}", repaired);
  }
  object_.load(kind, filter, std::move(pcap), maps, counting);
}

KprobeBackend::~KprobeBackend() { detach(); }

void KprobeBackend::attach_multi_batch(int skb_arg, std::vector<std::size_t> idx, AttachReport& report,
                                       int& first_refusal, const std::function<bool()>& cancelled) {
  if (idx.empty() || (cancelled && cancelled())) return;
  std::vector<const char*> syms;
  std::vector<__u64> cookies;
  for (std::size_t i : idx) {
    syms.push_back(functions_[i].name.c_str());
    cookies.push_back(hooks_[i].id);
  }
  LIBBPF_OPTS(bpf_kprobe_multi_opts, opts, .syms = syms.data(), .cookies = cookies.data(), .cnt = syms.size());
  BpfLink link(bpf_program__attach_kprobe_multi_opts(object_.program(skb_arg), nullptr, &opts));
  if (link) {
    links_.push_back(std::move(link));
    report.attached += idx.size();
    return;
  }
  const int err = errno ? errno : EINVAL;
  // One symbol the kernel refuses fails the whole link: halve until it is found.
  if (idx.size() == 1) {
    if (!kernel_cannot_probe(err))
      throw SystemError("attaching a kprobe-multi link to " + functions_[idx[0]].name, err);
    if (!first_refusal) first_refusal = err;
    report.skipped.push_back(refusal(functions_[idx[0]].name, err));
    return;
  }
  const auto mid = idx.begin() + static_cast<long>(idx.size() / 2);
  attach_multi_batch(skb_arg, std::vector<std::size_t>(idx.begin(), mid), report, first_refusal, cancelled);
  attach_multi_batch(skb_arg, std::vector<std::size_t>(mid, idx.end()), report, first_refusal, cancelled);
}

AttachReport KprobeBackend::attach(const std::function<bool()>& cancelled, const AttachProgress& progress,
                                   unsigned threads) {
  AttachReport report;
  int first_refusal = 0;
  const std::size_t total = functions_.size();
  if (kind_ == KprobeKind::kKprobeMulti) {
    // Refusals are reported once each in report.skipped, not by libbpf.
    QuietLibbpf quiet;
    // -1: functions without an skb (--filter-non-skb-funcs).
    for (int arg = -1; arg < 5; ++arg) {
      std::vector<std::size_t> idx;
      for (std::size_t i = 0; i < total; ++i)
        if (functions_[i].skb_arg == arg) idx.push_back(i);
      attach_multi_batch(arg, std::move(idx), report, first_refusal, cancelled);
      if (progress) progress(report.attached + report.skipped.size(), total);
    }
  } else {
    first_refusal = attach_each_kprobe(cancelled, progress, threads, report);
  }
  if (report.attached == 0 && total > 0 && !(cancelled && cancelled()))
    throw SystemError("could not attach a single kprobe (" + report.skipped.front() + ")", first_refusal);
  if (object_.skb_freed_program() && !(cancelled && cancelled())) attach_skb_freed();
  if (object_.clone_entry_program() && !(cancelled && cancelled())) attach_clone_tracking(report);
  return report;
}

int KprobeBackend::attach_each_kprobe(const std::function<bool()>& cancelled, const AttachProgress& progress,
                                      unsigned threads, AttachReport& report) {
  const std::size_t total = functions_.size();
  // Slots by function, so threads never share one and the outcome keeps
  // function order; refused[i] stays 0 for functions never tried (cancelled).
  // Every link made is owned from the moment it exists: if attaching stops
  // on an error, those made so far detach with `made`.
  std::vector<BpfLink> made(total);
  std::vector<int> refused(total, 0);
  attach_each_in_parallel(
      total, threads,
      [&](std::size_t i) {
        // Per attach: the helper threads are quiet too.
        QuietLibbpf quiet;
        const SkbFunction& fn = functions_[i];
        LIBBPF_OPTS(bpf_kprobe_opts, opts, .bpf_cookie = hooks_[i].id);
        made[i].reset(bpf_program__attach_kprobe_opts(object_.program(fn.skb_arg), fn.name.c_str(), &opts));
        if (made[i]) return;
        refused[i] = errno ? errno : EINVAL;
        if (!kernel_cannot_probe(refused[i])) throw SystemError("attaching a kprobe to " + fn.name, refused[i]);
      },
      cancelled, progress);
  int first_refusal = 0;
  links_.reserve(links_.size() + total);
  for (std::size_t i = 0; i < total; ++i) {
    if (made[i]) {
      links_.push_back(std::move(made[i]));
      ++report.attached;
    } else if (refused[i]) {
      if (!first_refusal) first_refusal = refused[i];
      report.skipped.push_back(refusal(functions_[i].name, refused[i]));
    }
  }
  return first_refusal;
}

// The functions that make a new skb out of a tracked one (skb_copy_expand
// and pskb_copy are wrappers or inline on the kernels we run). Entry and
// return go together: an entry alone would leave clones half-tracked.
void KprobeBackend::attach_clone_tracking(AttachReport& report) {
  QuietLibbpf quiet;
  for (const char* function : {"skb_clone", "skb_copy", "__pskb_copy_fclone", "skb_copy_expand"}) {
    BpfLink entry(bpf_program__attach_kprobe(object_.clone_entry_program(), false, function));
    if (!entry) {
      report.skipped.push_back(refusal(std::string(function) + " (following clones)", errno));
      continue;
    }
    BpfLink exit(bpf_program__attach_kprobe(object_.clone_exit_program(), true, function));
    if (!exit) {
      report.skipped.push_back(refusal(std::string(function) + " return (following clones)", errno));
      continue;
    }
    // Room for both first: the exit's push_back cannot then fail after the
    // entry's went in, leaving an entry without its exit.
    links_.reserve(links_.size() + 2);
    links_.push_back(std::move(entry));
    links_.push_back(std::move(exit));
  }
}

// Without it a freed skb would stay tracked until the LRU map evicts it and
// later hooks on its stack would read freed memory: refuse to trace.
void KprobeBackend::attach_skb_freed() {
  constexpr const char* kFreeFunction = "kfree_skbmem";
  BpfLink link;
  if (kind_ == KprobeKind::kKprobeMulti) {
    const char* syms[] = {kFreeFunction};
    LIBBPF_OPTS(bpf_kprobe_multi_opts, opts, .syms = syms, .cnt = 1);
    link.reset(bpf_program__attach_kprobe_multi_opts(object_.skb_freed_program(), nullptr, &opts));
  } else {
    link.reset(bpf_program__attach_kprobe(object_.skb_freed_program(), false, kFreeFunction));
  }
  if (!link)
    throw SystemError(std::string("could not attach to ") + kFreeFunction +
                          ", which tracking skbs by stack needs to forget freed skbs; "
                          "run without --filter-track-skb-by-stackid and --filter-non-skb-funcs",
                      errno);
  links_.push_back(std::move(link));
}

void KprobeBackend::detach(unsigned threads) noexcept {
  if (links_.empty()) return;
  std::optional<ExpeditedRcu::Hold> expedite;
  if (kind_ == KprobeKind::kKprobe && links_.size() > 1) {
    try {
      expedite.emplace(ExpeditedRcu::shared());
    } catch (...) {
      // Without the knob detach is only slower.
    }
  }
  if (threads <= 1 || links_.size() < 2 * threads) {
    links_.clear();
    return;
  }
  // Each thread takes every threads-th link, so the RCU waits overlap.
  std::vector<std::thread> workers;
  try {
    for (unsigned t = 0; t < threads; ++t)
      workers.emplace_back([this, t, threads] {
        for (std::size_t i = t; i < links_.size(); i += threads) links_[i].reset();
      });
  } catch (...) {
    // A thread could not be started: this one takes the shares nobody owns.
    for (std::size_t i = 0; i < links_.size(); ++i)
      if (i % threads >= workers.size()) links_[i].reset();
  }
  for (std::thread& w : workers) w.join();
  links_.clear();
}

}  // namespace pwru
