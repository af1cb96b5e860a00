#include "journey/journey.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <stdexcept>

#include "output/event_formatter.h"

namespace pwru {

namespace {

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// Functions that hand an skb to a socket (kprobe backends) or copy it to
// the reading process (the skb_copy_datagram_iovec tracepoint).
constexpr std::array<std::string_view, 8> kDeliveryHooks = {"tcp_queue_rcv",
                                                            "tcp_data_queue",
                                                            "__udp_enqueue_schedule_skb",
                                                            "__sock_queue_rcv_skb",
                                                            "sock_queue_rcv_skb_reason",
                                                            "ping_queue_rcv_skb",
                                                            "raw_rcv_skb",
                                                            "packet_rcv"};

// Where the skb's memory goes back: its last events share the address with
// the skb itself, and must not start a new journey.
bool is_free_path(std::string_view hook) {
  return contains(hook, "free") || contains(hook, "consume") || contains(hook, "release") ||
         contains(hook, "destructor");
}

// Hooks a packet passes at most once per device: seeing one again on the
// same device means the address now holds another packet, whose free no
// hook saw (TCP frees most of its skbs with __kfree_skb, which has no
// tracepoint). ip_rcv and ipv6_rcv too: on a kprobe backend traced with a
// narrow --filter-func they may be the only receive hooks there are.
bool once_per_device(std::string_view hook) {
  return hook.substr(0, 7) == "netif_r" || hook.substr(0, 8) == "net_dev_" || hook.substr(0, 9) == "napi_gro_" ||
         hook == "__netif_receive_skb" || hook == "__dev_queue_xmit" || hook == "dev_hard_start_xmit" ||
         hook == "ip_rcv" || hook == "ipv6_rcv";
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
    case Fate::InFlight:
      return "in_flight";
    case Fate::Delivered:
      return "delivered";
    case Fate::Transmitted:
      return "transmitted";
    case Fate::Consumed:
      return "consumed";
    case Fate::Dropped:
      return "dropped";
  }
  return "?";
}

namespace {

// What the containers around a Tracked and an interned name cost beyond
// their own bytes: hash-map node and bucket, deque slot bookkeeping, the
// std::string header. Over- rather than under-estimated: the budget is a
// ceiling on resident memory, not an invoice.
constexpr std::uint64_t kMapEntryBytes = 64;
constexpr std::uint64_t kNameOverheadBytes = 2 * sizeof(std::string) + 64;

}  // namespace

JourneyTracker::JourneyTracker(DropHints hints, std::shared_ptr<JourneyBudget> budget)
    : JourneyTracker(std::move(hints), Limits{}, std::move(budget)) {}

JourneyTracker::JourneyTracker(DropHints hints, Limits limits, std::shared_ptr<JourneyBudget> budget)
    : hints_(std::move(hints)), limits_(limits), budget_(std::move(budget)) {
  if (!budget_) throw std::invalid_argument("JourneyTracker needs a memory budget");
  names_.push_back(&ids_.emplace("", 0).first->first);
}

JourneyTracker::~JourneyTracker() { budget_->release(charged_); }

bool JourneyTracker::charge(std::uint64_t bytes) {
  if (!budget_->try_charge(bytes)) return false;
  charged_ += bytes;
  return true;
}

void JourneyTracker::charge_anyway(std::uint64_t bytes) {
  budget_->charge_anyway(bytes);
  charged_ += bytes;
}

std::optional<std::uint32_t> JourneyTracker::find(std::string_view text) const {
  // C++20's heterogeneous lookup needs a transparent hash; names are short,
  // a temporary string is cheaper than the code for one.
  const auto it = ids_.find(std::string(text));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::uint32_t> JourneyTracker::intern(std::string_view text, bool anyway) {
  if (const auto id = find(text)) return id;
  const std::uint64_t cost = kNameOverheadBytes + text.size();
  if (anyway)
    charge_anyway(cost);
  else if (!charge(cost))
    return std::nullopt;
  const auto id = static_cast<std::uint32_t>(names_.size());
  names_.push_back(&ids_.emplace(std::string(text), id).first->first);
  return id;
}

std::optional<JourneyTracker::Hop> JourneyTracker::make_hop(const JourneyEvent& e, bool anyway) {
  const auto func = intern(e.func, anyway);
  const auto iface = func ? intern(iface_column(e.event), anyway) : std::nullopt;
  if (!func || !iface) return std::nullopt;
  // Every pid is a new name: only when there is room, even for a fate.
  const std::uint32_t process = intern(process_column(e.event), false).value_or(0);
  return Hop{e.event.ts_ns, e.event.netns, *func, *iface, process};
}

bool JourneyTracker::list_hop(Tracked& t, const Hop& hop) {
  if (t.hops.size() == t.hops.capacity()) {
    const std::size_t grown =
        std::min(std::max<std::size_t>(4, 2 * t.hops.capacity()), std::max(limits_.steps, t.hops.size() + 1));
    if (!charge((grown - t.hops.capacity()) * sizeof(Hop))) return false;
    t.hops.reserve(grown);
  }
  t.hops.push_back(hop);
  return true;
}

JourneyTracker::Kind JourneyTracker::kind_of(const JourneyEvent& e) {
  if (e.event.has_drop_reason && !e.reason.empty() && e.reason != "SKB_CONSUMED" && e.reason != "SKB_NOT_DROPPED_YET")
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
      ++not_followed_;
      return;
    }
    if (!charge(sizeof(Tracked) + kMapEntryBytes)) {
      ++not_followed_;
      ++cut_;
      return;
    }
    tracked_.emplace_back();
    tracked_.back().skb = e.event.skb_addr;
    open = open_.emplace(e.event.skb_addr, tracked_.size() - 1).first;
  }
  Tracked& t = tracked_[open->second];
  if (!t.tuple.l3_proto && e.event.tuple.l3_proto) {
    t.tuple = e.event.tuple;
    // From the same event: an event without a tuple has no identity either.
    if (e.event.parts & PWRU_PART_IDENT) t.ident = e.event.ident;
  }
  if (e.event.tuple.l3_proto) t.last_tuple = e.event.tuple;

  // Every hop may decide the fate (the last live one, the drop, the last
  // free), so one is made even when the budget is spent: the names it needs
  // are kernel functions and devices, a bounded set. Only listing it in the
  // skb's hooks waits for room.
  const std::optional<Hop> hop = make_hop(e, true);
  bool listed = false;
  if (t.hops.size() < limits_.steps) {
    listed = list_hop(t, *hop);
    if (!listed) ++hooks_cut_;
  }
  if (!listed) ++t.hops_not_kept;

  const auto remember = [&](FateHop& f) { f = FateHop{*hop, true, listed}; };
  switch (kind) {
    case Kind::Drop:
      t.freed = true;
      if (!t.drop.seen) {
        remember(t.drop);
        t.reason = intern(e.reason, true).value_or(0);
        t.drop_where = intern(e.location.empty() ? e.hook : e.location, true).value_or(0);
      }
      break;
    case Kind::Free:
      t.freed = true;
      remember(t.free_hop);
      if (!t.free_location && !e.location.empty()) t.free_location = intern(e.location, true).value_or(0);
      break;
    case Kind::Deliver:
      remember(t.deliver);
      remember(t.live);
      t.live_kind = kind;
      break;
    case Kind::Transmit:
    case Kind::Other:
      remember(t.live);
      t.live_kind = kind;
      break;
  }
}

bool JourneyTracker::is_another_packet(const Tracked& t, const JourneyEvent& e, Kind kind) const {
  // A freed skb's address comes back for another packet: anything but the
  // rest of the free path starts a new journey.
  if (t.freed) return kind != Kind::Free && kind != Kind::Drop;
  if (reversed(t.last_tuple, e.event.tuple)) return true;
  if (!once_per_device(e.hook)) return false;
  const auto func = find(e.func);
  const auto iface = find(iface_column(e.event));
  if (!func || !iface) return false;  // never seen at all, so not on this skb
  const auto same = [&](const Hop& h) { return h.func == *func && h.netns == e.event.netns && h.iface == *iface; };
  if (t.live.seen && same(t.live.hop)) return true;
  return std::any_of(t.hops.begin(), t.hops.end(), same);
}

Journey JourneyTracker::decide(const Tracked& t) const {
  Journey j;
  j.skb = t.skb;
  j.tuple = t.tuple;
  j.ident = t.ident;
  j.steps_not_kept = t.hops_not_kept;
  const auto step = [&](const Hop& h) {
    return JourneyStep{h.ts_ns, name(h.func), name(h.iface), name(h.process), h.netns};
  };
  j.steps.reserve(t.hops.size() + 1);
  for (const Hop& h : t.hops) j.steps.push_back(step(h));
  // The drop is always shown, listed or not; it is the last thing that
  // happened to the packet that matters, so it goes at the end.
  if (t.drop.seen && !t.drop.listed) {
    j.steps.push_back(step(t.drop.hop));
    --j.steps_not_kept;
  }

  if (t.drop.seen) {
    const Hop& at = t.drop.hop;
    j.fate = Fate::Dropped;
    j.netns = at.netns;
    j.reason = name(t.reason);
    j.where = name(t.drop_where);
    const std::string& iface = t.live.seen && t.live.hop.iface ? name(t.live.hop.iface) : name(at.iface);
    j.hint = hints_.hint(HintContext{j.reason, j.where, iface, at.netns});
  } else if (t.deliver.seen) {
    const Hop& at = t.deliver.hop;
    j.fate = Fate::Delivered;
    j.netns = at.netns;
    const std::string& func = name(at.func);
    const std::string& reader = at.process ? name(at.process) : std::string("a process");
    j.where = func.substr(0, 17) == "skb_copy_datagram" ? "read by " + reader : "queued by " + func;
  } else if (t.live.seen && t.live_kind == Kind::Transmit) {
    j.fate = Fate::Transmitted;
    j.netns = t.live.hop.netns;
    j.where = name(t.live.hop.iface);
  } else if (t.freed && t.free_hop.seen) {
    j.fate = Fate::Consumed;
    j.netns = t.free_hop.hop.netns;
    j.where = t.free_location ? name(t.free_location) : name(t.free_hop.hop.func);
    j.hint =
        "freed without a drop reason: the kernel was done with it (an answered ICMP echo, a processed "
        "TCP handshake or ACK segment, a packet the stack copied)";
  } else if (t.live.seen) {
    j.fate = Fate::InFlight;
    j.netns = t.live.hop.netns;
    j.where = name(t.live.hop.func);
    j.hint =
        "no hook saw it delivered, sent or freed: it may still be queued, or it went where no hook looks "
        "(the tracepoint backend does not see UDP delivery or TCP's own frees; a kprobe backend does)";
  }
  return j;
}

void JourneyTracker::for_each(const std::function<void(const Journey&)>& visit) const {
  for (const Tracked& t : tracked_) visit(decide(t));
}

std::vector<Journey> JourneyTracker::journeys() const {
  std::vector<Journey> out;
  out.reserve(tracked_.size());
  for_each([&](const Journey& j) { out.push_back(j); });
  return out;
}

JourneyCounts JourneyTracker::counts() const { return JourneyCounts{tracked_.size(), not_followed_, cut_, hooks_cut_}; }

std::string budget_note(const JourneyCounts& counts, const JourneyBudget& budget) {
  if (!counts.cut && !counts.hooks_cut) return "";
  return fmt::format(
      "incomplete: the summary memory budget ({}, {} used now) was spent, so {} skb{} not followed "
      "and {} hook{} of followed skbs not kept (fates stay complete); {}",
      budget.name(), format_bytes(budget.used()), counts.cut, counts.cut == 1 ? " was" : "s were", counts.hooks_cut,
      counts.hooks_cut == 1 ? " was" : "s were", budget.remedy());
}

std::string journeys_text_header(const JourneyCounts& counts, const std::string& note) {
  std::string out = fmt::format("\nSUMMARY: {} skb{}", counts.kept, counts.kept == 1 ? "" : "s");
  const std::uint64_t over_limit = counts.not_followed - counts.cut;
  if (over_limit) out += fmt::format(" ({} more seen but not followed: the summary's limit)", over_limit);
  out += '\n';
  if (!note.empty()) out += "NOTE: " + note + "\n";
  return out;
}

std::string journey_text(const Journey& j) {
  std::string out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "\nSKB {:#x} {}\n", j.skb, tuple_text(j.tuple));
  std::size_t func_width = 0, iface_width = 0;
  for (const JourneyStep& s : j.steps) {
    func_width = std::max(func_width, s.func.size());
    iface_width = std::max(iface_width, s.iface.size());
  }
  const std::uint64_t t0 = j.steps.empty() ? 0 : j.steps.front().ts_ns;
  for (const JourneyStep& s : j.steps)
    fmt::format_to(it, "  {:>11}  {:<{}}  {:<{}}  netns {:<10}  {}\n", ms(s.ts_ns - t0), s.func, func_width, s.iface,
                   iface_width, s.netns, s.process);
  if (j.steps_not_kept) fmt::format_to(it, "  ... {} more hooks not kept\n", j.steps_not_kept);
  switch (j.fate) {
    case Fate::Dropped:
      fmt::format_to(it, "  fate: dropped in {} with {} (netns {})\n", j.where, short_reason(j.reason), j.netns);
      break;
    case Fate::Delivered:
      fmt::format_to(it, "  fate: delivered to a socket, {} (netns {})\n", j.where, j.netns);
      break;
    case Fate::Transmitted:
      fmt::format_to(it, "  fate: transmitted on {} (netns {})\n", j.where, j.netns);
      break;
    case Fate::Consumed:
      fmt::format_to(it, "  fate: consumed in {} (netns {})\n", j.where, j.netns);
      break;
    case Fate::InFlight:
      fmt::format_to(it, "  fate: still in flight, last seen at {} (netns {})\n", j.where, j.netns);
      break;
  }
  if (!j.hint.empty()) fmt::format_to(it, "  hint: {}\n", j.hint);
  return out;
}

std::string journeys_text(const std::vector<Journey>& journeys, const JourneyCounts& counts, const std::string& note) {
  std::string out = journeys_text_header(counts, note);
  for (const Journey& j : journeys) out += journey_text(j);
  return out;
}

nlohmann::json journey_json(const Journey& j) {
  nlohmann::json hooks = nlohmann::json::array();
  const std::uint64_t t0 = j.steps.empty() ? 0 : j.steps.front().ts_ns;
  for (const JourneyStep& s : j.steps)
    hooks.push_back(
        {{"func", s.func}, {"rel_ns", s.ts_ns - t0}, {"iface", s.iface}, {"netns", s.netns}, {"process", s.process}});
  nlohmann::json tuple = nlohmann::json::object();
  const pwru_tuple& t = j.tuple;
  if (t.l3_proto) {
    tuple["saddr"] = format_addr(t.l3_proto, t.saddr);
    tuple["daddr"] = format_addr(t.l3_proto, t.daddr);
    if (t.sport) tuple["sport"] = ntohs(t.sport);
    if (t.dport) tuple["dport"] = ntohs(t.dport);
    if (t.l4_proto) tuple["proto"] = t.l4_proto;
  }
  nlohmann::json out = {{"skb", fmt::format("{:#x}", j.skb)}, {"tuple", tuple},   {"hooks", hooks},
                        {"fate", fate_name(j.fate)},          {"where", j.where}, {"netns", j.netns}};
  if (j.steps_not_kept) out["hooks_not_kept"] = j.steps_not_kept;
  if (!j.reason.empty()) out["reason"] = j.reason;
  if (!j.hint.empty()) out["hint"] = j.hint;
  if (j.ident) {
    const pwru_part_ident& id = *j.ident;
    out["ident"] = {
        {"ip_id", id.ip_id}, {"seq", id.seq}, {"ack", id.ack}, {"flow_label", id.flow_label}, {"len", id.l4_payload}};
    // Stitching tells a segment from a pure ACK with the same numbers by them.
    if (t.l4_proto == PWRU_IPPROTO_TCP) out["ident"]["tcp_flags"] = t.tcp_flags;
  }
  return out;
}

}  // namespace pwru
