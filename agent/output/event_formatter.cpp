#include "output/event_formatter.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <ctime>

namespace pwru {

namespace {

constexpr std::size_t kColumnWidth = 16;
// Bounds the relative-timestamp memory; skb addresses are slab objects and
// recur, so a flush now and then only restarts a few deltas at 0.
constexpr std::size_t kMaxTrackedSkbs = 1 << 20;

// pwru keeps the last 16 characters and marks the cut with '~'.
std::string cut_left(std::string s) {
  if (s.size() <= kColumnWidth) return s;
  s = s.substr(s.size() - kColumnWidth);
  s[0] = '~';
  return s;
}

std::string center(std::string_view s, std::size_t width) {
  if (s.size() >= width) return std::string(s);
  const std::size_t left = (width - s.size()) / 2;
  return std::string(left, ' ') + std::string(s) + std::string(width - s.size() - left, ' ');
}

std::string_view l4_name(std::uint8_t proto) {
  switch (proto) {
    case PWRU_IPPROTO_TCP:
      return "tcp";
    case PWRU_IPPROTO_UDP:
      return "udp";
    case PWRU_IPPROTO_ICMP:
      return "icmp";
    case PWRU_IPPROTO_ICMPV6:
      return "icmp6";
    default:
      return "";
  }
}

std::string_view bounded(const char* s, std::size_t max) {
  std::size_t n = 0;
  while (n < max && s[n] != '\0') ++n;
  return {s, n};
}

}  // namespace

std::string format_addr(std::uint16_t l3_proto, const std::uint8_t* addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (l3_proto == PWRU_ETH_P_IP) {
    inet_ntop(AF_INET, addr, buf, sizeof(buf));
    return buf;
  }
  if (l3_proto == PWRU_ETH_P_IPV6) {
    inet_ntop(AF_INET6, addr, buf, sizeof(buf));
    return std::string("[") + buf + "]";
  }
  return "";
}

std::string tcp_flags_string(std::uint8_t flags) {
  static constexpr std::string_view names[] = {"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"};
  std::string out;
  for (int bit = 0; bit < 8; ++bit) {
    if (!(flags & (1u << bit))) continue;
    if (!out.empty()) out += '|';
    out += names[bit];
  }
  return out;
}

std::string format_tuple(const pwru_tuple& t, bool tcp_flags) {
  std::string l4(l4_name(t.l4_proto));
  if (tcp_flags && t.l4_proto == PWRU_IPPROTO_TCP && t.tcp_flags != 0) l4 += ":" + tcp_flags_string(t.tcp_flags);
  return fmt::format("{}:{}->{}:{}({})", format_addr(t.l3_proto, t.saddr), ntohs(t.sport),
                     format_addr(t.l3_proto, t.daddr), ntohs(t.dport), l4);
}

std::string process_column(const pwru_event& e, std::string_view program) {
  if (program.empty()) program = bounded(e.comm, sizeof(e.comm));
  return cut_left(fmt::format("{}:{}", program, e.pid));
}

std::string iface_column(const pwru_event& e) {
  const std::string_view name = bounded(e.ifname, sizeof(e.ifname));
  if (e.ifindex == 0 || name.empty()) return std::to_string(e.ifindex);
  return cut_left(fmt::format("{}:{}", name, e.ifindex));
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          // comm and ifnames are bytes, not UTF-8: escape anything unusual.
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

EventFormatter::EventFormatter(OutputOptions options, WallClock clock) : options_(options), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::system_clock::now(); };
}

std::string EventFormatter::absolute_time() const {
  // Go's "15:04:05.000" in local time: pwru's absoluteTS.
  const auto now = clock_();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}", buf, ms);
}

std::string EventFormatter::header() const {
  if (options_.json) return "";
  std::string out;
  if (options_.timestamp == TimestampMode::Absolute) out += fmt::format("{:<12} ", "TIME");
  out += fmt::format("{:<18} {:<3} {:<16}", "SKB", "CPU", "PROCESS");
  if (options_.timestamp != TimestampMode::None) out += fmt::format(" {:<16}", "TIMESTAMP");
  if (options_.meta)
    out += fmt::format(" {:<10} {:<8} {:>16} {:<6} {:<5} {:<5}", "NETNS", "MARK/x", center("IFACE", kColumnWidth),
                       "PROTO", "MTU", "LEN");
  if (options_.meta && options_.cb) out += fmt::format(" {:<56}", "__sk_buff->cb[]");
  if (options_.tuple) out += " TUPLE";
  out += " FUNC";
  if (options_.caller) out += " CALLER";
  if (options_.tunnel) out += " TUNNEL";
  out += '\n';
  return out;
}

void EventFormatter::format(const EventView& view, std::string& out) {
  const pwru_event& e = view.event;
  std::uint64_t ts = e.ts_ns;
  if (options_.timestamp == TimestampMode::Relative) {
    auto it = last_seen_.find(e.skb_addr);
    ts = it == last_seen_.end() ? 0 : e.ts_ns - it->second;
    if (last_seen_.size() >= kMaxTrackedSkbs) last_seen_.clear();
    last_seen_[e.skb_addr] = e.ts_ns;
  }
  if (options_.json)
    format_json(view, ts, out);
  else
    format_text(view, ts, out);
}

void EventFormatter::format_text(const EventView& view, std::uint64_t ts, std::string& out) {
  const pwru_event& e = view.event;
  auto it = std::back_inserter(out);
  if (options_.timestamp == TimestampMode::Absolute) fmt::format_to(it, "{:<12} ", absolute_time());
  fmt::format_to(it, "{:<18} {:<3} {:<16}", fmt::format("{:#x}", e.skb_addr), e.cpu, process_column(e, view.program));
  if (options_.timestamp != TimestampMode::None) fmt::format_to(it, " {:<16}", ts);
  if (options_.meta) {
    fmt::format_to(it, " {:<10} {:<8} {:>16} 0x{:04x} {:<5} {:<5}", e.netns, fmt::format("{:x}", e.mark),
                   center(iface_column(e), kColumnWidth), ntohs(e.protocol), e.mtu, e.len);
    if (options_.cb) fmt::format_to(it, " {}", cb_column(e));
  }
  if (options_.tuple) {
    const std::string tuple = format_tuple(e.tuple, options_.tcp_flags);
    max_tuple_len_ = std::max(max_tuple_len_, tuple.size());
    fmt::format_to(it, " {:<{}}", tuple, max_tuple_len_);
  }
  if (options_.caller) {
    max_func_len_ = std::max(max_func_len_, view.func.size());
    fmt::format_to(it, " {:<{}} {}", view.func, max_func_len_, view.caller);
  } else {
    fmt::format_to(it, " {}", view.func);
  }
  if (options_.stack && view.stack) {
    for (const std::string& frame : *view.stack) fmt::format_to(it, "\n{}", frame);
  }
  if (options_.skb) fmt::format_to(it, "\n{}", view.skb_text);
  if (options_.shinfo) fmt::format_to(it, "\n{}", view.shinfo_text);
  if (options_.tunnel) fmt::format_to(it, " {}", format_tuple(e.tunnel_tuple, options_.tcp_flags));
  out += '\n';
}

void EventFormatter::format_json(const EventView& view, std::uint64_t ts, std::string& out) {
  // Field names, order and omit-when-empty follow pwru's JSON encoder.
  const pwru_event& e = view.event;
  auto it = std::back_inserter(out);
  if (view.has_wall) fmt::format_to(it, "{{\"wall_ns\":{},", view.wall_ns);
  fmt::format_to(it, "{}\"skb\":\"{:#x}\"", view.has_wall ? "" : "{", e.skb_addr);
  if (view.pod) {
    out += ",\"node\":";
    append_json_string(out, view.node);
    out += ",\"namespace\":";
    append_json_string(out, view.pod->namespace_name);
    out += ",\"pod\":";
    append_json_string(out, view.pod->pod);
  }
  if (options_.shinfo && !view.shinfo_text.empty()) {
    out += ",\"skb_shared_info\":";
    append_json_string(out, "\n" + std::string(view.shinfo_text));
  }
  if (e.cpu != 0) fmt::format_to(it, ",\"cpu\":{}", e.cpu);
  out += ",\"process\":";
  append_json_string(out, process_column(e, view.program));
  out += ",\"func\":";
  append_json_string(out, view.func);
  if (options_.caller && !view.caller.empty()) {
    out += ",\"caller_func\":";
    append_json_string(out, view.caller);
  }
  // pwru's time is an interface{} with omitempty: only "none" leaves it
  // nil, so a relative 0 (an skb's first event) is still written.
  switch (options_.timestamp) {
    case TimestampMode::None:
      break;
    case TimestampMode::Absolute:
      fmt::format_to(it, ",\"time\":\"{}\"", absolute_time());
      break;
    case TimestampMode::Current:
    case TimestampMode::Relative:
      fmt::format_to(it, ",\"time\":{}", ts);
      break;
  }
  if (options_.meta) {
    if (e.netns) fmt::format_to(it, ",\"netns\":{}", e.netns);
    if (e.mark) fmt::format_to(it, ",\"mark\":{}", e.mark);
    out += ",\"iface\":";
    append_json_string(out, iface_column(e));
    if (e.protocol) fmt::format_to(it, ",\"proto\":{}", ntohs(e.protocol));
    if (e.mtu) fmt::format_to(it, ",\"mtu\":{}", e.mtu);
    if (e.len) fmt::format_to(it, ",\"len\":{}", e.len);
    if (options_.cb) fmt::format_to(it, ",\"cb\":[{},{},{},{},{}]", e.cb[0], e.cb[1], e.cb[2], e.cb[3], e.cb[4]);
  }
  if (options_.tuple) append_json_tuple(out, ",\"tuple\":", e.tuple, options_.tcp_flags);
  if (options_.tunnel) append_json_tuple(out, ",\"tunnel_tuple\":", e.tunnel_tuple, options_.tcp_flags);
  if (options_.stack && view.stack && !view.stack->empty()) {
    std::string joined;
    for (const std::string& frame : *view.stack) joined += "\n" + frame;
    out += ",\"stack\":";
    append_json_string(out, joined);
  }
  if (options_.skb && !view.skb_text.empty()) {
    out += ",\"skb_metadata\":";
    append_json_string(out, "\n" + std::string(view.skb_text));
  }
  out += "}\n";
}

// pwru's jsonTuple: omitempty on every field.
void EventFormatter::append_json_tuple(std::string& out, std::string_view key, const pwru_tuple& t, bool tcp_flags) {
  auto it = std::back_inserter(out);
  out += key;
  out += '{';
  bool first = true;
  auto sep = [&] {
    if (!first) out += ',';
    first = false;
  };
  const std::string saddr = format_addr(t.l3_proto, t.saddr);
  const std::string daddr = format_addr(t.l3_proto, t.daddr);
  if (!saddr.empty()) {
    sep();
    out += "\"saddr\":";
    append_json_string(out, saddr);
  }
  if (!daddr.empty()) {
    sep();
    out += "\"daddr\":";
    append_json_string(out, daddr);
  }
  if (t.sport) {
    sep();
    fmt::format_to(it, "\"sport\":{}", ntohs(t.sport));
  }
  if (t.dport) {
    sep();
    fmt::format_to(it, "\"dport\":{}", ntohs(t.dport));
  }
  if (t.l4_proto) {
    sep();
    fmt::format_to(it, "\"proto\":{}", t.l4_proto);
  }
  if (tcp_flags && t.l4_proto == PWRU_IPPROTO_TCP && t.tcp_flags) {
    sep();
    out += "\"flags\":";
    append_json_string(out, tcp_flags_string(t.tcp_flags));
  }
  out += '}';
}

std::string cb_column(const pwru_event& e) {
  return fmt::format("[0x{:08X},0x{:08X},0x{:08X},0x{:08X},0x{:08X}]", e.cb[0], e.cb[1], e.cb[2], e.cb[3], e.cb[4]);
}

}  // namespace pwru
