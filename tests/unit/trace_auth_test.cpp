// The TokenReview rate limit's bucket, on a clock the test moves.
#include "traces/trace_auth.h"

#include <gtest/gtest.h>

namespace pwru {
namespace {

using std::chrono::milliseconds;

TEST(TokenBucket, ABurstThenTheRate) {
  TokenBucket bucket(20, 40);
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  int taken = 0;
  for (int i = 0; i < 100; ++i) taken += bucket.take(t0);
  EXPECT_EQ(taken, 40);
  EXPECT_FALSE(bucket.take(t0 + milliseconds(49)));  // 0.98 of a token
  EXPECT_TRUE(bucket.take(t0 + milliseconds(50)));
  EXPECT_FALSE(bucket.take(t0 + milliseconds(50)));
  // A long pause refills to the burst, not beyond.
  taken = 0;
  for (int i = 0; i < 100; ++i) taken += bucket.take(t0 + std::chrono::hours(1));
  EXPECT_EQ(taken, 40);
  // Time going backwards (it cannot on a steady clock, but callers race)
  // refills nothing.
  EXPECT_FALSE(bucket.take(t0));
}

TEST(TokenReviewLimits, ReadFromTheConfiguration) {
  AgentConfig::Traces::TokenReview config;
  config.cache_seconds = 7;
  config.negative_cache_seconds = 0;
  config.reviews_per_second = 3;
  config.burst = 9;
  const TokenReviewLimits limits = token_review_limits(config);
  EXPECT_EQ(limits.accepted_for, milliseconds(7000));
  EXPECT_EQ(limits.rejected_for, milliseconds(0));
  EXPECT_EQ(limits.reviews_per_second, 3.0);
  EXPECT_EQ(limits.review_burst, 9.0);
}

}  // namespace
}  // namespace pwru
