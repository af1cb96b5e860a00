// TraceService::start's order: who calls, then whether they may trace what
// the body names, and only then the checks that reveal this agent's caps.
// No request here gets as far as loading programs (no root needed).
#include "traces/trace_service.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.h"

namespace pwru {
namespace {

// Records each call; refuses as told.
class FakeAuth final : public TraceAuth {
 public:
  int authenticate_status = 0;  // 0: accept
  int authorize_status = 0;
  mutable std::vector<std::string> calls;

  TraceCaller authenticate(const std::string& authorization) const override {
    calls.push_back("authenticate " + authorization);
    if (authenticate_status) throw RequestError(authenticate_status, "who are you");
    return TraceCaller{"alice", "uid-alice", {}, "{}"};
  }
  void authorize(const TraceCaller& caller, const TraceAction& action) const override {
    calls.push_back("authorize " + caller.user + " " + action.verb + " " + action.namespace_name + "/" + action.pod);
    if (authorize_status) throw RequestError(authorize_status, caller.user + " may not");
  }
};

struct Answer {
  int status = 0;
  std::string message;
};

Answer start(TraceService& service, const std::string& body) {
  try {
    service.start(body, "127.0.0.1:1", "Bearer t");
  } catch (const RequestError& e) {
    return {e.status(), e.what()};
  }
  ADD_FAILURE() << "started: " << body;
  return {};
}

class TraceServiceOrder : public ::testing::Test {
 protected:
  TraceServiceOrder() : auth_(std::make_shared<FakeAuth>()), service_(TraceServiceConfig{}, {}, auth_) {}
  std::shared_ptr<FakeAuth> auth_;
  TraceService service_;
};

TEST_F(TraceServiceOrder, ACallerWithoutRightsLearnsNothingOfTheCaps) {
  auth_->authorize_status = 403;
  for (const std::string body : {R"({"namespace":"shop","pod":"web-0","duration":"2h"})",
                                 R"({"namespace":"shop","pod":"web-0","max_events":99999999999})",
                                 R"({"namespace":"shop","pod":"web-0","nope":true,"duration":-1})",
                                 R"({"namespace":"shop","pod":"web-0","functions":"ip_(rcv"})"}) {
    const Answer a = start(service_, body);
    EXPECT_EQ(a.status, 403) << body << ": " << a.message;
    EXPECT_EQ(a.message.find("cap"), std::string::npos) << a.message;
  }
  EXPECT_EQ(auth_->calls.at(1), "authorize alice create shop/web-0");
  // A node or netns trace needs the node's right: no pod named.
  auth_->calls.clear();
  EXPECT_EQ(start(service_, R"({"netns":4026531840,"duration":"2h"})").status, 403);
  EXPECT_EQ(auth_->calls, (std::vector<std::string>{"authenticate Bearer t", "authorize alice create /"}));
}

TEST_F(TraceServiceOrder, OnlyAnAuthorizedCallerHearsTheCaps) {
  const Answer a = start(service_, R"({"namespace":"shop","pod":"web-0","duration":"2h"})");
  EXPECT_EQ(a.status, 400);
  EXPECT_NE(a.message.find("over this agent's cap of 600s"), std::string::npos) << a.message;
  EXPECT_EQ(auth_->calls.size(), 2u);
}

// Syntax and the target's own shape come before authorization: they say
// nothing about this agent, and without a target there is nothing to ask.
TEST_F(TraceServiceOrder, SyntaxIsCheckedBeforeAuthorizationAndAfterAuthentication) {
  auth_->authorize_status = 403;
  EXPECT_EQ(start(service_, R"({"namespace":"shop",)").status, 400);
  EXPECT_EQ(start(service_, R"({"namespace":"shop","pod":"Web_0"})").status, 400);
  EXPECT_EQ(start(service_, R"({"namespace":"shop","pod":"web-0","duration":1e400})").status, 400);
  EXPECT_EQ(auth_->calls, std::vector<std::string>(3, "authenticate Bearer t"));
  auth_->authenticate_status = 401;
  EXPECT_EQ(start(service_, R"({"namespace":"shop",)").status, 401);
}

}  // namespace
}  // namespace pwru
