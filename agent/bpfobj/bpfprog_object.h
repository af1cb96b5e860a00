// Owns one instance of the fentry BPF object (bpftool skeleton) bound to
// one tc or XDP program: --filter-trace-tc/-xdp load one per traced
// program, because an fentry program names its target at load. Its maps
// are the tracepoint object's, so its events go into the one ring.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "bpfobj/bpf_link.h"
#include "bpfobj/kprobe_object.h"
#include "filter/pcap_compiler.h"
#include "pwru_abi.h"

struct pwru_bpfprog;

namespace pwru {

enum class TracedProgKind { kTc, kXdp };

class BpfProgObject {
 public:
  // Loads the fentry program for `kind`, attached to function `entry` of
  // the program behind `target_fd`. Throws SystemError with libbpf's reason.
  BpfProgObject(TracedProgKind kind, int target_fd, const std::string& entry, std::uint16_t hook_id,
                const pwru_filter_cfg& filter, std::shared_ptr<const CompiledPcap> pcap, const SharedMaps& maps);
  ~BpfProgObject();
  BpfProgObject(const BpfProgObject&) = delete;
  BpfProgObject& operator=(const BpfProgObject&) = delete;

  // Creates the fentry link; false (errno set) when the kernel refuses.
  bool attach();
  void detach() noexcept;

 private:
  struct pwru_bpfprog* skel_ = nullptr;
  struct bpf_program* prog_ = nullptr;
  BpfLink link_;
};

}  // namespace pwru
