// The ring record decoder: records as the BPF side lays them out (core, then
// the parts named in core.parts, in bit order), and records it must refuse.
#include "events/event_record.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace pwru {
namespace {

pwru_event_core core_with(std::uint8_t parts) {
  pwru_event_core core{};
  core.skb_addr = 0xffff888012345678;
  core.netns = 4026531840;
  core.hook_id = 7;
  core.len = 84;
  core.tuple.l4_proto = 17;
  core.parts = parts;
  return core;
}

template <typename T>
void put(std::vector<std::uint8_t>& record, std::uint32_t offset, const T& value) {
  ASSERT_LE(offset + sizeof(value), record.size());
  std::memcpy(record.data() + offset, &value, sizeof(value));
}

// A record with `parts`, each part filled with recognisable values; a
// capture part carries `capture_len` packet bytes in a full-size data area.
std::vector<std::uint8_t> record_with(std::uint8_t parts, std::uint16_t capture_len = 0) {
  std::vector<std::uint8_t> record(pwru_record_size(parts), 0xEE);
  put(record, 0, core_with(parts));
  if (parts & PWRU_PART_STACK) put(record, pwru_part_offset(parts, PWRU_PART_STACK), pwru_part_stack{42});
  if (parts & PWRU_PART_DUMP) put(record, pwru_part_offset(parts, PWRU_PART_DUMP), pwru_part_dump{0x100000007});
  if (parts & PWRU_PART_CB) put(record, pwru_part_offset(parts, PWRU_PART_CB), pwru_part_cb{{1, 2, 3, 4, 5}, 0});
  if (parts & PWRU_PART_TUNNEL) {
    pwru_part_tunnel tunnel{};
    tunnel.tuple.l3_proto = PWRU_ETH_P_IPV6;
    tunnel.tuple.dport = 4789;
    put(record, pwru_part_offset(parts, PWRU_PART_TUNNEL), tunnel);
  }
  if (parts & PWRU_PART_IDENT)
    put(record, pwru_part_offset(parts, PWRU_PART_IDENT),
        pwru_part_ident{0xa0000001, 0xb0000002, 0xcdef0, 0x4242, 1448});
  if (parts & PWRU_PART_CAPTURE) {
    const std::uint32_t at = pwru_part_offset(parts, PWRU_PART_CAPTURE);
    put(record, at + offsetof(pwru_part_capture, packet_len), std::uint32_t{1500});
    put(record, at + offsetof(pwru_part_capture, capture_len), capture_len);
    put(record, at + offsetof(pwru_part_capture, capture_from), std::uint8_t{PWRU_CAPTURE_L3});
    for (std::uint16_t i = 0; i < capture_len; ++i) record[at + offsetof(pwru_part_capture, data) + i] = i & 0xff;
  }
  return record;
}

bool decode(const std::vector<std::uint8_t>& record, DecodedEvent& out) {
  return decode_event_record({record.data(), record.size()}, out);
}

TEST(EventRecord, PlainTraceRecordIsTheCoreAlone) {
  EXPECT_EQ(pwru_record_size(0), sizeof(pwru_event_core));
  DecodedEvent out;
  ASSERT_TRUE(decode(record_with(0), out));
  EXPECT_EQ(out.event.skb_addr, 0xffff888012345678u);
  EXPECT_EQ(out.event.netns, 4026531840u);
  EXPECT_EQ(out.event.hook_id, 7);
  EXPECT_EQ(out.event.len, 84u);
  EXPECT_EQ(out.event.tuple.l4_proto, 17);
  // absent parts read as "not captured"
  EXPECT_EQ(out.event.stack_id, -1);
  EXPECT_EQ(out.event.dump_id, 0u);
  EXPECT_EQ(out.event.cb[0], 0u);
  EXPECT_EQ(out.event.cb[4], 0u);
  EXPECT_EQ(out.event.tunnel_tuple.l3_proto, 0);
  EXPECT_EQ(out.event.ident.seq, 0u);
  EXPECT_EQ(out.event.ident.ip_id, 0);
  EXPECT_EQ(out.event.capture_from, PWRU_CAPTURE_NONE);
  EXPECT_TRUE(out.packet.empty());
  EXPECT_EQ(out.packet_len, 0u);
}

// Every combination of parts: each present part is read from its place,
// each absent one keeps its "absent" value.
TEST(EventRecord, EachPartIsReadWhenPresentAndAbsentOtherwise) {
  for (std::uint8_t parts = 0; parts <= PWRU_PARTS_KNOWN; ++parts) {
    SCOPED_TRACE(testing::Message() << "parts=0x" << std::hex << int(parts));
    DecodedEvent out;
    ASSERT_TRUE(decode(record_with(parts, 60), out));
    EXPECT_EQ(out.event.skb_addr, 0xffff888012345678u);
    EXPECT_EQ(out.event.parts, parts);
    EXPECT_EQ(out.event.stack_id, (parts & PWRU_PART_STACK) ? 42 : -1);
    EXPECT_EQ(out.event.dump_id, (parts & PWRU_PART_DUMP) ? 0x100000007u : 0u);
    EXPECT_EQ(out.event.cb[0], (parts & PWRU_PART_CB) ? 1u : 0u);
    EXPECT_EQ(out.event.cb[4], (parts & PWRU_PART_CB) ? 5u : 0u);
    EXPECT_EQ(out.event.tunnel_tuple.l3_proto, (parts & PWRU_PART_TUNNEL) ? PWRU_ETH_P_IPV6 : 0);
    EXPECT_EQ(out.event.tunnel_tuple.dport, (parts & PWRU_PART_TUNNEL) ? 4789 : 0);
    const bool ident = parts & PWRU_PART_IDENT;
    EXPECT_EQ(out.event.ident.seq, ident ? 0xa0000001u : 0u);
    EXPECT_EQ(out.event.ident.ack, ident ? 0xb0000002u : 0u);
    EXPECT_EQ(out.event.ident.flow_label, ident ? 0xcdef0u : 0u);
    EXPECT_EQ(out.event.ident.ip_id, ident ? 0x4242 : 0);
    EXPECT_EQ(out.event.ident.l4_payload, ident ? 1448 : 0);
    if (parts & PWRU_PART_CAPTURE) {
      EXPECT_EQ(out.event.capture_from, PWRU_CAPTURE_L3);
      EXPECT_EQ(out.event.capture_len, 60);
      EXPECT_EQ(out.packet_len, 1500u);
      ASSERT_EQ(out.packet.size(), 60u);
      EXPECT_EQ(out.packet[0], 0);
      EXPECT_EQ(out.packet[59], 59);
    } else {
      EXPECT_EQ(out.event.capture_from, PWRU_CAPTURE_NONE);
      EXPECT_TRUE(out.packet.empty());
    }
  }
}

TEST(EventRecord, RecordSizesOfTypicalTraces) {
  EXPECT_EQ(pwru_record_size(0), 136u);
  EXPECT_EQ(pwru_record_size(PWRU_PART_STACK), 144u);
  EXPECT_EQ(pwru_record_size(PWRU_PART_TUNNEL), 176u);
  EXPECT_EQ(pwru_record_size(PWRU_PARTS_KNOWN & ~(PWRU_PART_CAPTURE | PWRU_PART_IDENT)), 216u);
  EXPECT_EQ(pwru_record_size(PWRU_PART_CAPTURE), 136u + 8u + PWRU_CAPTURE_MAX);
  // --summary: the identity after the core, and before the packet bytes.
  EXPECT_EQ(pwru_record_size(PWRU_PART_IDENT), 152u);
  EXPECT_EQ(pwru_record_size(PWRU_PART_TUNNEL | PWRU_PART_IDENT), 192u);
  EXPECT_EQ(pwru_part_offset(PWRU_PART_IDENT | PWRU_PART_CAPTURE, PWRU_PART_CAPTURE), 152u);
  EXPECT_EQ(pwru_part_offset(PWRU_PART_TUNNEL | PWRU_PART_IDENT, PWRU_PART_IDENT), 176u);
}

// A previous record's parts must not show through a later plain one.
TEST(EventRecord, ReusedOutputIsOverwritten) {
  DecodedEvent out;
  ASSERT_TRUE(decode(record_with(PWRU_PARTS_KNOWN, 20), out));
  ASSERT_TRUE(decode(record_with(0), out));
  EXPECT_EQ(out.event.stack_id, -1);
  EXPECT_EQ(out.event.dump_id, 0u);
  EXPECT_EQ(out.event.cb[2], 0u);
  EXPECT_EQ(out.event.tunnel_tuple.dport, 0);
  EXPECT_EQ(out.event.ident.seq, 0u);
  EXPECT_EQ(out.event.ident.l4_payload, 0);
  EXPECT_EQ(out.event.capture_from, PWRU_CAPTURE_NONE);
  EXPECT_TRUE(out.packet.empty());
  EXPECT_EQ(out.packet_len, 0u);
}

TEST(EventRecord, TruncatedRecordsAreRefused) {
  for (std::uint8_t parts : {0, PWRU_PART_STACK, PWRU_PART_CB | PWRU_PART_TUNNEL, PWRU_PARTS_KNOWN & ~PWRU_PART_CAPTURE,
                             int(PWRU_PART_IDENT), int(PWRU_PART_CAPTURE), int(PWRU_PARTS_KNOWN)}) {
    SCOPED_TRACE(testing::Message() << "parts=0x" << std::hex << int(parts));
    std::vector<std::uint8_t> record = record_with(parts);
    DecodedEvent out;
    ASSERT_TRUE(decode(record, out));
    // cut inside the last part (or the capture header), and inside the core
    const std::size_t fixed = (parts & PWRU_PART_CAPTURE)
                                  ? pwru_part_offset(parts, PWRU_PART_CAPTURE) + offsetof(pwru_part_capture, data)
                                  : record.size();
    record.resize(fixed - 1);
    EXPECT_FALSE(decode(record, out));
    record.resize(sizeof(pwru_event_core) - 1);
    EXPECT_FALSE(decode(record, out));
  }
  DecodedEvent out;
  EXPECT_FALSE(decode_event_record({}, out));
}

TEST(EventRecord, RecordsLongerThanTheirPartsAreRefused) {
  // Bytes the parts do not account for: the writer has another layout.
  std::vector<std::uint8_t> record = record_with(PWRU_PART_TUNNEL);
  record.resize(record.size() + 8, 0);
  DecodedEvent out;
  EXPECT_FALSE(decode(record, out));
  // The same bytes read as a record with the tunnel part missing.
  record = record_with(PWRU_PART_TUNNEL);
  record[offsetof(pwru_event_core, parts)] = 0;
  EXPECT_FALSE(decode(record, out));
}

TEST(EventRecord, UnknownPartsAreRefused) {
  std::vector<std::uint8_t> record = record_with(0);
  record[offsetof(pwru_event_core, parts)] = 1 << 6;
  DecodedEvent out;
  EXPECT_FALSE(decode(record, out));
}

TEST(EventRecord, CaptureThatOverrunsItsRecordIsRefused) {
  // data holds fewer bytes than capture_len says
  std::vector<std::uint8_t> record = record_with(PWRU_PART_CAPTURE, 100);
  const std::uint32_t at = pwru_part_offset(PWRU_PART_CAPTURE, PWRU_PART_CAPTURE);
  record.resize(at + offsetof(pwru_part_capture, data) + 99);
  DecodedEvent out;
  EXPECT_FALSE(decode(record, out));
  record.resize(at + offsetof(pwru_part_capture, data) + 100);
  EXPECT_TRUE(decode(record, out));
  EXPECT_EQ(out.packet.size(), 100u);
  // more than the capture area can ever hold
  record = record_with(PWRU_PART_CAPTURE);
  record.resize(record.size() + 16, 0);
  put(record, at + offsetof(pwru_part_capture, capture_len), std::uint16_t{PWRU_CAPTURE_MAX + 1});
  EXPECT_FALSE(decode(record, out));
}

TEST(EventRecord, CaptureWithAnUnknownOriginIsRefused) {
  std::vector<std::uint8_t> record = record_with(PWRU_PART_CAPTURE, 10);
  const std::uint32_t at = pwru_part_offset(PWRU_PART_CAPTURE, PWRU_PART_CAPTURE);
  put(record, at + offsetof(pwru_part_capture, capture_from), std::uint8_t{PWRU_CAPTURE_L2 + 1});
  DecodedEvent out;
  EXPECT_FALSE(decode(record, out));
  // no origin but packet bytes
  put(record, at + offsetof(pwru_part_capture, capture_from), std::uint8_t{PWRU_CAPTURE_NONE});
  EXPECT_FALSE(decode(record, out));
  put(record, at + offsetof(pwru_part_capture, capture_len), std::uint16_t{0});
  EXPECT_TRUE(decode(record, out));
  EXPECT_TRUE(out.packet.empty());
}

}  // namespace
}  // namespace pwru
