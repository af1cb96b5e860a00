#include "events/event_record.h"

#include <cstddef>
#include <cstring>

namespace pwru {

namespace {

// The part at its place in the record; the caller checked the record's size.
template <typename Part>
Part read_part(std::span<const std::uint8_t> record, std::uint8_t parts, std::uint32_t part) {
  Part value;
  std::memcpy(&value, record.data() + pwru_part_offset(parts, part), sizeof(value));
  return value;
}

}  // namespace

bool decode_event_record(std::span<const std::uint8_t> record, DecodedEvent& out) {
  pwru_event_core core;
  if (record.size() < sizeof(core)) return false;
  std::memcpy(&core, record.data(), sizeof(core));
  const std::uint8_t parts = core.parts;
  if (parts & ~PWRU_PARTS_KNOWN) return false;
  // The capture part's data runs to the end; every other record has exactly
  // the size its parts give.
  const std::uint32_t capture_at = pwru_part_offset(parts, PWRU_PART_CAPTURE);
  constexpr std::uint32_t kCaptureHeader = offsetof(pwru_part_capture, data);
  if (parts & PWRU_PART_CAPTURE) {
    if (record.size() < capture_at + kCaptureHeader) return false;
  } else if (record.size() != capture_at) {
    return false;
  }

  // Every field is set: `out` may hold the previous record.
  pwru_event& event = out.event;
  static_cast<pwru_event_core&>(event) = core;
  event.stack_id = (parts & PWRU_PART_STACK) ? read_part<pwru_part_stack>(record, parts, PWRU_PART_STACK).stack_id : -1;
  event.dump_id = (parts & PWRU_PART_DUMP) ? read_part<pwru_part_dump>(record, parts, PWRU_PART_DUMP).dump_id : 0;
  const pwru_part_cb cb =
      (parts & PWRU_PART_CB) ? read_part<pwru_part_cb>(record, parts, PWRU_PART_CB) : pwru_part_cb{};
  std::memcpy(event.cb, cb.cb, sizeof(event.cb));
  event.tunnel_tuple =
      (parts & PWRU_PART_TUNNEL) ? read_part<pwru_part_tunnel>(record, parts, PWRU_PART_TUNNEL).tuple : pwru_tuple{};
  event.ident =
      (parts & PWRU_PART_IDENT) ? read_part<pwru_part_ident>(record, parts, PWRU_PART_IDENT) : pwru_part_ident{};
  event.capture_from = PWRU_CAPTURE_NONE;
  event.pad2 = 0;
  event.capture_len = 0;
  out.packet = {};
  out.packet_len = 0;
  if (parts & PWRU_PART_CAPTURE) {
    std::uint32_t packet_len;
    std::uint16_t capture_len;
    std::uint8_t capture_from;
    const std::uint8_t* header = record.data() + capture_at;
    std::memcpy(&packet_len, header + offsetof(pwru_part_capture, packet_len), sizeof(packet_len));
    std::memcpy(&capture_len, header + offsetof(pwru_part_capture, capture_len), sizeof(capture_len));
    std::memcpy(&capture_from, header + offsetof(pwru_part_capture, capture_from), sizeof(capture_from));
    const std::size_t room = record.size() - capture_at - kCaptureHeader;
    if (capture_from > PWRU_CAPTURE_L2 || capture_len > room || capture_len > PWRU_CAPTURE_MAX) return false;
    if (capture_from == PWRU_CAPTURE_NONE && capture_len != 0) return false;
    event.capture_from = capture_from;
    event.capture_len = capture_len;
    out.packet = record.subspan(capture_at + kCaptureHeader, capture_len);
    out.packet_len = packet_len;
  }
  return true;
}

}  // namespace pwru
