// Benchmark helper: fills a running pwru-agent's counter maps with synthetic
// keys, so a scrape has as many series as a busy node would.
//
// Usage (root): fill_counter_maps MAX_ENTRIES DROP_KEYS VISIT_KEYS HOOKS
// The agent's maps are found by name (drop_counts, visit_counts) and by
// MAX_ENTRIES, which the benchmark's configuration sets to a value no other
// program uses. Drop locations are real kernel text addresses from
// /proc/kallsyms, so the scrape symbolizes as it would for real drops.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "pwru_abi.h"

namespace {

int find_map(const char* name, std::uint32_t max_entries) {
  std::uint32_t id = 0;
  while (bpf_map_get_next_id(id, &id) == 0) {
    const int fd = bpf_map_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_map_info info = {};
    std::uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && std::strcmp(info.name, name) == 0 &&
        info.max_entries == max_entries)
      return fd;
    close(fd);
  }
  std::fprintf(stderr, "fill_counter_maps: no map %s with max_entries %u (is the agent running with it?)\n", name,
               max_entries);
  std::exit(1);
}

std::vector<std::uint64_t> text_addresses(std::size_t wanted) {
  std::ifstream in("/proc/kallsyms");
  std::vector<std::uint64_t> out;
  std::string line;
  while (out.size() < wanted && std::getline(in, line)) {
    std::istringstream f(line);
    std::string addr, type, name;
    if (!(f >> addr >> type >> name) || (type != "t" && type != "T")) continue;
    const std::uint64_t a = std::strtoull(addr.c_str(), nullptr, 16);
    if (a != 0) out.push_back(a);
  }
  if (out.size() < wanted) {
    std::fprintf(stderr, "fill_counter_maps: kallsyms has only %zu text addresses\n", out.size());
    std::exit(1);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MAX_ENTRIES DROP_KEYS VISIT_KEYS HOOKS\n", argv[0]);
    return 2;
  }
  const auto max_entries = static_cast<std::uint32_t>(std::strtoul(argv[1], nullptr, 10));
  const std::size_t drops = std::strtoul(argv[2], nullptr, 10);
  const std::size_t visits = std::strtoul(argv[3], nullptr, 10);
  const std::size_t hooks = std::strtoul(argv[4], nullptr, 10);
  if (hooks == 0) return 2;
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<pwru_count> value(static_cast<std::size_t>(ncpus));
  value[0] = pwru_count{1, 100};

  const int drop_fd = find_map("drop_counts", max_entries);
  const std::vector<std::uint64_t> locations = text_addresses(drops);
  constexpr std::uint32_t kFakeNetnsBase = 4026600000u;  // far above real inodes
  for (std::size_t i = 0; i < drops; ++i) {
    pwru_drop_key key{kFakeNetnsBase + static_cast<std::uint32_t>(i % 500), static_cast<std::uint32_t>(2 + i % 7),
                      locations[i]};
    if (bpf_map_update_elem(drop_fd, &key, value.data(), BPF_ANY)) {
      std::perror("drop_counts update");
      return 1;
    }
  }
  const int visit_fd = find_map("visit_counts", max_entries);
  for (std::size_t i = 0; i < visits; ++i) {
    pwru_visit_key key{kFakeNetnsBase + static_cast<std::uint32_t>(i / hooks), static_cast<std::uint16_t>(i % hooks),
                       0};
    if (bpf_map_update_elem(visit_fd, &key, value.data(), BPF_ANY)) {
      std::perror("visit_counts update");
      return 1;
    }
  }
  std::printf("filled %zu drop keys and %zu visit keys\n", drops, visits);
  return 0;
}
