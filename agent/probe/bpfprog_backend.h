// --filter-trace-tc and --filter-trace-xdp: every tc (sched_cls) or XDP
// program loaded on the node, traced at its entry function with fentry, as
// pwru does. Each traced program is a hook named as pwru prints it,
// "bpf_prog_<tag>_<function>(tc)" or "...(xdp)".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bpfobj/bpfprog_object.h"
#include "probe/tracepoint_backend.h"

namespace pwru {

class BpfProgBackend {
 public:
  // Finds the programs of the kinds asked for and loads a tracer for each;
  // hook ids start at first_hook_id. Programs without BTF (no entry
  // function name) are skipped with the reason. Throws UsageError when
  // the kernel refuses fentry on BPF programs altogether.
  BpfProgBackend(bool trace_tc, bool trace_xdp, std::uint16_t first_hook_id, const pwru_filter_cfg& filter,
                 std::shared_ptr<const CompiledPcap> pcap, const SharedMaps& maps);
  ~BpfProgBackend();
  BpfProgBackend(const BpfProgBackend&) = delete;
  BpfProgBackend& operator=(const BpfProgBackend&) = delete;

  AttachReport attach();
  void detach() noexcept;
  const std::vector<Hook>& hooks() const { return hooks_; }
  // Why programs were not traced ("name: reason"), found while loading.
  const std::vector<std::string>& skipped() const { return skipped_; }

 private:
  std::vector<Hook> hooks_;
  std::vector<std::unique_ptr<BpfProgObject>> tracers_;
  std::vector<int> target_fds_;
  std::vector<std::string> skipped_;
};

}  // namespace pwru
