#include "journey/journey.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>

#include "output/event_formatter.h"

namespace pwru {

namespace {

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// Functions that hand an skb to a socket (kprobe backends) or copy it to
// the reading process (the skb_copy_datagram_iovec tracepoint).
constexpr std::array<std::string_view, 8> kDeliveryHooks = {
    "tcp_queue_rcv",  "tcp_data_queue",           "__udp_enqueue_schedule_skb", "__sock_queue_rcv_skb",
    "sock_queue_rcv_skb_reason", "ping_queue_rcv_skb", "raw_rcv_skb",        "packet_rcv"};

// Where the skb's memory goes back: its last events share the address with
// the skb itself, and must not start a new journey.
bool is_free_path(std::string_view hook) {
  return contains(hook, "free") || contains(hook, "consume") || contains(hook, "release") ||
         contains(hook, "destructor");
}

// Hooks a packet passes at most once per device: seeing one again on the
// same device means the address now holds another packet, whose free no
// hook saw (TCP frees most of its skbs with __kfree_skb, which has no
// tracepoint).
bool once_per_device(std::string_view hook) {
  return hook.substr(0, 7) == "netif_r" || hook.substr(0, 8) == "net_dev_" || hook.substr(0, 9) == "napi_gro_" ||
         hook == "__netif_receive_skb" || hook == "__dev_queue_xmit" || hook == "dev_hard_start_xmit";
}

// An skb is never turned around: a tuple with source and destination
// swapped is the reply, in another skb at a reused address.
bool reversed(const pwru_tuple& before, const pwru_tuple& now) {
  if (!before.l3_proto || before.l3_proto != now.l3_proto) return false;
  const std::size_t n = now.l3_proto == PWRU_ETH_P_IP ? 4 : 16;
  return std::memcmp(before.saddr, now.daddr, n) == 0 && std::memcmp(before.daddr, now.saddr, n) == 0 &&
         std::memcmp(before.saddr, before.daddr, n) != 0;
}

std::string tuple_text(const pwru_tuple& t) { return t.l3_proto ? format_tuple(t, false) : std::string(); }

std::string ms(std::uint64_t ns) { return fmt::format("+{:.3f}ms", static_cast<double>(ns) / 1e6); }

}  // namespace

std::string_view fate_name(Fate fate) {
  switch (fate) {
    case Fate::InFlight: return "in_flight";
    case Fate::Delivered: return "delivered";
    case Fate::Transmitted: return "transmitted";
    case Fate::Consumed: return "consumed";
    case Fate::Dropped: return "dropped";
  }
  return "?";
}

JourneyTracker::JourneyTracker(DropHints hints) : JourneyTracker(std::move(hints), Limits{}) {}

JourneyTracker::JourneyTracker(DropHints hints, Limits limits) : hints_(std::move(hints)), limits_(limits) {}

JourneyTracker::Kind JourneyTracker::kind_of(const JourneyEvent& e) {
  if (e.event.has_drop_reason && !e.reason.empty() && e.reason != "SKB_CONSUMED" &&
      e.reason != "SKB_NOT_DROPPED_YET")
    return Kind::Drop;
  if (is_free_path(e.hook)) return Kind::Free;
  if (e.hook.substr(0, 17) == "skb_copy_datagram" ||
      std::find(kDeliveryHooks.begin(), kDeliveryHooks.end(), e.hook) != kDeliveryHooks.end())
    return Kind::Deliver;
  if (contains(e.hook, "xmit") || e.hook == "net_dev_queue") return Kind::Transmit;
  return Kind::Other;
}

void JourneyTracker::add(const JourneyEvent& e) {
  const Kind kind = kind_of(e);
  auto open = open_.find(e.event.skb_addr);
  if (open != open_.end() && is_another_packet(tracked_[open->second], e, kind)) {
    open_.erase(open);
    open = open_.end();
  }
  if (open == open_.end()) {
    if (tracked_.size() >= limits_.journeys) {
      ++skbs_not_kept_;
      return;
    }
    tracked_.emplace_back();
    tracked_.back().journey.skb = e.event.skb_addr;
    open = open_.emplace(e.event.skb_addr, tracked_.size() - 1).first;
  }
  Tracked& t = tracked_[open->second];
  if (!t.journey.tuple.l3_proto && e.event.tuple.l3_proto) t.journey.tuple = e.event.tuple;
  if (e.event.tuple.l3_proto) t.last_tuple = e.event.tuple;
  if (kind == Kind::Drop || kind == Kind::Free) {
    t.freed = true;
    if (kind == Kind::Free && t.free_location.empty()) t.free_location = e.location;
  }
  const bool keep = t.journey.steps.size() < limits_.steps ||
                    (kind == Kind::Drop && t.drop_step == SIZE_MAX);  // the drop is always kept
  if (!keep) {
    ++t.journey.steps_not_kept;
    return;
  }
  if (kind == Kind::Drop && t.drop_step == SIZE_MAX) {
    t.drop_step = t.journey.steps.size();
    t.journey.reason = std::string(e.reason);
    t.journey.where = e.location.empty() ? std::string(e.hook) : std::string(e.location);
  }
  t.journey.steps.push_back(JourneyStep{e.event.ts_ns, std::string(e.func), iface_column(e.event),
                                        process_column(e.event), e.event.netns});
  t.kinds.push_back(kind);
}

bool JourneyTracker::is_another_packet(const Tracked& t, const JourneyEvent& e, Kind kind) {
  // A freed skb's address comes back for another packet: anything but the
  // rest of the free path starts a new journey.
  if (t.freed) return kind != Kind::Free && kind != Kind::Drop;
  if (reversed(t.last_tuple, e.event.tuple)) return true;
  if (!once_per_device(e.hook)) return false;
  const std::string iface = iface_column(e.event);
  for (const JourneyStep& s : t.journey.steps)
    if (s.func == e.func && s.netns == e.event.netns && s.iface == iface) return true;
  return false;
}

Journey JourneyTracker::decide(const Tracked& t) const {
  Journey j = t.journey;
  if (j.steps.empty()) return j;
  const auto last_of = [&](Kind kind) -> std::size_t {
    for (std::size_t i = t.kinds.size(); i-- > 0;)
      if (t.kinds[i] == kind) return i;
    return SIZE_MAX;
  };
  // The last step that is not part of freeing the skb.
  std::size_t last_live = SIZE_MAX;
  for (std::size_t i = t.kinds.size(); i-- > 0;) {
    if (t.kinds[i] != Kind::Free && t.kinds[i] != Kind::Drop) {
      last_live = i;
      break;
    }
  }
  if (t.drop_step != SIZE_MAX) {
    const JourneyStep& at = j.steps[t.drop_step];
    j.fate = Fate::Dropped;
    j.netns = at.netns;
    const std::string iface = last_live != SIZE_MAX ? j.steps[last_live].iface : at.iface;
    j.hint = hints_.hint(HintContext{j.reason, j.where, iface.empty() ? at.iface : iface, at.netns});
  } else if (const std::size_t d = last_of(Kind::Deliver); d != SIZE_MAX) {
    j.fate = Fate::Delivered;
    j.netns = j.steps[d].netns;
    const std::string_view func = j.steps[d].func;
    j.where = func.substr(0, 17) == "skb_copy_datagram" ? "read by " + j.steps[d].process
                                                         : "queued by " + std::string(func);
  } else if (last_live != SIZE_MAX && t.kinds[last_live] == Kind::Transmit) {
    j.fate = Fate::Transmitted;
    j.netns = j.steps[last_live].netns;
    j.where = j.steps[last_live].iface;
  } else if (t.freed) {
    j.fate = Fate::Consumed;
    const std::size_t f = last_of(Kind::Free);
    j.netns = j.steps[f].netns;
    j.where = t.free_location.empty() ? j.steps[f].func : t.free_location;
    j.hint = "freed without a drop reason: the kernel was done with it (an answered ICMP echo, a processed "
             "TCP handshake or ACK segment, a packet the stack copied)";
  } else {
    j.fate = Fate::InFlight;
    const JourneyStep& last = j.steps.back();
    j.netns = last.netns;
    j.where = last.func;
    j.hint = "no hook saw it delivered, sent or freed: it may still be queued, or it went where no hook looks "
             "(the tracepoint backend does not see UDP delivery or TCP's own frees; a kprobe backend does)";
  }
  return j;
}

std::vector<Journey> JourneyTracker::journeys() const {
  std::vector<Journey> out;
  out.reserve(tracked_.size());
  for (const Tracked& t : tracked_) out.push_back(decide(t));
  return out;
}

std::string journeys_text(const std::vector<Journey>& journeys, std::uint64_t skbs_not_kept) {
  std::string out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "\nSUMMARY: {} skb{}", journeys.size(), journeys.size() == 1 ? "" : "s");
  if (skbs_not_kept) fmt::format_to(it, " ({} more seen but not followed: the summary's limit)", skbs_not_kept);
  out += '\n';
  for (const Journey& j : journeys) {
    fmt::format_to(it, "\nSKB {:#x} {}\n", j.skb, tuple_text(j.tuple));
    std::size_t func_width = 0, iface_width = 0;
    for (const JourneyStep& s : j.steps) {
      func_width = std::max(func_width, s.func.size());
      iface_width = std::max(iface_width, s.iface.size());
    }
    const std::uint64_t t0 = j.steps.empty() ? 0 : j.steps.front().ts_ns;
    for (const JourneyStep& s : j.steps)
      fmt::format_to(it, "  {:>11}  {:<{}}  {:<{}}  netns {:<10}  {}\n", ms(s.ts_ns - t0), s.func, func_width,
                     s.iface, iface_width, s.netns, s.process);
    if (j.steps_not_kept) fmt::format_to(it, "  ... {} more hooks not kept\n", j.steps_not_kept);
    switch (j.fate) {
      case Fate::Dropped:
        fmt::format_to(it, "  fate: dropped in {} with {} (netns {})\n", j.where, short_reason(j.reason), j.netns);
        break;
      case Fate::Delivered: fmt::format_to(it, "  fate: delivered to a socket, {} (netns {})\n", j.where, j.netns); break;
      case Fate::Transmitted: fmt::format_to(it, "  fate: transmitted on {} (netns {})\n", j.where, j.netns); break;
      case Fate::Consumed: fmt::format_to(it, "  fate: consumed in {} (netns {})\n", j.where, j.netns); break;
      case Fate::InFlight: fmt::format_to(it, "  fate: still in flight, last seen at {} (netns {})\n", j.where, j.netns); break;
    }
    if (!j.hint.empty()) fmt::format_to(it, "  hint: {}\n", j.hint);
  }
  return out;
}

nlohmann::json journey_json(const Journey& j) {
  nlohmann::json hooks = nlohmann::json::array();
  const std::uint64_t t0 = j.steps.empty() ? 0 : j.steps.front().ts_ns;
  for (const JourneyStep& s : j.steps)
    hooks.push_back({{"func", s.func}, {"rel_ns", s.ts_ns - t0}, {"iface", s.iface}, {"netns", s.netns},
                     {"process", s.process}});
  nlohmann::json tuple = nlohmann::json::object();
  const pwru_tuple& t = j.tuple;
  if (t.l3_proto) {
    tuple["saddr"] = format_addr(t.l3_proto, t.saddr);
    tuple["daddr"] = format_addr(t.l3_proto, t.daddr);
    if (t.sport) tuple["sport"] = ntohs(t.sport);
    if (t.dport) tuple["dport"] = ntohs(t.dport);
    if (t.l4_proto) tuple["proto"] = t.l4_proto;
  }
  nlohmann::json out = {{"skb", fmt::format("{:#x}", j.skb)},
                        {"tuple", tuple},
                        {"hooks", hooks},
                        {"fate", fate_name(j.fate)},
                        {"where", j.where},
                        {"netns", j.netns}};
  if (j.steps_not_kept) out["hooks_not_kept"] = j.steps_not_kept;
  if (!j.reason.empty()) out["reason"] = j.reason;
  if (!j.hint.empty()) out["hint"] = j.hint;
  return out;
}

}  // namespace pwru
