// Decodes the BPF ring's variable-size event records (bpf/pwru_abi.h): a
// fixed core, then the optional parts named in core.parts.
#pragma once

#include <cstdint>
#include <span>

#include "pwru_abi.h"

namespace pwru {

// event.parts says which parts the record had: with PWRU_PART_IDENT,
// event.ident is the packet's identity (all 0 is a valid one).
struct DecodedEvent {
  pwru_event event{};
  std::span<const std::uint8_t> packet;  // with --output-pcap: points into the record
  std::uint32_t packet_len = 0;          // the whole packet's length; packet may hold less
};

// Fills `out` from one record; false when the record is not one the BPF side
// writes (too short, unknown parts, a size that disagrees with its parts,
// packet bytes that overrun it). Reads nothing outside `record`.
bool decode_event_record(std::span<const std::uint8_t> record, DecodedEvent& out);

}  // namespace pwru
