// Backend auto-detection on the running kernel: "auto" must pick the first
// of kprobe-multi, kprobe, tracepoint that the kernel really accepts, and
// say why. (This CI kernel has no kprobes: auto lands on tracepoint.)
#include "probe/backend_select.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace pwru {
namespace {

TEST(BackendSelect, AutoPicksTheFirstThatAttaches) {
  const std::string multi = try_kprobe_attach(KprobeKind::kKprobeMulti, "consume_skb");
  const std::string single = try_kprobe_attach(KprobeKind::kKprobe, "consume_skb");
  const BackendChoice c = choose_backend("auto", "consume_skb");
  const std::string want = multi.empty() ? "kprobe-multi" : single.empty() ? "kprobe" : "tracepoint";
  EXPECT_EQ(c.name, want) << c.reason;
  EXPECT_FALSE(c.reason.empty());
  if (want == "tracepoint") {
    EXPECT_FALSE(c.kprobe.has_value());
    EXPECT_NE(c.reason.find(multi), std::string::npos) << c.reason;
    EXPECT_THROW(choose_backend("kprobe", "consume_skb"), SystemError);
    EXPECT_THROW(choose_backend("kprobe-multi", "consume_skb"), SystemError);
  }
  EXPECT_EQ(choose_backend("tracepoint", "consume_skb").name, "tracepoint");
}

TEST(BackendSelect, AFunctionThatDoesNotExistIsRefused) {
  EXPECT_FALSE(try_kprobe_attach(KprobeKind::kKprobe, "no_such_function_pwru").empty());
  EXPECT_FALSE(try_kprobe_attach(KprobeKind::kKprobeMulti, "no_such_function_pwru").empty());
}

}  // namespace
}  // namespace pwru
