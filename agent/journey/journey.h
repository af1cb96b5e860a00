// --summary: follows each skb through the events of a trace and says, at
// the end, where it went: the hooks it passed with relative times, and its
// fate (delivered to a socket, transmitted, dropped with a reason and a
// hint, consumed by the kernel, or still in flight). No kernel access:
// events arrive with their names resolved.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "journey/drop_hints.h"
#include "pwru_abi.h"

namespace pwru {

enum class Fate { InFlight, Delivered, Transmitted, Consumed, Dropped };
std::string_view fate_name(Fate fate);  // "in_flight", "delivered", ...

struct JourneyStep {
  std::uint64_t ts_ns = 0;
  std::string func;     // as the event line prints it
  std::string iface;    // "lo:1", "" without a device
  std::string process;  // "comm:pid"
  std::uint32_t netns = 0;
};

struct Journey {
  std::uint64_t skb = 0;
  pwru_tuple tuple{};  // the first tuple seen (before any NAT)
  std::vector<JourneyStep> steps;
  std::uint64_t steps_not_kept = 0;
  Fate fate = Fate::InFlight;
  std::string where;   // dropped/consumed: function; transmitted: iface; delivered: reader; in flight: last hook
  std::string reason;  // dropped: the kernel's reason name
  std::uint32_t netns = 0;  // where the fate happened
  std::string hint;
};

// What an event says about an skb, beyond its step.
struct JourneyEvent {
  const pwru_event& event;
  std::string_view hook;        // bare hook name
  std::string_view func;        // as printed, with the drop reason
  std::string_view reason;      // the drop reason's name, "" when none
  std::string_view location;    // function the drop/free location is in, "" when unknown
};

class JourneyTracker {
 public:
  struct Limits {
    std::size_t journeys = 4096;  // skbs followed; later ones are counted, not kept
    std::size_t steps = 64;       // steps kept per skb; later ones are counted
  };
  explicit JourneyTracker(DropHints hints);
  JourneyTracker(DropHints hints, Limits limits);

  void add(const JourneyEvent& e);
  // Every skb seen, in the order first seen, with its fate decided.
  std::vector<Journey> journeys() const;
  std::uint64_t skbs_not_kept() const { return skbs_not_kept_; }
  const Limits& limits() const { return limits_; }

 private:
  enum class Kind : std::uint8_t { Other, Transmit, Deliver, Free, Drop };
  struct Tracked {
    Journey journey;
    std::vector<Kind> kinds;  // per kept step
    pwru_tuple last_tuple{};
    bool freed = false;
    std::size_t drop_step = SIZE_MAX;
    std::string free_location;
  };
  static Kind kind_of(const JourneyEvent& e);
  // Whether e, at the address of t's skb, belongs to another packet.
  static bool is_another_packet(const Tracked& t, const JourneyEvent& e, Kind kind);
  Journey decide(const Tracked& t) const;

  DropHints hints_;
  Limits limits_;
  std::vector<Tracked> tracked_;
  std::unordered_map<std::uint64_t, std::size_t> open_;  // skb address -> index in tracked_
  std::uint64_t skbs_not_kept_ = 0;
};

// The summary block `pwru --summary` prints after the events.
std::string journeys_text(const std::vector<Journey>& journeys, std::uint64_t skbs_not_kept);
// One JSON object per skb, as --output-json prints them ({"journey": ...})
// and the trace API's summary line carries them.
nlohmann::json journey_json(const Journey& journey);

}  // namespace pwru
