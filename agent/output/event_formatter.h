// Turns events into pwru's text columns or its JSON lines. No I/O, no
// kernel access: everything a line needs arrives resolved in EventView.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pwru_abi.h"

namespace pwru {

enum class TimestampMode { None, Current, Relative, Absolute };

struct OutputOptions {
  bool meta = true;
  bool tuple = true;
  bool json = false;
  bool stack = false;
  bool caller = false;
  bool tcp_flags = false;
  bool skb = false;     // --output-skb
  bool shinfo = false;  // --output-skb-shared-info
  bool cb = false;      // --output-skb-cb
  bool tunnel = false;  // --output-tunnel
  TimestampMode timestamp = TimestampMode::None;
};

// The pod a traced netns belongs to: the labels of a pod-set trace's events.
struct PodLabel {
  std::string namespace_name;
  std::string pod;
};

// One event plus the names resolved for it.
struct EventView {
  const pwru_event& event;
  std::string_view func;                            // "netif_receive_skb", "kfree_skb(SKB_DROP_REASON_NO_SOCKET)"
  std::string_view caller;                          // only read with OutputOptions::caller
  const std::vector<std::string>* stack = nullptr;  // only read with OutputOptions::stack
  std::string_view skb_text{};                      // --output-skb: the skb through BTF
  std::string_view shinfo_text{};                   // --output-skb-shared-info
  // The PROCESS column's program ("/usr/bin/ping", see ProgramNamer); the
  // event's comm when empty.
  std::string_view program{};
  // A pod-set trace's labels, written after "skb": the node, and the pod
  // whose netns the event is in (null: no label).
  std::string_view node{};
  const PodLabel* pod = nullptr;
  // A fan-out's merge mode: the event's wall-clock time, written as the
  // line's first key so the merger finds it without parsing the line.
  bool has_wall = false;
  std::uint64_t wall_ns = 0;
};

class EventFormatter {
 public:
  using WallClock = std::function<std::chrono::system_clock::time_point()>;
  explicit EventFormatter(OutputOptions options, WallClock clock = nullptr);

  // The text header line (with newline); empty for JSON.
  std::string header() const;
  // Appends the event's line(s), newline-terminated, to out.
  void format(const EventView& view, std::string& out);

 private:
  void format_text(const EventView& view, std::uint64_t ts, std::string& out);
  void format_json(const EventView& view, std::uint64_t ts, std::string& out);
  std::string absolute_time() const;
  static void append_json_tuple(std::string& out, std::string_view key, const pwru_tuple& tuple, bool tcp_flags);

  OutputOptions options_;
  WallClock clock_;
  std::unordered_map<std::uint64_t, std::uint64_t> last_seen_;  // skb -> ts, for relative
  std::size_t max_tuple_len_ = 0;
  std::size_t max_func_len_ = 0;
};

// Pieces shared by text and JSON, exposed for tests.
std::string format_addr(std::uint16_t l3_proto, const std::uint8_t* addr);  // "10.0.0.1", "[::1]", ""
std::string format_tuple(const pwru_tuple& tuple, bool tcp_flags);          // "a:1->b:2(tcp)"
std::string tcp_flags_string(std::uint8_t flags);                           // "SYN|ACK"
// "program:pid" (comm when program is empty), cut to 16 with '~' as pwru does.
std::string process_column(const pwru_event& event, std::string_view program = {});
std::string iface_column(const pwru_event& event);  // "name:ifindex", cut to 16 with '~'
std::string cb_column(const pwru_event& event);     // "[0x00000000,...]", __sk_buff->cb[] as pwru prints it
void append_json_string(std::string& out, std::string_view s);

}  // namespace pwru
