#include "bpfobj/bpfprog_object.h"

#include <bpf/libbpf.h>

#include <cstring>

#include "common/error.h"
#include "filter/pcap_injector.h"
#include "pwru_bpfprog.skel.h"

namespace pwru {

BpfProgObject::BpfProgObject(TracedProgKind kind, int target_fd, const std::string& entry, std::uint16_t hook_id,
                             const pwru_filter_cfg& filter, std::shared_ptr<const CompiledPcap> pcap,
                             const SharedMaps& maps) {
  register_pcap_sections();
  skel_ = pwru_bpfprog__open();
  if (!skel_) throw_libbpf("opening the embedded fentry BPF object", 0);
  try {
    prog_ = kind == TracedProgKind::kTc ? skel_->progs.pwru_fentry_tc : skel_->progs.pwru_fentry_xdp;
    struct bpf_program* other =
        kind == TracedProgKind::kTc ? skel_->progs.pwru_fentry_xdp : skel_->progs.pwru_fentry_tc;
    bpf_program__set_autoload(other, false);
    const pwru_filter_cfg cfg = arm_pcap({prog_}, filter, pcap);
    std::memcpy(const_cast<pwru_filter_cfg*>(&skel_->rodata->filter_cfg), &cfg, sizeof(cfg));
    *const_cast<std::uint16_t*>(&skel_->rodata->traced_hook_id) = hook_id;
    if (int err = bpf_program__set_attach_target(prog_, target_fd, entry.c_str()))
      throw_libbpf("pointing fentry at " + entry + " (the program needs BTF)", err);
    maps.share_with(skel_->obj);
    if (int err = pwru_bpfprog__load(skel_)) {
      throw_if_injection_failed({prog_});
      throw_libbpf("loading fentry on " + entry, err);
    }
  } catch (...) {
    clear_program_filter(prog_);
    pwru_bpfprog__destroy(skel_);
    throw;
  }
}

BpfProgObject::~BpfProgObject() {
  detach();
  clear_program_filter(prog_);
  pwru_bpfprog__destroy(skel_);
}

bool BpfProgObject::attach() {
  link_.reset(bpf_program__attach_trace(prog_));
  return static_cast<bool>(link_);
}

void BpfProgObject::detach() noexcept { link_.reset(); }

}  // namespace pwru
