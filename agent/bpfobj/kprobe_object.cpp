#include "bpfobj/kprobe_object.h"

#include <bpf/libbpf.h>

#include <cstring>
#include <vector>

#include "common/error.h"
#include "filter/pcap_injector.h"
#include "pwru_kprobe.skel.h"

namespace pwru {

KprobeObject::KprobeObject() {
  register_pcap_sections();
  skel_ = pwru_kprobe__open();
  if (!skel_) throw_libbpf("opening the embedded kprobe BPF object", 0);
}

KprobeObject::~KprobeObject() {
  for (struct bpf_program* prog : progs_)
    if (prog) clear_program_filter(prog);
  pwru_kprobe__destroy(skel_);
}

void KprobeObject::only_autoload(const std::vector<struct bpf_program*>& wanted) {
  struct bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    bool keep = false;
    for (struct bpf_program* w : wanted) keep = keep || w == prog;
    bpf_program__set_autoload(prog, keep);
  }
}

void KprobeObject::load(KprobeKind kind, const pwru_filter_cfg& filter, std::shared_ptr<const CompiledPcap> pcap,
                        const SharedMaps& maps, const pwru_count_cfg& counting) {
  auto& p = skel_->progs;
  const bool multi = kind == KprobeKind::kKprobeMulti;
  struct bpf_program* chosen[5] = {
      multi ? p.pwru_kmulti_skb_1 : p.pwru_kprobe_skb_1, multi ? p.pwru_kmulti_skb_2 : p.pwru_kprobe_skb_2,
      multi ? p.pwru_kmulti_skb_3 : p.pwru_kprobe_skb_3, multi ? p.pwru_kmulti_skb_4 : p.pwru_kprobe_skb_4,
      multi ? p.pwru_kmulti_skb_5 : p.pwru_kprobe_skb_5};
  std::memcpy(progs_, chosen, sizeof(progs_));
  const std::vector<struct bpf_program*> programs(progs_, progs_ + 5);
  std::vector<struct bpf_program*> loaded = programs;
  if (filter.track_skb_by_stack) {
    no_skb_ = multi ? p.pwru_kmulti_no_skb : p.pwru_kprobe_no_skb;
    loaded.push_back(no_skb_);
  }
  // Both kinds of tracking end where the skb's memory is freed (the
  // tracepoints see kfree_skb and consume_skb, not every free).
  if (filter.track_skb_by_stack || filter.track_skb) {
    skb_freed_ = multi ? p.pwru_kmulti_skb_freed : p.pwru_kprobe_skb_freed;
    loaded.push_back(skb_freed_);
  }
  if (filter.track_skb) {
    clone_entry_ = p.pwru_clone_entry;
    clone_exit_ = p.pwru_clone_exit;
    loaded.push_back(clone_entry_);
    loaded.push_back(clone_exit_);
  }
  only_autoload(loaded);
  // Only the skb programs filter; the other two have no skb of their own.
  const pwru_filter_cfg cfg = arm_pcap(programs, filter, pcap);
  std::memcpy(const_cast<pwru_filter_cfg*>(&skel_->rodata->filter_cfg), &cfg, sizeof(cfg));
  std::memcpy(const_cast<pwru_count_cfg*>(&skel_->rodata->count_cfg), &counting, sizeof(counting));
  // The tracepoint object's maps: one ring, one set of counters, one
  // tracked set for both objects.
  maps.share_with(skel_->obj);
  if (int err = pwru_kprobe__load(skel_)) {
    throw_if_injection_failed(programs);
    throw_libbpf(std::string("loading the ") + (multi ? "kprobe-multi" : "kprobe") +
                     " BPF programs (run with --debug for the verifier log)",
                 err);
  }
}

void KprobeObject::load_feature_probe(KprobeKind kind) {
  feature_ =
      kind == KprobeKind::kKprobeMulti ? skel_->progs.pwru_feature_kprobe_multi : skel_->progs.pwru_feature_kprobe;
  only_autoload({feature_});
  // The probe writes nothing: keep its maps as small as the kernel allows.
  bpf_map__set_max_entries(skel_->maps.events, 4096);
  bpf_map__set_max_entries(skel_->maps.stacks, 1);
  if (int err = pwru_kprobe__load(skel_))
    throw_libbpf(
        std::string("loading a ") + (kind == KprobeKind::kKprobeMulti ? "kprobe-multi" : "kprobe") + " program", err);
}

struct bpf_program* KprobeObject::program(int skb_arg) const {
  if (skb_arg > 4) throw SystemError("skb argument position out of range", EINVAL);
  if (skb_arg < 0) {
    if (!no_skb_) throw SystemError("a function without an skb argument needs skb tracking by stack", EINVAL);
    return no_skb_;
  }
  return progs_[skb_arg];
}

}  // namespace pwru
