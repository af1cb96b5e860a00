// The trace API never hands out kernel heap addresses (they defeat KASLR
// for whoever reads them): an skb's address becomes a pseudonym, stable
// within one trace (so a caller can still follow one packet from hook to
// hook, as with pwru's skb column) and unrelated between traces.
#pragma once

#include <array>
#include <cstdint>

namespace pwru {

class SkbPseudonym {
 public:
  SkbPseudonym();  // a fresh random key
  // A keyed PRF (HMAC-SHA-256, cut to 64 bits): without the key, no
  // number of pseudonyms tells anything of the addresses behind them.
  std::uint64_t operator()(std::uint64_t skb_addr) const;

 private:
  std::array<unsigned char, 32> key_{};
};

}  // namespace pwru
