// kprobe and kprobe-multi backends: every planned skb function gets the
// program for its skb position, with its hook id as the attach cookie.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bpfobj/bpf_link.h"
#include "bpfobj/kprobe_object.h"
#include "btf/kernel_btf.h"
#include "probe/tracepoint_backend.h"

namespace pwru {

// Whether a kprobe refused with `err` is skipped and reported (the kernel
// cannot probe that function: pwru skips ENOENT and EADDRNOTAVAIL; the
// blacklist's EINVAL and a bad address's EILSEQ are the same answer)
// rather than ending the trace with the real error (EPERM under lockdown,
// EMFILE, ENOMEM...).
bool kernel_cannot_probe(int err);

// Called while attaching: (done, total).
using AttachProgress = std::function<void(std::size_t, std::size_t)>;

class KprobeBackend {
 public:
  // Hook ids are first_hook_id, first_hook_id + 1, ... in `functions` order.
  // `counting`: pwru-agent's, as the tracepoint backend whose maps these are
  // has it (TracepointBackend::counting()); zero in a trace.
  KprobeBackend(KprobeKind kind, std::vector<SkbFunction> functions, std::uint16_t first_hook_id,
                const pwru_filter_cfg& filter, std::shared_ptr<const CompiledPcap> pcap, const SharedMaps& maps,
                const pwru_count_cfg& counting = {});
  ~KprobeBackend();
  KprobeBackend(const KprobeBackend&) = delete;
  KprobeBackend& operator=(const KprobeBackend&) = delete;

  // Plain kprobes are attached from `threads` threads (registering one
  // waits on the kernel, not on us: the waits overlap); report.skipped
  // keeps `functions` order. Progress comes from the calling thread.
  AttachReport attach(const std::function<bool()>& cancelled, const AttachProgress& progress,
                      unsigned threads = kDefaultThreads);
  // Destroys every link, from `threads` threads for plain kprobes (closing a
  // kprobe waits for an RCU grace period; those waits overlap across
  // threads). Idempotent; the destructor does it with the default.
  void detach(unsigned threads = kDefaultThreads) noexcept;

  const std::vector<Hook>& hooks() const { return hooks_; }
  KprobeKind kind() const { return kind_; }

  // pwru's --filter-kprobe-batch default.
  static constexpr unsigned kDefaultThreads = 10;

 private:
  void attach_multi_batch(int skb_arg, std::vector<std::size_t> idx, AttachReport& report, int& first_refusal,
                          const std::function<bool()>& cancelled);
  // Returns the errno of the first function the kernel refused (0: none).
  int attach_each_kprobe(const std::function<bool()>& cancelled, const AttachProgress& progress, unsigned threads,
                         AttachReport& report);
  void attach_skb_freed();
  void attach_clone_tracking(AttachReport& report);

  KprobeKind kind_;
  std::vector<SkbFunction> functions_;
  std::vector<Hook> hooks_;
  KprobeObject object_;
  std::vector<BpfLink> links_;
};

}  // namespace pwru
