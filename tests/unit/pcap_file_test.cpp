// --output-pcap's NFLOG records, and the file libpcap writes, read back
// with libpcap.
#include "output/pcap_file.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/error.h"

namespace pwru {
namespace {

struct Tlv {
  std::uint16_t type;
  std::string value;
};

std::vector<Tlv> tlvs(const std::string& record) {
  std::vector<Tlv> out;
  for (std::size_t at = 4; at + 4 <= record.size();) {
    std::uint16_t len, type;
    std::memcpy(&len, record.data() + at, 2);
    std::memcpy(&type, record.data() + at + 2, 2);
    out.push_back({type, record.substr(at + 4, len - 4)});
    at += (len + 3) & ~3u;
  }
  return out;
}

pwru_event ipv4_event() {
  pwru_event e{};
  e.protocol = htons(0x0800);
  e.capture_from = PWRU_CAPTURE_L3;
  e.ts_ns = 5'000'000'123;
  return e;
}

TEST(PcapFile, NflogRecordCarriesFamilyHookPrefixMarkAndPayload) {
  pwru_event e = ipv4_event();
  e.mark = 0xa00;
  const std::vector<std::uint8_t> packet = {0x45, 0, 0, 20, 1, 2, 3};
  const std::string r = nflog_record(e, "kfree_skb(SKB_DROP_REASON_NO_SOCKET)", packet);
  EXPECT_EQ(r[0], 2) << "NFPROTO_IPV4";
  EXPECT_EQ(r[1], 0) << "version";
  const auto t = tlvs(r);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].type, 10);
  EXPECT_EQ(t[0].value, std::string("kfree_skb(SKB_DROP_REASON_NO_SOCKET)") + '\0');
  EXPECT_EQ(t[1].type, 2);
  EXPECT_EQ(t[1].value, std::string("\0\0\x0a\0", 4)) << "the mark in network order";
  EXPECT_EQ(t[2].type, 9);
  EXPECT_EQ(t[2].value, std::string(packet.begin(), packet.end()));
  EXPECT_EQ(r.size() % 4, 0u);
}

TEST(PcapFile, FamilyFollowsTheEthertypeAndAHeaderlessSkbHasNoPayload) {
  pwru_event e = ipv4_event();
  e.protocol = htons(0x86DD);
  EXPECT_EQ(nflog_record(e, "x", {})[0], 10);
  e.protocol = htons(0x0806);
  EXPECT_EQ(nflog_record(e, "x", {})[0], 3);
  e.protocol = htons(0x88cc);
  e.capture_from = PWRU_CAPTURE_NONE;
  const std::string r = nflog_record(e, "net_dev_queue", {});
  EXPECT_EQ(r[0], 0);
  ASSERT_EQ(tlvs(r).size(), 1u) << "only the hook";
}

TEST(PcapFile, LibpcapReadsBackTimesAndTruncation) {
  char path[] = "/tmp/pwru-pcap-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    PcapFile file(path);
    const std::vector<std::uint8_t> packet(40, 0x45);
    file.write(ipv4_event(), "netif_receive_skb", packet, 40);
    file.write(ipv4_event(), "ip_rcv", packet, 1500);
    EXPECT_EQ(file.records(), 2u);
    EXPECT_EQ(file.truncated(), 1u);
  }
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path, err);
  ASSERT_NE(p, nullptr) << err;
  EXPECT_EQ(pcap_datalink(p), DLT_NFLOG);
  pcap_pkthdr* h;
  const u_char* data;
  ASSERT_EQ(pcap_next_ex(p, &h, &data), 1);
  EXPECT_EQ(h->caplen, h->len);
  const std::string first(reinterpret_cast<const char*>(data), h->caplen);
  EXPECT_EQ(tlvs(first)[0].value, std::string("netif_receive_skb") + '\0');
  EXPECT_GT(h->ts.tv_sec, 1'600'000'000) << "monotonic event times become wall-clock times";
  ASSERT_EQ(pcap_next_ex(p, &h, &data), 1);
  EXPECT_EQ(h->len, h->caplen + 1460) << "the part not captured counts in the original length";
  EXPECT_EQ(pcap_next_ex(p, &h, &data), PCAP_ERROR_BREAK);
  pcap_close(p);
  unlink(path);
}

TEST(PcapFile, AFullDiskEndsTheTraceWithItsErrorNotWithSilence) {
  // /dev/full takes the open and fails every write with ENOSPC.
  PcapFile file("/dev/full");
  const std::vector<std::uint8_t> packet(40, 0x45);
  try {
    for (int i = 0; i < 1000; ++i) file.write(ipv4_event(), "ip_rcv", packet, 40);
    file.flush();
    ADD_FAILURE() << "a thousand packets went into /dev/full without an error";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ENOSPC) << e.what();
    EXPECT_NE(std::string(e.what()).find("--output-pcap /dev/full"), std::string::npos) << e.what();
  }
}

TEST(PcapFile, AnExistingFileIsTruncatedOnlyWhenOpened) {
  char path[] = "/tmp/pwru-pcap-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "keep", 4), 4);
  close(fd);
  struct stat st {};
  {
    PcapFile file(path);  // pwru checked its flags; start-up may still fail
    ASSERT_EQ(stat(path, &st), 0);
    EXPECT_EQ(st.st_size, 4) << "a start that fails must leave the file as it was";
    file.open();  // attached
    file.flush();
    ASSERT_EQ(stat(path, &st), 0);
    EXPECT_EQ(st.st_size, 24) << "a pcap file header and no record";
  }
  unlink(path);
}

TEST(PcapFile, UnwritablePathSaysSo) {
  try {
    PcapFile file("/nonexistent-dir/x.pcap");
    FAIL() << "accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--output-pcap /nonexistent-dir/x.pcap: cannot write it"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace pwru
