// The maps a trace's BPF objects share. The tracepoint object creates them;
// the kprobe and fentry objects write into the same ring, counters and
// tracked set. One list for every object: a map left out of one object's
// sharing would silently become a private copy there (events written into a
// ring nobody reads). tests/unit/shared_maps_test.cpp fails when an object
// declares a map of another object's name that is in neither list below.
#pragma once

#include <array>
#include <string_view>

struct bpf_object;

namespace pwru {

inline constexpr std::array<std::string_view, 11> kSharedMapNames = {
    "events",       "counters",  "stacks",       "drop_counts", "visit_counts", "visit_cache",
    "tracked_skbs", "print_skb", "print_shinfo", "dump_seq",    "filter_netns"};

// Declared by several objects and private to each on purpose: per-CPU
// scratch that lives within one program run.
inline constexpr std::array<std::string_view, 1> kPrivateMapNames = {"btf_scratch"};

class SharedMaps {
 public:
  // No maps: an object given these creates its own (the backend feature probe).
  SharedMaps();

  // The listed maps of `creator`, which is loaded and outlives every object
  // they are shared with.
  static SharedMaps of(const struct bpf_object* creator);

  // Before `object` loads: every listed map it declares takes the creator's
  // instead of its own. Throws naming the map when there is none to take.
  void share_with(struct bpf_object* object) const;

 private:
  std::array<int, kSharedMapNames.size()> fds_;
};

}  // namespace pwru
