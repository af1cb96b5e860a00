// A libbpf link as an owned value: destroyed (its program detached) exactly
// once, however its owner goes, as UniqueFd does for descriptors. A raw
// pointer between bpf_program__attach* and its owner's container leaks the
// attachment when anything in between throws.
#pragma once

#include <bpf/libbpf.h>

#include <memory>

namespace pwru {

struct BpfLinkDestroyer {
  void operator()(struct bpf_link* link) const noexcept { bpf_link__destroy(link); }
};

using BpfLink = std::unique_ptr<struct bpf_link, BpfLinkDestroyer>;

}  // namespace pwru
