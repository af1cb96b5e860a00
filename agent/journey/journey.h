// --summary: follows each skb through the events of a trace and says, at
// the end, where it went: the hooks it passed with relative times, and its
// fate (delivered to a socket, transmitted, dropped with a reason and a
// hint, consumed by the kernel, or still in flight). No kernel access:
// events arrive with their names resolved.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "journey/drop_hints.h"
#include "journey/journey_budget.h"
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
  // The packet's identity where `tuple` was read, when the trace asked for
  // it (PWRU_OUT_IDENT): what journey/stitch.h finds the packet by on
  // another node.
  std::optional<pwru_part_ident> ident;
  std::vector<JourneyStep> steps;
  std::uint64_t steps_not_kept = 0;
  Fate fate = Fate::InFlight;
  std::string where;        // dropped/consumed: function; transmitted: iface; delivered: reader; in flight: last hook
  std::string reason;       // dropped: the kernel's reason name
  std::uint32_t netns = 0;  // where the fate happened
  std::string hint;
};

// What an event says about an skb, beyond its step.
struct JourneyEvent {
  const pwru_event& event;
  std::string_view hook;      // bare hook name
  std::string_view func;      // as printed, with the drop reason
  std::string_view reason;    // the drop reason's name, "" when none
  std::string_view location;  // function the drop/free location is in, "" when unknown
};

// What a tracker did not keep, by reason.
struct JourneyCounts {
  std::uint64_t kept = 0;          // skbs followed
  std::uint64_t not_followed = 0;  // skbs seen but not followed, for either reason below
  std::uint64_t cut = 0;           // of those, the ones the memory budget had no room for
  std::uint64_t hooks_cut = 0;     // hooks of followed skbs the memory budget had no room for
};

// Follows skbs through a trace's events. Memory is charged to a
// JourneyBudget (shared by every tracker that holds it) before it is taken:
// once the budget is spent, new skbs are not followed and followed ones get
// no more hooks, but their fates are still decided from every event (a drop
// after the cut is still a drop).
class JourneyTracker {
 public:
  struct Limits {
    std::size_t journeys = 4096;  // skbs followed; later ones are counted, not kept
    std::size_t steps = 64;       // steps kept per skb; later ones are counted
  };
  JourneyTracker(DropHints hints, std::shared_ptr<JourneyBudget> budget);
  JourneyTracker(DropHints hints, Limits limits, std::shared_ptr<JourneyBudget> budget);
  ~JourneyTracker();  // gives back what it charged
  JourneyTracker(const JourneyTracker&) = delete;
  JourneyTracker& operator=(const JourneyTracker&) = delete;

  void add(const JourneyEvent& e);
  // Every skb followed, in the order first seen, with its fate decided, one
  // at a time: a summary of many skbs is written without a second copy of
  // them all in memory.
  void for_each(const std::function<void(const Journey&)>& visit) const;
  std::vector<Journey> journeys() const;  // for_each into a vector
  JourneyCounts counts() const;
  std::uint64_t skbs_not_kept() const { return not_followed_; }
  const Limits& limits() const { return limits_; }
  const JourneyBudget& budget() const { return *budget_; }
  std::uint64_t charged() const { return charged_; }  // bytes this tracker holds of the budget

 private:
  enum class Kind : std::uint8_t { Other, Transmit, Deliver, Free, Drop };
  // A hook an skb passed, its names interned (ids into names_): 24 bytes
  // instead of three strings.
  struct Hop {
    std::uint64_t ts_ns = 0;
    std::uint32_t netns = 0;
    std::uint32_t func = 0;
    std::uint32_t iface = 0;
    std::uint32_t process = 0;
  };
  // A hop that decides a fate, kept whether or not the hop list had room.
  struct FateHop {
    Hop hop;
    bool seen = false;
    bool listed = false;  // also in Tracked::hops
  };
  struct Tracked {
    std::uint64_t skb = 0;
    pwru_tuple tuple{};  // the first tuple seen (before any NAT)
    pwru_tuple last_tuple{};
    std::optional<pwru_part_ident> ident;  // with `tuple`
    std::vector<Hop> hops;
    std::uint64_t hops_not_kept = 0;
    bool freed = false;
    Kind live_kind = Kind::Other;
    FateHop drop;                     // the first drop
    FateHop deliver;                  // the last delivery
    FateHop live;                     // the last hop not part of freeing it
    FateHop free_hop;                 // the last free without a reason
    std::uint32_t reason = 0;         // the drop's reason name
    std::uint32_t drop_where = 0;     // the function that dropped it
    std::uint32_t free_location = 0;  // the function that freed it
  };
  static Kind kind_of(const JourneyEvent& e);
  // Whether e, at the address of t's skb, belongs to another packet.
  bool is_another_packet(const Tracked& t, const JourneyEvent& e, Kind kind) const;
  Journey decide(const Tracked& t) const;

  bool charge(std::uint64_t bytes);
  void charge_anyway(std::uint64_t bytes);
  // The id of `text`, interned if it is not yet; none when the budget has no
  // room for it (always one, with `anyway`).
  std::optional<std::uint32_t> intern(std::string_view text, bool anyway);
  std::optional<std::uint32_t> find(std::string_view text) const;
  // Appends `hop` to t.hops if the budget has room for it.
  bool list_hop(Tracked& t, const Hop& hop);
  // e's hop with its names interned; none when the budget has no room for
  // them. `anyway`: func and iface are interned in any case, the process
  // (unbounded: every pid) only if there is room.
  std::optional<Hop> make_hop(const JourneyEvent& e, bool anyway);
  const std::string& name(std::uint32_t id) const { return *names_[id]; }

  DropHints hints_;
  Limits limits_;
  std::shared_ptr<JourneyBudget> budget_;
  std::uint64_t charged_ = 0;
  std::deque<Tracked> tracked_;                          // no reallocation: grows in blocks the budget is charged for
  std::unordered_map<std::uint64_t, std::size_t> open_;  // skb address -> index in tracked_
  std::unordered_map<std::string, std::uint32_t> ids_;   // interned names
  std::vector<const std::string*> names_;                // id -> name; id 0 is ""
  std::uint64_t not_followed_ = 0;
  std::uint64_t cut_ = 0;
  std::uint64_t hooks_cut_ = 0;
};

// Why a summary is incomplete because of its memory budget, and what to do;
// "" when the budget cut nothing.
std::string budget_note(const JourneyCounts& counts, const JourneyBudget& budget);

// The summary block `pwru --summary` prints after the events: a header
// (with `note`, if any), then one block per skb.
std::string journeys_text_header(const JourneyCounts& counts, const std::string& note);
std::string journey_text(const Journey& journey);
std::string journeys_text(const std::vector<Journey>& journeys, const JourneyCounts& counts,
                          const std::string& note = "");
// One JSON object per skb, as --output-json prints them ({"journey": ...})
// and the trace API's summary line carries them. With an identity:
// "ident": {"ip_id","seq","ack","flow_label","len"}, plus "tcp_flags" for TCP
// (the first event's, as the tuple).
nlohmann::json journey_json(const Journey& journey);

}  // namespace pwru
