// What the always-on kernel counters hold at one instant, as plain data:
// the metrics collector reads it through CounterSource, which the BPF map
// reader implements and unit tests fake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pwru {

// Summed over CPUs. Kernel entries are never deleted, so each value only
// grows between two reads.
struct DropCount {
  std::uint32_t netns = 0;     // inode of the skb's network namespace
  std::uint32_t reason = 0;    // enum skb_drop_reason value
  std::uint64_t location = 0;  // kfree_skb's location: an address in the dropping function
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};

struct VisitCount {
  std::uint32_t netns = 0;
  std::uint16_t hook_id = 0;  // index into the hook names the collector was given
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};

struct CounterSnapshot {
  std::vector<DropCount> drops;
  std::vector<VisitCount> visits;
  // Packets the kernel could not count because its map was full.
  std::uint64_t drops_overflow_packets = 0;
  std::uint64_t visits_overflow_packets = 0;
  // Lookups of the kernel's per-CPU counters that failed in this read: the
  // overflow counts above then read 0, not the kernel's. The first one's errno.
  std::uint32_t failed_counter_lookups = 0;
  int failed_lookup_errno = 0;
};

class CounterSource {
 public:
  virtual ~CounterSource() = default;
  virtual CounterSnapshot read() const = 0;
};

// Who a network namespace belongs to, as far as the resolver knows.
struct PodIdentity {
  enum class Kind {
    kUnknown,  // no resolver, or no known pod lives there (yet)
    kHost,     // the host's netns (hostNetwork pods included)
    kPod,      // namespace_name/pod; also a deleted pod's, during its grace
    kGone,     // a deleted pod's, past its grace: its series are dropped
  } kind = Kind::kUnknown;
  std::string namespace_name;  // set for kPod
  std::string pod;
};

class NetnsResolver {
 public:
  virtual ~NetnsResolver() = default;
  virtual PodIdentity resolve(std::uint32_t netns_inode) const = 0;
};

// Knows no pods (pod identity is off): every netns is kUnknown.
class NoPodResolver final : public NetnsResolver {
 public:
  PodIdentity resolve(std::uint32_t) const override { return {}; }
};

}  // namespace pwru
