// The body of POST /v1/traces: every field, and a table of every mistake
// with the message a user gets for it.
#include "traces/trace_request.h"

#include <gtest/gtest.h>

#include "common/error.h"

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

TEST(TraceRequest, EveryMistakeIsA400ThatSaysWhatToFix) {
  const BadCase cases[] = {
      {"", "not valid JSON"},
      {"{\"namespace\":", "not valid JSON"},
      {"[1,2]", "must be a JSON object"},
      {"\"icmp\"", "must be a JSON object"},
      {R"({"pods":"web-0"})", "unknown field \"pods\"; allowed: caller"},
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
      {R"({"functions":"ip_(rcv"})", "not a valid regular expression"},
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

}  // namespace
}  // namespace pwru
