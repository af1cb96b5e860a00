#include <gtest/gtest.h>

#include "pcap_harness.h"

namespace pwru {
namespace {
TEST(PcapQuick, LenGreaterThanZero) {
  auto f = std::make_shared<const CompiledPcap>(compile_pcap("len > 0"));
  testing::PcapHarness h(f);
  std::vector<std::uint8_t> pkt(60, 0);
  auto v = h.run(pkt);
  EXPECT_TRUE(v.l2);
  EXPECT_TRUE(v.l3);
  testing::PcapHarness none(nullptr);
  v = none.run(pkt);
  EXPECT_TRUE(v.l2);
}
}  // namespace
}  // namespace pwru
