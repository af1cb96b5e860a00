#include "bpfobj/shared_maps.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <string>

#include "common/error.h"

namespace pwru {

namespace {

int index_of(std::string_view name) {
  for (std::size_t i = 0; i < kSharedMapNames.size(); ++i)
    if (kSharedMapNames[i] == name) return static_cast<int>(i);
  return -1;
}

}  // namespace

SharedMaps::SharedMaps() { fds_.fill(-1); }

SharedMaps SharedMaps::of(const struct bpf_object* creator) {
  SharedMaps maps;
  struct bpf_map* map;
  bpf_object__for_each_map(map, creator) {
    const int i = index_of(bpf_map__name(map));
    if (i >= 0) maps.fds_[static_cast<std::size_t>(i)] = bpf_map__fd(map);
  }
  return maps;
}

void SharedMaps::share_with(struct bpf_object* object) const {
  struct bpf_map* map;
  bpf_object__for_each_map(map, object) {
    const char* name = bpf_map__name(map);
    const int i = index_of(name);
    if (i < 0) continue;
    const int shared_fd = fds_[static_cast<std::size_t>(i)];
    if (shared_fd < 0)
      throw SystemError(std::string("sharing the map ") + name + ": the tracepoint object has none to share", ENOENT);
    if (int err = bpf_map__reuse_fd(map, shared_fd)) throw_libbpf(std::string("sharing the map ") + name, err);
  }
}

}  // namespace pwru
