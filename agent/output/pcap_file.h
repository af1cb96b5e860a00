// --output-pcap: the packets of matched events as a pcap file, written with
// libpcap's dumper, so tcpdump and Wireshark open the trace. The link type
// is NFLOG (239): each record carries, next to the packet from its network
// header, a prefix naming the hook that saw it ("netif_receive_skb",
// "sk_skb_reason_drop(SKB_DROP_REASON_NO_SOCKET)"), which Wireshark shows and filters
// on (nflog.prefix) and which keeps the hook of every packet findable.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/error.h"
#include "pwru_abi.h"

typedef struct pcap pcap_t;
typedef struct pcap_dumper pcap_dumper_t;

namespace pwru {

class PcapFile {
 public:
  // Checks that `path` can be written (UsageError saying why not) but
  // creates nothing: open() does, once the trace is attached, so a start
  // that fails leaves an existing file as it was (as --output-file).
  explicit PcapFile(const std::string& path);
  ~PcapFile();
  PcapFile(const PcapFile&) = delete;
  PcapFile& operator=(const PcapFile&) = delete;

  // One record: the event's packet bytes (maybe fewer than packet_len, or
  // none when the skb had no header to start from) under the hook's name.
  // Creates or truncates the file; later calls do nothing. Throws
  // UsageError saying why it cannot.
  void open();
  // Opens the file first if open() was not called.
  void write(const pwru_event& event, std::string_view hook, std::span<const std::uint8_t> packet,
             std::uint32_t packet_len);
  // Both throw SystemError (with the errno) once the file cannot take more:
  // a full disk ends the trace instead of losing packets without a word.
  void flush();
  std::uint64_t records() const { return records_; }
  std::uint64_t truncated() const { return truncated_; }  // records holding less than the whole packet

 private:
  SystemError write_failure(int err) const;
  pcap_t* dead_ = nullptr;
  pcap_dumper_t* dumper_ = nullptr;
  std::string path_;
  std::int64_t realtime_minus_monotonic_ns_ = 0;  // event times are CLOCK_MONOTONIC
  std::uint64_t records_ = 0;
  std::uint64_t truncated_ = 0;
  std::string record_;
};

// The NFLOG record (header and TLVs) for one packet, exposed for tests.
std::string nflog_record(const pwru_event& event, std::string_view hook, std::span<const std::uint8_t> packet);

}  // namespace pwru
