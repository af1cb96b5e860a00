// The body of POST /v1/traces: every field, and a table of every mistake
// with the message a user gets for it.
#include "traces/trace_request.h"

#include <gtest/gtest.h>

#include <span>

#include "common/error.h"
#include "pwru_abi.h"

namespace pwru {
namespace {

using std::chrono::milliseconds;

const TraceRequestLimits kLimits{milliseconds(30000), milliseconds(600000), 10000, 1000000};

TEST(TraceRequest, DefaultsForAnEmptyObjectTraceTheNodeAsJson) {
  const TraceRequest r = parse_trace_request("{}", kLimits);
  EXPECT_FALSE(r.names_pod());
  EXPECT_FALSE(r.netns);
  EXPECT_EQ(r.filter, "");
  EXPECT_EQ(r.duration, milliseconds(30000));
  EXPECT_EQ(r.max_events, 10000u);
  EXPECT_TRUE(r.output.json);
  EXPECT_TRUE(r.output.meta);
  EXPECT_TRUE(r.output.tuple);
}

TEST(TraceRequest, EveryFieldIsRead) {
  const TraceRequest r = parse_trace_request(
      R"({"namespace":"shop","pod":"web-0","filter":"tcp port 80","functions":"^ip_","duration":"1m30s",
          "max_events":5,"format":"text","stack":true,"caller":true,"tcp_flags":true,"meta":false,"tuple":false,
          "timestamp":"relative","track_skb":false})",
      kLimits);
  EXPECT_EQ(r.namespace_name, "shop");
  EXPECT_EQ(r.pod, "web-0");
  EXPECT_EQ(r.filter, "tcp port 80");
  EXPECT_EQ(r.functions, "^ip_");
  EXPECT_EQ(r.duration, milliseconds(90000));
  EXPECT_EQ(r.max_events, 5u);
  EXPECT_FALSE(r.output.json);
  EXPECT_TRUE(r.output.stack && r.output.caller && r.output.tcp_flags);
  EXPECT_FALSE(r.output.meta || r.output.tuple);
  EXPECT_EQ(r.output.timestamp, TimestampMode::Relative);
  EXPECT_FALSE(r.track_skb);
  EXPECT_TRUE(parse_trace_request(R"({"track_skb":true})", kLimits).track_skb);
  EXPECT_EQ(*parse_trace_request(R"({"netns":4026532301})", kLimits).netns, 4026532301u);
  EXPECT_EQ(parse_trace_request(R"({"duration":2.5})", kLimits).duration, milliseconds(2500));
}

TEST(TraceRequest, DurationsInGoSyntax) {
  EXPECT_EQ(parse_duration("500ms", "d"), milliseconds(500));
  EXPECT_EQ(parse_duration("1.5s", "d"), milliseconds(1500));
  EXPECT_EQ(parse_duration("2m", "d"), milliseconds(120000));
  EXPECT_EQ(parse_duration("1h2m3s", "d"), milliseconds(3723000));
  for (const char* bad : {"", "10", "s", "5 s", "1x", "1..5s", "-1s", "5S"}) {
    EXPECT_THROW(parse_duration(bad, "d"), RequestError) << bad;
  }
}

struct BadCase {
  const char* body;
  const char* message_part;
};

// Each body is a 400 whose message holds its part.
void expect_each_refused_with_400(std::span<const BadCase> cases) {
  for (const BadCase& c : cases) {
    try {
      parse_trace_request(c.body, kLimits);
      ADD_FAILURE() << "accepted: " << c.body;
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 400) << c.body;
      EXPECT_NE(std::string(e.what()).find(c.message_part), std::string::npos)
          << c.body << "\n  said: " << e.what() << "\n  want: " << c.message_part;
    }
  }
}

TEST(TraceRequest, EveryMistakeIsA400ThatSaysWhatToFix) {
  const BadCase cases[] = {
      {"", "the body is empty"},
      {"{\"namespace\":", "not valid JSON"},
      {"[1,2]", "must be a JSON object"},
      {"\"icmp\"", "must be a JSON object"},
      {R"({"pod_name":"web-0"})", "unknown field \"pod_name\"; allowed: caller"},
      {R"({"pods":"web-0"})", "\"namespace\" and \"pods\" go together"},
      {R"({"pod":"web-0"})", "\"namespace\" and \"pod\" go together"},
      {R"({"namespace":"shop"})", "go together"},
      {R"({"namespace":"shop","pod":"Web_0"})", "not a Kubernetes pod name"},
      {R"({"namespace":"Shop!","pod":"web-0"})", "not a Kubernetes namespace name"},
      {R"({"namespace":"shop","pod":7})", "\"pod\" must be a string"},
      {R"({"namespace":"shop","pod":"web-0","netns":4026532301})", "either"},
      {R"({"netns":"4026532301"})", "network namespace inode number"},
      {R"({"netns":-1})", "inode number"},
      {R"({"netns":0})", "inode number"},
      {R"({"netns":4294967296})", "inode number"},
      {R"({"filter":["icmp"]})", "\"filter\" must be a string"},
      {R"({"functions":"ip_(rcv"})", "\"functions\": 'ip_(rcv' is not a valid regular expression: a '(' without"},
      {R"({"functions":"(?<!x)ip"})", "\"functions\""},
      {R"({"namespace":"shop","pod":"web..0"})", "not a Kubernetes pod name"},
      {R"({"namespace":"shop","pod":"web-0."})", "not a Kubernetes pod name"},
      {R"({"namespace":"shop","pod":"-web"})", "not a Kubernetes pod name"},
      {R"({"namespace":"sh.op","pod":"web-0"})", "not a Kubernetes namespace name"},
      {R"({"namespace":"shop-","pod":"web-0"})", "not a Kubernetes namespace name"},
      {R"({"namespace":"","pod":"web-0"})", "not a Kubernetes namespace name"},
      {R"({"track_skb":"yes"})", "must be true or false"},
      {R"({"duration":"forever"})", "\"duration\""},
      {R"({"duration":"0s"})", "longer than 0"},
      {R"({"duration":-3})", "\"duration\" must be a duration"},
      {R"({"duration":"11m"})", "over this agent's cap of 600s"},
      {R"({"max_events":0})", "positive integer"},
      {R"({"max_events":1.5})", "positive integer"},
      {R"({"max_events":2000000})", "over this agent's cap of 1000000"},
      {R"({"format":"yaml"})", "\"json\" or \"text\""},
      {R"({"timestamp":"now"})", "none, current, relative or absolute"},
      {R"({"stack":1})", "must be true or false"},
  };
  expect_each_refused_with_400(cases);
}

// "netns" as an array: one trace of several netns; the BPF map's bound
// (PWRU_MAX_NETNS_SET) is the cap, and every inode is checked as one is.
TEST(TraceRequest, NetnsMayBeAnArrayOfDistinctInodes) {
  const TraceRequest two = parse_trace_request(R"({"netns":[4026532301,4026531840]})", kLimits);
  EXPECT_FALSE(two.netns);
  EXPECT_EQ(two.netns_set, (std::vector<std::uint32_t>{4026532301u, 4026531840u}));
  // One is a single netns: the programs' compare, no map lookup.
  const TraceRequest one = parse_trace_request(R"({"netns":[4026532301]})", kLimits);
  EXPECT_EQ(one.netns, 4026532301u);
  EXPECT_TRUE(one.netns_set.empty());
  EXPECT_TRUE(parse_trace_request(R"({"netns":4026532301})", kLimits).netns_set.empty());
  std::string most = "{\"netns\":[";
  for (int i = 1; i <= PWRU_MAX_NETNS_SET; ++i) most += (i > 1 ? "," : "") + std::to_string(4026532000 + i);
  EXPECT_EQ(parse_trace_request(most + "]}", kLimits).netns_set.size(), std::size_t{PWRU_MAX_NETNS_SET});
  // The target (what authorization reads) is the node's, as for one netns.
  const TraceTarget target = parse_trace_target(R"({"netns":[4026532301,4026531840]})");
  EXPECT_TRUE(target.namespace_name.empty() && target.pod.empty());

  const BadCase cases[] = {
      {R"({"netns":[]})", "\"netns\" is an empty array; list the inodes of the netns to trace (1 to 64)"},
      {R"({"netns":[4026532301,4026532301]})", "\"netns\" lists 4026532301 twice; list each netns once"},
      {R"({"netns":[4026532301,0]})", "\"netns\"[1] must be a network namespace inode number, from 1 to 4294967295"},
      {R"({"netns":[4026532301,"4026531840"]})", "\"netns\"[1] must be a network namespace inode number"},
      {R"({"netns":[1.5]})", "\"netns\"[0] must be"},
      {R"({"netns":[-1]})", "\"netns\"[0] must be"},
      {R"({"netns":[4294967296]})", "\"netns\"[0] must be"},
      {R"({"netns":[[4026532301]]})", "\"netns\"[0] must be"},
      {R"({"netns":[null]})", "\"netns\"[0] must be"},
      {R"({"netns":{"a":1}})",
       "\"netns\" must be a network namespace inode number, from 1 to 4294967295 (as pwru "
       "--output-json prints it), or an array of them"},
      {R"({"namespace":"shop","pod":"web-0","netns":[4026532301,4026531840]})", "either"},
  };
  expect_each_refused_with_400(cases);
  try {
    parse_trace_request(most + ",4026531840]}", kLimits);
    ADD_FAILURE() << "accepted 65 netns";
  } catch (const RequestError& e) {
    EXPECT_STREQ(e.what(), "\"netns\" lists 65 netns; one trace takes at most 64: split them over several traces");
  }
}

// What the client gets for a body: the value read, or the 400's message.
struct Outcome {
  bool accepted = false;
  std::string value;  // netns, max_events, or duration in ms, as text
  std::string error;
};

Outcome outcome_of(const std::string& field, const std::string& body, const TraceRequestLimits& limits) {
  try {
    const TraceRequest r = parse_trace_request(body, limits);
    if (field == "netns") return {true, r.netns ? std::to_string(*r.netns) : "unset", ""};
    if (field == "max_events") return {true, std::to_string(r.max_events), ""};
    return {true, std::to_string(r.duration.count()), ""};
  } catch (const RequestError& e) {
    return {false, "", e.status() == 400 ? e.what() : "status " + std::to_string(e.status())};
  }
}

struct EdgeCase {
  const char* field;
  const char* literal;  // the JSON text of the value
  const char* value;    // accepted: the value read; nullptr: refused with a 400 naming the field
  const char* message_part = "";
};

// Every numeric field at the edges of every type it could overflow: either
// the right value or a 400 naming the field, never another exception.
TEST(TraceRequest, NumbersAtTheEdgesAreReadExactlyOrRefusedNamingTheField) {
  const char* const k2p32m1 = "4294967295";
  const char* const k2p32 = "4294967296";
  const char* const k2p63 = "9223372036854775808";
  const char* const k2p64m1 = "18446744073709551615";
  const char* const k2p64 = "18446744073709551616";
  const EdgeCase cases[] = {
      {"netns", "0", nullptr, "inode number"},
      {"netns", "-1", nullptr, "inode number"},
      {"netns", "-0", nullptr, "inode number"},
      {"netns", "1", "1"},
      {"netns", "1e308", nullptr, "inode number"},
      {"netns", "1e400", nullptr, "a number is beyond"},
      {"netns", "-1e400", nullptr, "a number is beyond"},
      {"netns", k2p32m1, "4294967295"},
      {"netns", k2p32, nullptr, "from 1 to 4294967295"},
      {"netns", k2p63, nullptr, "inode number"},
      {"netns", k2p64m1, nullptr, "inode number"},
      {"netns", k2p64, nullptr, "inode number"},
      {"netns", "4026531840.0", nullptr, "inode number"},
      {"netns", "1.5", nullptr, "inode number"},
      {"netns", "true", nullptr, "inode number"},
      {"netns", "\"1\"", nullptr, "inode number"},
      {"netns", "null", nullptr, "inode number"},
      {"max_events", "0", nullptr, "positive integer"},
      {"max_events", "-1", nullptr, "positive integer"},
      {"max_events", "-0", nullptr, "positive integer"},
      {"max_events", "1", "1"},
      {"max_events", "1000000", "1000000"},
      {"max_events", "1000001", nullptr, "over this agent's cap of 1000000"},
      {"max_events", "1e308", nullptr, "positive integer"},
      {"max_events", "1e400", nullptr, "a number is beyond"},
      {"max_events", k2p32m1, nullptr, "over this agent's cap"},
      {"max_events", k2p32, nullptr, "over this agent's cap"},
      {"max_events", k2p63, nullptr, "over this agent's cap"},
      {"max_events", k2p64m1, nullptr, "over this agent's cap"},
      {"max_events", k2p64, nullptr, "positive integer"},
      {"max_events", "1.5", nullptr, "positive integer"},
      {"max_events", "true", nullptr, "positive integer"},
      {"max_events", "\"1\"", nullptr, "positive integer"},
      {"max_events", "null", nullptr, "positive integer"},
      {"duration", "0", nullptr, "more than 0"},
      {"duration", "-1", nullptr, "more than 0"},
      {"duration", "-0", nullptr, "more than 0"},
      {"duration", "1e-9", nullptr, "longer than 0"},
      {"duration", "1", "1000"},
      {"duration", "1.5", "1500"},
      {"duration", "600", "600000"},
      {"duration", "600.001", nullptr, "over this agent's cap of 600s"},
      {"duration", "1e308", nullptr, "over this agent's cap"},
      {"duration", "1e400", nullptr, "a number is beyond"},
      {"duration", k2p32m1, nullptr, "over this agent's cap"},
      {"duration", k2p32, nullptr, "over this agent's cap"},
      {"duration", k2p63, nullptr, "over this agent's cap"},
      {"duration", k2p64m1, nullptr, "over this agent's cap"},
      {"duration", k2p64, nullptr, "over this agent's cap"},
      {"duration", "true", nullptr, "must be a duration"},
      {"duration", "\"1\"", nullptr, "without a unit"},
      {"duration", "null", nullptr, "must be a duration"},
      {"duration", "\"1e400s\"", nullptr, "unknown unit 'e'"},
      {"duration", "\"0.00000000000000000000000000000000000000000000000001s\"", nullptr, "longer than 0"},
  };
  for (const EdgeCase& c : cases) {
    const std::string body = std::string("{\"") + c.field + "\":" + c.literal + "}";
    const Outcome o = outcome_of(c.field, body, kLimits);
    if (c.value) {
      EXPECT_TRUE(o.accepted && o.value == c.value) << body << ": want " << c.value << ", got " << o.value << o.error;
      continue;
    }
    EXPECT_FALSE(o.accepted) << body << ": accepted as " << o.value;
    EXPECT_NE(o.error.find(std::string("\"") + c.field + "\""), std::string::npos) << body << ": " << o.error;
    EXPECT_NE(o.error.find(c.message_part), std::string::npos)
        << body << ": " << o.error << "\n  want " << c.message_part;
    EXPECT_EQ(o.error.find("json.exception"), std::string::npos) << body << ": the library's text: " << o.error;
  }
  // Where the cap allows it, the widest integers are read exactly.
  TraceRequestLimits wide = kLimits;
  wide.max_events = UINT64_MAX;
  EXPECT_EQ(outcome_of("max_events", std::string("{\"max_events\":") + k2p64m1 + "}", wide).value, k2p64m1);
  EXPECT_EQ(outcome_of("max_events", std::string("{\"max_events\":") + k2p63 + "}", wide).value, k2p63);
  EXPECT_FALSE(outcome_of("max_events", std::string("{\"max_events\":") + k2p64 + "}", wide).accepted);
}

std::string error_of(std::string_view body) {
  try {
    parse_trace_request(body, kLimits);
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400) << body;
    return e.what();
  }
  ADD_FAILURE() << "accepted: " << body;
  return "";
}

// Whatever the JSON parser objects to is a 400 in our words: the byte, or
// the field, and never nlohmann's exception text.
TEST(TraceRequest, MalformedJsonIsA400NamingTheByteInOurWords) {
  const std::pair<std::string, std::string> cases[] = {
      {"", "the body is empty"},
      {" \r\n", "the body is empty"},
      {"{\"namespace\":", "it ends (at byte 13) before the JSON value does"},
      {"{\"filter\": icmp}", "not valid JSON at byte 11 (near 'ilter\": icmp}')"},
      {"{} x", "not valid JSON at byte 3"},
      {"{\"filter\":\"\xff\"}", "not valid JSON at byte 11 (near 'ilter\":\"\\xff\"}')"},
      {"{\"filter\":\"a\x01\"}", "not valid JSON at byte 12"},
      {"{\"filter\":\"\\ud800\"}", "not valid JSON at byte"},
      {"{'filter':'icmp'}", "not valid JSON at byte 1 (near '{\\x27filter\\x27:"},
      {"{\"x\":[1e999]}", "\"x\": a number is beyond"},
      {"[1e999]", "a number in the body is beyond"},
      {"{\"namespace\":\"shop\",\"pod\":\"web-0\"", "it ends"},
  };
  for (const auto& [body, part] : cases) {
    const std::string error = error_of(body);
    EXPECT_NE(error.find(part), std::string::npos) << body << "\n  said: " << error << "\n  want: " << part;
    EXPECT_EQ(error.find("json.exception"), std::string::npos) << error;
    EXPECT_EQ(error.find("syntax error while parsing"), std::string::npos) << error;
  }
}

TEST(TraceRequest, NestingIsCappedAt32Levels) {
  const auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  // 32 levels parse (and are refused as no object); 33 are refused as too deep.
  EXPECT_NE(error_of(nested(32)).find("must be a JSON object"), std::string::npos);
  EXPECT_NE(error_of(nested(33)).find("nests objects and arrays more than 32 deep"), std::string::npos);
  EXPECT_NE(error_of(nested(100000)).find("more than 32 deep"), std::string::npos);
  // Within an object: the field is named.
  const std::string deep_field = "{\"filter\":" + nested(40) + "}";
  EXPECT_NE(error_of(deep_field).find("more than 32 deep (in \"filter\")"), std::string::npos) << error_of(deep_field);
  const std::string ok_field = "{\"filter\":" + nested(31) + "}";
  EXPECT_NE(error_of(ok_field).find("\"filter\" must be a string"), std::string::npos) << error_of(ok_field);
}

TEST(TraceRequest, DurationTextsOfAnyLengthAreA400) {
  EXPECT_NE(error_of("{\"duration\":\"1" + std::string(400, '0') + "s\"}").find("longer than 64 characters"),
            std::string::npos);
  EXPECT_NE(error_of("{\"duration\":\"" + std::string(60, '9') + "s\"}").find("\"duration\": too long"),
            std::string::npos);
  // std::stod threw std::out_of_range (a 500) on these; a short text
  // cannot leave a double's range.
  EXPECT_EQ(parse_duration("0." + std::string(50, '0') + "1h", "d").count(), 0);
  EXPECT_NE(error_of("{\"duration\":\"0." + std::string(50, '0') + "1h\"}").find("longer than 0"), std::string::npos);
}

// Before the caller is authorized, only the target is read: what would tell
// a caller about this agent's caps waits for authorization.
// "pods": several pods of this node in one trace; "service" and
// "selector": a fan-out, parsed here and run elsewhere.
TEST(TraceRequest, PodsServiceAndSelectorEachGoWithANamespace) {
  const TraceRequest pods = parse_trace_request(R"({"namespace":"shop","pods":["web-0","web-1"]})", kLimits);
  EXPECT_EQ(pods.pods, (std::vector<std::string>{"web-0", "web-1"}));
  EXPECT_FALSE(pods.names_pod());
  EXPECT_FALSE(pods.fans_out());
  const TraceRequest service = parse_trace_request(R"({"namespace":"shop","service":"web"})", kLimits);
  EXPECT_EQ(service.service, "web");
  EXPECT_TRUE(service.fans_out());
  const TraceRequest selector = parse_trace_request(
      R"({"namespace":"shop","selector":"app in (web,api),tier!=db","max_events_per_second":2.5})", kLimits);
  EXPECT_EQ(selector.selector, "app in (web,api),tier!=db");
  EXPECT_TRUE(selector.fans_out());
  EXPECT_EQ(selector.max_events_per_second, 2.5);
  EXPECT_EQ(parse_trace_request("{}", kLimits).max_events_per_second, 0);
  EXPECT_EQ(parse_trace_request(R"({"max_events_per_second":0})", kLimits).max_events_per_second, 0);
  const TraceTarget target = parse_trace_target(R"({"namespace":"shop","pods":["a","b"],"duration":"99h"})");
  EXPECT_EQ(target.pods, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(parse_trace_target(R"({"namespace":"shop","service":"web"})").service, "web");
  EXPECT_EQ(parse_trace_target(R"({"namespace":"shop","selector":"app=web"})").selector, "app=web");
  // Up to traces.max_pods_per_trace.
  std::string sixteen = R"({"namespace":"shop","pods":[)";
  for (int i = 0; i < 16; ++i) sixteen += (i ? ",\"p" : "\"p") + std::to_string(i) + "\"";
  EXPECT_EQ(parse_trace_request(sixteen + "]}", kLimits).pods.size(), 16u);
  std::string seventeen = sixteen + R"(,"p16"]})";
  const std::string over_cap = "over this agent's cap of 16 (traces.max_pods_per_trace)";
  std::string sixty_five = R"({"namespace":"shop","pods":[)";
  for (int i = 0; i < 65; ++i) sixty_five += (i ? ",\"p" : "\"p") + std::to_string(i) + "\"";
  sixty_five += "]}";
  const std::string long_selector = R"({"namespace":"shop","selector":")" + std::string(1025, 'a') + R"("})";
  const BadCase cases[] = {
      {seventeen.c_str(), over_cap.c_str()},
      {sixty_five.c_str(), "one trace takes at most 64"},
      {R"({"namespace":"shop","pods":[]})", "\"pods\" is an empty array"},
      {R"({"namespace":"shop","pods":["web-0","web-0"]})", "\"pods\" lists 'web-0' twice"},
      {R"({"namespace":"shop","pods":["web-0","Web_1"]})", "\"pods[1]\": \"Web_1\" is not a Kubernetes pod name"},
      {R"({"namespace":"shop","pods":["web-0",1]})", "\"pods[1]\" must be a string"},
      {R"({"namespace":"shop","pods":"web-0"})", "\"pods\" must be an array"},
      {R"({"pods":["web-0"]})", "\"namespace\" and \"pods\" go together"},
      {R"({"service":"web"})", "\"namespace\" and \"service\" go together"},
      {R"({"selector":"app=web"})", "\"namespace\" and \"selector\" go together"},
      {R"({"namespace":"shop"})", "one of \"pod\", \"pods\", \"service\" or \"selector\""},
      {R"({"namespace":"shop","pod":"web-0","pods":["web-1"]})", "not \"pod\" and \"pods\""},
      {R"({"namespace":"shop","service":"web","selector":"app=web"})", "not \"service\" and \"selector\""},
      {R"({"namespace":"shop","pods":["web-0"],"netns":[1,2]})", "not both"},
      {R"({"namespace":"shop","service":"1web"})", "not a Kubernetes Service name"},
      {R"({"namespace":"shop","service":"web.shop"})", "not a Kubernetes Service name"},
      {R"({"namespace":"shop","service":"web-"})", "not a Kubernetes Service name"},
      {R"({"namespace":"shop","selector":""})", "\"selector\" is empty"},
      {R"({"namespace":"shop","selector":"app=\nweb"})", "control character"},
      {long_selector.c_str(), "\"selector\" is longer than 1024 bytes"},
      {R"({"namespace":"shop","service":"web","format":"text"})", "merges several nodes' streams: JSON only"},
      {R"({"namespace":"shop","selector":"app=web","format":"text"})", "JSON only"},
      {R"({"max_events_per_second":-1})", "\"max_events_per_second\" must be 1 or more"},
      {R"({"max_events_per_second":"5"})", "\"max_events_per_second\" must be 1 or more"},
      {R"({"max_events_per_second":0.5})", "\"max_events_per_second\" must be 1 or more"},
  };
  expect_each_refused_with_400(cases);
  // Text is fine for a pod set: one node's stream.
  EXPECT_FALSE(parse_trace_request(R"({"namespace":"shop","pods":["a"],"format":"text"})", kLimits).output.json);
}

TEST(TraceRequest, TheTargetIsReadAloneFirst) {
  const TraceTarget pod =
      parse_trace_target(R"({"namespace":"shop","pod":"web-0","duration":"99h","max_events":1e30,"nope":1})");
  EXPECT_EQ(pod.namespace_name, "shop");
  EXPECT_EQ(pod.pod, "web-0");
  const TraceTarget node = parse_trace_target(R"({"netns":4026531840,"duration":"99h"})");
  EXPECT_TRUE(node.pod.empty() && node.namespace_name.empty());
  for (const char* body : {"", "{\"pod\":", "[]", "{\"pod\":\"web-0\"}", R"({"namespace":"shop","pod":"Web"})"}) {
    try {
      parse_trace_target(body);
      ADD_FAILURE() << "accepted: " << body;
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 400) << body;
    }
  }
}

}  // namespace
}  // namespace pwru
