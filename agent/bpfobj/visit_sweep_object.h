// Frees the visit cache slots of gone network namespaces: loads
// bpf/pwru_visit_sweep.bpf.c over the counting object's visit_cache map and
// runs it on each CPU, since only a CPU's own program may write its slots.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

struct pwru_visit_sweep;

namespace pwru {

class VisitSweepObject {
 public:
  // Loads the sweeper over `visit_cache_fd`, which must outlive this object.
  // Throws (libbpf's message) when the kernel refuses it.
  explicit VisitSweepObject(int visit_cache_fd);
  ~VisitSweepObject();
  VisitSweepObject(const VisitSweepObject&) = delete;
  VisitSweepObject& operator=(const VisitSweepObject&) = delete;

  // Frees the slots that hold these netns on every online CPU (an offline
  // CPU counts nothing, and its slots are freed by a later call once it is
  // back). Returns the slots freed. Throws SystemError when the kernel
  // cannot run the sweeper on a given CPU (BPF_F_TEST_RUN_ON_CPU: 5.10+).
  std::size_t free_slots_of(const std::vector<std::uint32_t>& netns) const;

 private:
  std::size_t sweep_all_cpus() const;

  struct pwru_visit_sweep* skel_ = nullptr;
  int ncpus_ = 0;
};

}  // namespace pwru
