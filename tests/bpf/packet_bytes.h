// Writing packets byte by byte, in network order, for the tests that feed
// crafted packets to BPF programs (pcap filters, the tuple parser).
#pragma once

#include <cstdint>
#include <vector>

namespace pwru::testing {

using Bytes = std::vector<std::uint8_t>;

inline void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}

inline void put32(Bytes& b, std::uint32_t v) {
  put16(b, static_cast<std::uint16_t>(v >> 16));
  put16(b, static_cast<std::uint16_t>(v));
}

}  // namespace pwru::testing
