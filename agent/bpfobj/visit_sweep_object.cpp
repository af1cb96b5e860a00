#include "bpfobj/visit_sweep_object.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "common/error.h"
#include "pwru_abi.h"
#include "pwru_visit_sweep.skel.h"

namespace pwru {

VisitSweepObject::VisitSweepObject(int visit_cache_fd) : ncpus_(libbpf_num_possible_cpus()) {
  if (ncpus_ <= 0) throw SystemError("counting the possible CPUs", -ncpus_);
  skel_ = pwru_visit_sweep__open();
  if (!skel_) throw_libbpf("opening the embedded visit cache sweeper BPF object", 0);
  if (int err = bpf_map__reuse_fd(skel_->maps.visit_cache, visit_cache_fd)) {
    pwru_visit_sweep__destroy(skel_);
    throw_libbpf("sharing the visit cache with its sweeper", err);
  }
  if (int err = pwru_visit_sweep__load(skel_)) {
    pwru_visit_sweep__destroy(skel_);
    throw_libbpf("loading the visit cache sweeper", err);
  }
}

VisitSweepObject::~VisitSweepObject() { pwru_visit_sweep__destroy(skel_); }

std::size_t VisitSweepObject::sweep_all_cpus() const {
  const int prog = bpf_program__fd(skel_->progs.pwru_visit_sweep);
  std::size_t freed = 0;
  for (int cpu = 0; cpu < ncpus_; ++cpu) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = static_cast<__u32>(cpu));
    if (bpf_prog_test_run_opts(prog, &opts) != 0) {
      if (errno == ENXIO) continue;  // possible but not online
      throw SystemError("running the visit cache sweeper on CPU " + std::to_string(cpu), errno);
    }
    freed += opts.retval;
  }
  return freed;
}

std::size_t VisitSweepObject::free_slots_of(const std::vector<std::uint32_t>& netns) const {
  const int gone = bpf_map__fd(skel_->maps.gone_netns);
  std::size_t freed = 0;
  for (std::size_t begin = 0; begin < netns.size(); begin += PWRU_VISIT_SWEEP_MAX_NETNS) {
    const std::size_t end = std::min(netns.size(), begin + PWRU_VISIT_SWEEP_MAX_NETNS);
    // Emptied whatever happens: a netns left in the map would have its slots
    // freed by later sweeps, after its inode may belong to a new netns.
    struct Clear {
      int fd;
      const std::uint32_t* first;
      const std::uint32_t* last;
      ~Clear() {
        for (const std::uint32_t* n = first; n != last; ++n) bpf_map_delete_elem(fd, n);
      }
    } clear{gone, netns.data() + begin, netns.data() + end};
    const std::uint8_t one = 1;
    for (std::size_t i = begin; i < end; ++i)
      if (bpf_map_update_elem(gone, &netns[i], &one, BPF_ANY) != 0)
        throw SystemError("naming a gone netns to the visit cache sweeper", errno);
    freed += sweep_all_cpus();
  }
  return freed;
}

}  // namespace pwru
