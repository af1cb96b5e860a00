// The trace API's skb pseudonyms: one packet keeps one name within a
// trace, and nothing of its kernel address shows through.
#include "session/skb_pseudonym.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>

namespace pwru {
namespace {

constexpr std::uint64_t kSkb = 0xffff888104cb4600ull;

TEST(SkbPseudonym, StableWithinOneTrace) {
  const SkbPseudonym names;
  EXPECT_EQ(names(kSkb), names(kSkb));
  EXPECT_NE(names(kSkb), names(kSkb + 0x100)) << "two skbs share a name";
}

TEST(SkbPseudonym, HidesTheAddress) {
  const SkbPseudonym names;
  std::set<std::uint64_t> seen;
  for (std::uint64_t i = 0; i < 4096; ++i) {
    const std::uint64_t addr = kSkb + i * 0x100;
    const std::uint64_t name = names(addr);
    EXPECT_NE(name, addr);
    EXPECT_NE(name, 0u) << "0 means \"no skb\" to pwru's readers";
    // Neighbouring slab objects must not get neighbouring names: the high
    // bits of a kernel address (0xffff8881...) must not show through.
    EXPECT_NE(name >> 32, addr >> 32);
    seen.insert(name);
  }
  EXPECT_EQ(seen.size(), 4096u);
}

TEST(SkbPseudonym, UnrelatedBetweenTraces) {
  const SkbPseudonym first, second;
  int equal = 0;
  for (std::uint64_t i = 0; i < 256; ++i) equal += first(kSkb + i * 0x100) == second(kSkb + i * 0x100);
  EXPECT_EQ(equal, 0) << "two traces name the same skbs alike: their key is not random";
}

}  // namespace
}  // namespace pwru
