// Owns one instance of the kprobe BPF object (bpftool skeleton): the five
// per-position programs of one attach kind (plus, when skbs are tracked by
// stack, the programs for functions without an skb and for kfree_skbmem),
// sharing the event maps of the tracepoint object so all hooks write into
// one ring.
#pragma once

#include <memory>
#include <string>

#include "bpfobj/shared_maps.h"
#include "filter/pcap_compiler.h"
#include "pwru_abi.h"

struct pwru_kprobe;
struct bpf_program;

namespace pwru {

enum class KprobeKind { kKprobe, kKprobeMulti };

class KprobeObject {
 public:
  KprobeObject();
  ~KprobeObject();
  KprobeObject(const KprobeObject&) = delete;
  KprobeObject& operator=(const KprobeObject&) = delete;

  // Loads the programs of `kind`, writing into `maps`; the stack-tracking
  // pair too when filter.track_skb_by_stack is set. `counting` must be the
  // tracepoint object's (pwru-agent's counters), zero in a trace.
  void load(KprobeKind kind, const pwru_filter_cfg& filter, std::shared_ptr<const CompiledPcap> pcap,
            const SharedMaps& maps, const pwru_count_cfg& counting = {});
  // Loads only the empty feature-probe program of `kind` (tiny maps).
  void load_feature_probe(KprobeKind kind);

  // The program for an skb at argument position skb_arg (0..4), or for a
  // function without one (skb_arg < 0; needs stack tracking).
  struct bpf_program* program(int skb_arg) const;
  // The kfree_skbmem program that ends an skb's tracking (null without it).
  bpf_program* skb_freed_program() const { return skb_freed_; }
  // --filter-track-skb: entry and return of skb_clone and friends, which
  // add clones of tracked skbs to the tracked set (null without it).
  bpf_program* clone_entry_program() const { return clone_entry_; }
  bpf_program* clone_exit_program() const { return clone_exit_; }
  bpf_program* feature_probe() const { return feature_; }

 private:
  void only_autoload(const std::vector<struct bpf_program*>& wanted);
  struct pwru_kprobe* skel_ = nullptr;
  struct bpf_program* progs_[5] = {};
  struct bpf_program* no_skb_ = nullptr;
  struct bpf_program* skb_freed_ = nullptr;
  struct bpf_program* clone_entry_ = nullptr;
  struct bpf_program* clone_exit_ = nullptr;
  struct bpf_program* feature_ = nullptr;
};

}  // namespace pwru
