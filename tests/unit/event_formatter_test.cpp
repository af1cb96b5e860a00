// pwru's text columns and JSON fields, byte for byte.
#include "output/event_formatter.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/pwru_options.h"

namespace pwru {
namespace {

pwru_event udp_event() {
  pwru_event e{};
  e.skb_addr = 0xffff888012345600ULL;
  e.ts_ns = 1000;
  e.cpu = 1;
  e.pid = 4242;
  std::strcpy(e.comm, "nc");
  e.netns = 4026532001;
  e.mark = 0xa00;
  e.ifindex = 7;
  std::strcpy(e.ifname, "veth0");
  e.mtu = 1500;
  e.len = 84;
  e.protocol = htons(0x0800);
  e.tuple.l3_proto = PWRU_ETH_P_IP;
  e.tuple.l4_proto = 17;
  const std::uint8_t s[4] = {10, 231, 0, 1}, d[4] = {10, 231, 0, 2};
  std::memcpy(e.tuple.saddr, s, 4);
  std::memcpy(e.tuple.daddr, d, 4);
  e.tuple.sport = htons(40000);
  e.tuple.dport = htons(9);
  return e;
}

TEST(EventFormatter, TextColumnsAsPwru) {
  EventFormatter f(OutputOptions{});
  EXPECT_EQ(f.header(),
            "SKB                CPU PROCESS          NETNS      MARK/x        IFACE       PROTO  MTU   "
            "LEN   TUPLE FUNC\n");
  const pwru_event e = udp_event();
  std::string out;
  f.format(EventView{e, "kfree_skb(SKB_DROP_REASON_NO_SOCKET)", "", nullptr}, out);
  EXPECT_EQ(out,
            "0xffff888012345600 1   nc:4242          4026532001 a00          veth0:7      0x0800 1500  84    "
            "10.231.0.1:40000->10.231.0.2:9(udp) kfree_skb(SKB_DROP_REASON_NO_SOCKET)\n");
}

TEST(EventFormatter, TupleColumnWidthGrowsAndStays) {
  OutputOptions o;
  o.meta = false;
  EventFormatter f(o);
  pwru_event wide = udp_event();
  pwru_event narrow = udp_event();
  narrow.tuple.sport = htons(1);
  std::string out;
  f.format(EventView{wide, "a", "", nullptr}, out);
  f.format(EventView{narrow, "b", "", nullptr}, out);
  const auto second = out.substr(out.find('\n') + 1);
  EXPECT_NE(second.find("10.231.0.1:1->10.231.0.2:9(udp)     b\n"), std::string::npos) << second;
}

TEST(EventFormatter, Ipv6TcpFlagsAndTruncatedColumns) {
  pwru_event e = udp_event();
  e.tuple.l3_proto = PWRU_ETH_P_IPV6;
  e.tuple.l4_proto = 6;
  std::memset(e.tuple.saddr, 0, 16);
  e.tuple.saddr[15] = 1;
  std::memset(e.tuple.daddr, 0, 16);
  e.tuple.daddr[0] = 0xfd;
  e.tuple.daddr[15] = 2;
  e.tuple.tcp_flags = 0x12;  // SYN|ACK
  EXPECT_EQ(format_tuple(e.tuple, true), "[::1]:40000->[fd00::2]:9(tcp:SYN|ACK)");
  EXPECT_EQ(format_tuple(e.tuple, false), "[::1]:40000->[fd00::2]:9(tcp)");
  std::memcpy(e.comm, "averyverylongcomm", sizeof(e.comm));  // full, unterminated
  e.pid = 1234567;
  EXPECT_EQ(process_column(e), "~longcom:1234567");
  EXPECT_EQ(process_column(e).size(), 16u);
  e.ifindex = 0;
  EXPECT_EQ(iface_column(e), "0");
  pwru_event none{};
  EXPECT_EQ(format_tuple(none.tuple, false), ":0->:0()");
}

TEST(EventFormatter, JsonFieldsAsPwru) {
  OutputOptions o;
  o.json = true;
  o.timestamp = TimestampMode::Current;
  EventFormatter f(o);
  EXPECT_EQ(f.header(), "");
  const pwru_event e = udp_event();
  std::string out;
  f.format(EventView{e, "netif_receive_skb", "", nullptr}, out);
  ASSERT_EQ(out.back(), '\n');
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["skb"], "0xffff888012345600");
  EXPECT_EQ(j["cpu"], 1);
  EXPECT_EQ(j["process"], "nc:4242");
  EXPECT_EQ(j["func"], "netif_receive_skb");
  EXPECT_EQ(j["time"], 1000);
  EXPECT_EQ(j["netns"], 4026532001u);
  EXPECT_EQ(j["mark"], 0xa00);
  EXPECT_EQ(j["iface"], "veth0:7");
  EXPECT_EQ(j["proto"], 0x0800);
  EXPECT_EQ(j["mtu"], 1500);
  EXPECT_EQ(j["len"], 84);
  EXPECT_EQ(j["tuple"]["saddr"], "10.231.0.1");
  EXPECT_EQ(j["tuple"]["daddr"], "10.231.0.2");
  EXPECT_EQ(j["tuple"]["sport"], 40000);
  EXPECT_EQ(j["tuple"]["dport"], 9);
  EXPECT_EQ(j["tuple"]["proto"], 17);
  // Field order is pwru's: skb, cpu, process, func, time, netns, ...
  EXPECT_LT(out.find("\"skb\""), out.find("\"cpu\""));
  EXPECT_LT(out.find("\"func\""), out.find("\"time\""));
  EXPECT_LT(out.find("\"len\""), out.find("\"tuple\""));
}

// A pod-set trace's labels come right after "skb"; a fan-out's part puts
// wall_ns first, an unquoted number the merger reads by prefix.
TEST(EventFormatter, JsonPodLabelsAfterSkbAndWallClockFirst) {
  OutputOptions o;
  o.json = true;
  EventFormatter f(o);
  const pwru_event e = udp_event();
  const PodLabel web0{"shop", "web-0"};
  EventView labelled{e, "netif_receive_skb", "", nullptr};
  labelled.node = "n1";
  labelled.pod = &web0;
  std::string out;
  f.format(labelled, out);
  EXPECT_EQ(
      out.rfind("{\"skb\":\"0xffff888012345600\",\"node\":\"n1\",\"namespace\":\"shop\",\"pod\":\"web-0\",\"cpu\":1,",
                0),
      0u)
      << out;
  EXPECT_NO_THROW(nlohmann::json::parse(out));
  labelled.has_wall = true;
  labelled.wall_ns = 1700000000123456789ull;
  out.clear();
  f.format(labelled, out);
  EXPECT_EQ(out.rfind("{\"wall_ns\":1700000000123456789,\"skb\":\"0xffff888012345600\",\"node\":\"n1\",", 0), 0u)
      << out;
  EXPECT_EQ(nlohmann::json::parse(out).at("wall_ns"), 1700000000123456789ull);
  // No label for a netns outside the map: the view carries no pod.
  out.clear();
  f.format(EventView{e, "netif_receive_skb", "", nullptr}, out);
  EXPECT_EQ(out.find("\"pod\""), std::string::npos);
  EXPECT_EQ(out.find("wall_ns"), std::string::npos);
}

TEST(EventFormatter, JsonOmitsEmptyFieldsAndEscapes) {
  OutputOptions o;
  o.json = true;
  EventFormatter f(o);
  pwru_event e{};
  e.skb_addr = 0x10;
  std::strcpy(e.comm, "a\"b\\c");
  std::string out;
  f.format(EventView{e, "consume_skb", "", nullptr}, out);
  const auto j = nlohmann::json::parse(out);
  EXPECT_FALSE(j.contains("cpu"));
  EXPECT_FALSE(j.contains("mark"));
  EXPECT_FALSE(j.contains("time"));
  EXPECT_EQ(j["process"], "a\"b\\c:0");
  EXPECT_EQ(j["iface"], "0");
  EXPECT_TRUE(j["tuple"].empty());
}

TEST(EventFormatter, RelativeTimestampPerSkb) {
  OutputOptions o;
  o.meta = o.tuple = false;
  o.timestamp = TimestampMode::Relative;
  EventFormatter f(o);
  pwru_event a = udp_event(), b = udp_event(), other = udp_event();
  a.ts_ns = 1000;
  other.skb_addr = 0x1;
  other.ts_ns = 1100;
  b.ts_ns = 1700;
  std::string out;
  f.format(EventView{a, "x", "", nullptr}, out);
  f.format(EventView{other, "y", "", nullptr}, out);
  f.format(EventView{b, "z", "", nullptr}, out);
  EXPECT_NE(out.find("nc:4242          0                x\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nc:4242          700              z\n"), std::string::npos) << out;
}

// A wall clock at 13:04:05.007 local time, whatever the test's time zone.
EventFormatter::WallClock clock_at_13_04_05_007() {
  std::tm tm{};
  tm.tm_year = 124;
  tm.tm_mon = 5;
  tm.tm_mday = 1;
  tm.tm_hour = 13;
  tm.tm_min = 4;
  tm.tm_sec = 5;
  tm.tm_isdst = -1;
  const auto at = std::chrono::system_clock::from_time_t(std::mktime(&tm)) + std::chrono::milliseconds(7);
  return [at] { return at; };
}

TEST(EventFormatter, AbsoluteTimeIsPwruClockIn12Columns) {
  OutputOptions o;
  o.timestamp = TimestampMode::Absolute;
  EventFormatter f(o, clock_at_13_04_05_007());
  // pwru v1.0.9: "%-12s " TIME, then the usual columns and TIMESTAMP.
  EXPECT_EQ(
      f.header(),
      "TIME         SKB                CPU PROCESS          TIMESTAMP        NETNS      MARK/x        IFACE       "
      "PROTO  MTU   LEN   TUPLE FUNC\n");
  const pwru_event e = udp_event();
  std::string out;
  f.format(EventView{e, "ip_rcv", "", nullptr}, out);
  EXPECT_EQ(
      out,
      "13:04:05.007 0xffff888012345600 1   nc:4242          1000             4026532001 a00          veth0:7      "
      "0x0800 1500  84    10.231.0.1:40000->10.231.0.2:9(udp) ip_rcv\n");
}

TEST(EventFormatter, AbsoluteTimeColumnAndStack) {
  OutputOptions o;
  o.meta = o.tuple = false;
  o.timestamp = TimestampMode::Absolute;
  o.stack = true;
  o.caller = true;
  EventFormatter f(o, clock_at_13_04_05_007());
  EXPECT_EQ(f.header(), "TIME         SKB                CPU PROCESS          TIMESTAMP        FUNC CALLER\n");
  const pwru_event e = udp_event();
  const std::vector<std::string> stack = {"ip_rcv", "__netif_receive_skb_one_core"};
  std::string out;
  f.format(EventView{e, "netif_receive_skb", "ip_rcv", &stack}, out);
  EXPECT_EQ(out,
            "13:04:05.007 0xffff888012345600 1   nc:4242          1000             netif_receive_skb ip_rcv\n"
            "ip_rcv\n__netif_receive_skb_one_core\n");
}

// pwru's JSON "time" is an interface{} with omitempty: absent only for
// "none", a string for "absolute", a number (0 included) otherwise.
std::string json_line(TimestampMode mode, std::uint64_t ts_ns) {
  OutputOptions o;
  o.json = true;
  o.meta = o.tuple = false;
  o.timestamp = mode;
  EventFormatter f(o, clock_at_13_04_05_007());
  pwru_event e = udp_event();
  e.ts_ns = ts_ns;
  std::string out;
  f.format(EventView{e, "ip_rcv", "", nullptr}, out);
  return out;
}

TEST(EventFormatter, JsonTimeForEveryTimestampMode) {
  EXPECT_EQ(json_line(TimestampMode::None, 1000),
            "{\"skb\":\"0xffff888012345600\",\"cpu\":1,\"process\":\"nc:4242\",\"func\":\"ip_rcv\"}\n");
  EXPECT_EQ(json_line(TimestampMode::Current, 1000),
            "{\"skb\":\"0xffff888012345600\",\"cpu\":1,\"process\":\"nc:4242\",\"func\":\"ip_rcv\",\"time\":1000}\n");
  EXPECT_EQ(json_line(TimestampMode::Current, 0),
            "{\"skb\":\"0xffff888012345600\",\"cpu\":1,\"process\":\"nc:4242\",\"func\":\"ip_rcv\",\"time\":0}\n");
  // An skb's first event: relative 0, still written.
  EXPECT_EQ(json_line(TimestampMode::Relative, 1000),
            "{\"skb\":\"0xffff888012345600\",\"cpu\":1,\"process\":\"nc:4242\",\"func\":\"ip_rcv\",\"time\":0}\n");
  EXPECT_EQ(json_line(TimestampMode::Absolute, 1000),
            "{\"skb\":\"0xffff888012345600\",\"cpu\":1,\"process\":\"nc:4242\",\"func\":\"ip_rcv\","
            "\"time\":\"13:04:05.007\"}\n");
}

TEST(EventFormatter, RelativeJsonCarriesTheDelta) {
  OutputOptions o;
  o.json = true;
  o.meta = o.tuple = false;
  o.timestamp = TimestampMode::Relative;
  EventFormatter f(o);
  pwru_event a = udp_event(), b = udp_event();
  a.ts_ns = 1000;
  b.ts_ns = 1700;
  std::string out;
  f.format(EventView{a, "x", "", nullptr}, out);
  f.format(EventView{b, "y", "", nullptr}, out);
  EXPECT_NE(out.find("\"func\":\"x\",\"time\":0}\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\"func\":\"y\",\"time\":700}\n"), std::string::npos) << out;
}

TEST(EventFormatter, ProcessIsTheExecutablePathCutLikePwru) {
  pwru_event e = udp_event();
  e.pid = 13001;
  // pwru's getExecName: "path:pid", the last 16 characters, '~' first.
  EXPECT_EQ(process_column(e, "/usr/bin/ping"), "~/bin/ping:13001");
  EXPECT_EQ(process_column(e, "/bin/nc"), "/bin/nc:13001");
  EXPECT_EQ(process_column(e, "<empty>"), "<empty>:13001");
  EXPECT_EQ(process_column(e), "nc:13001") << "without a program, the comm";
  OutputOptions o;
  o.tuple = false;
  EventFormatter text(o);
  std::string out;
  text.format(EventView{e, "ip_rcv", "", nullptr, {}, {}, "/usr/bin/ping"}, out);
  EXPECT_EQ(out,
            "0xffff888012345600 1   ~/bin/ping:13001 4026532001 a00          veth0:7      0x0800 1500  84    "
            "ip_rcv\n");
  o.json = true;
  EventFormatter json(o);
  out.clear();
  json.format(EventView{e, "ip_rcv", "", nullptr, {}, {}, "/usr/bin/ping"}, out);
  EXPECT_NE(out.find("\"process\":\"~/bin/ping:13001\""), std::string::npos) << out;
}

TEST(EventFormatter, FilterTraceTcAddsNoCbColumn) {
  // pwru v1.0.9 has no cb column at all; ours prints it only when asked.
  const char* argv[] = {"pwru", "--filter-trace-tc"};
  std::ostringstream out, err;
  const ParsedArgs parsed = parse_pwru_args(2, argv, out, err);
  ASSERT_TRUE(parsed.options) << err.str();
  EXPECT_FALSE(parsed.options->output.cb);
  EventFormatter text(parsed.options->output);
  EXPECT_EQ(
      text.header(),
      "SKB                CPU PROCESS          NETNS      MARK/x        IFACE       PROTO  MTU   LEN   TUPLE FUNC\n");
  OutputOptions o = parsed.options->output;
  o.json = true;
  EventFormatter json(o);
  const pwru_event e = udp_event();
  std::string line;
  json.format(EventView{e, "ip_rcv(tc)", "", nullptr}, line);
  EXPECT_EQ(line.find("\"cb\""), std::string::npos) << line;
  o.cb = true;  // --output-skb-cb
  EventFormatter with_cb(o);
  line.clear();
  with_cb.format(EventView{e, "ip_rcv(tc)", "", nullptr}, line);
  EXPECT_NE(line.find("\"cb\":[0,0,0,0,0]"), std::string::npos) << line;
}

}  // namespace
}  // namespace pwru
