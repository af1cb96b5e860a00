#include "output/pcap_file.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/error.h"
#include "pwru_abi.h"

namespace pwru {

namespace {

// linux/netfilter/nfnetlink_log.h: the attributes Wireshark and tcpdump decode.
constexpr std::uint16_t kNfulaMark = 2;
constexpr std::uint16_t kNfulaPayload = 9;
constexpr std::uint16_t kNfulaPrefix = 10;
// NFPROTO_* families, chosen from the skb's ethertype.
constexpr std::uint8_t kNfprotoUnspec = 0, kNfprotoIpv4 = 2, kNfprotoArp = 3, kNfprotoIpv6 = 10;
constexpr int kSnapLen = 65535;

std::uint8_t family_of(const pwru_event& e) {
  switch (ntohs(e.protocol)) {
    case PWRU_ETH_P_IP:
      return kNfprotoIpv4;
    case PWRU_ETH_P_IPV6:
      return kNfprotoIpv6;
    case PWRU_ETH_P_ARP:
      return kNfprotoArp;
    default:
      return kNfprotoUnspec;
  }
}

// TLV length and type are in the capturing host's byte order (libpcap's
// LINKTYPE_NFLOG); values are padded to 4 bytes.
void append_tlv(std::string& out, std::uint16_t type, const void* value, std::size_t len) {
  const auto total = static_cast<std::uint16_t>(4 + len);
  out.append(reinterpret_cast<const char*>(&total), 2);
  out.append(reinterpret_cast<const char*>(&type), 2);
  out.append(static_cast<const char*>(value), len);
  out.append((4 - len % 4) % 4, '\0');
}

std::int64_t ns_of(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

std::string nflog_record(const pwru_event& event, std::string_view hook, std::span<const std::uint8_t> packet) {
  std::string out;
  out.reserve(16 + hook.size() + packet.size());
  out += static_cast<char>(family_of(event));
  out += '\0';          // version 0
  out.append(2, '\0');  // resource id (network order), unused
  std::string prefix(hook);
  prefix += '\0';
  append_tlv(out, kNfulaPrefix, prefix.data(), prefix.size());
  if (event.mark) {
    const std::uint32_t mark = htonl(event.mark);
    append_tlv(out, kNfulaMark, &mark, sizeof(mark));
  }
  // The payload goes last, so the record's original length is its
  // captured length plus what the capture left out.
  if (!packet.empty() || event.capture_from == PWRU_CAPTURE_L3)
    append_tlv(out, kNfulaPayload, packet.data(), packet.size());
  return out;
}

PcapFile::PcapFile(const std::string& path) : path_(path) {
  // What pcap_dump_open would say, asked without creating the file.
  const bool exists = ::access(path.c_str(), F_OK) == 0;
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (exists ? ::access(path.c_str(), W_OK) != 0 : ::access(dir.c_str(), W_OK | X_OK) != 0)
    throw UsageError("--output-pcap " + path + ": cannot write it (" + std::strerror(errno) + ")");
  realtime_minus_monotonic_ns_ = ns_of(CLOCK_REALTIME) - ns_of(CLOCK_MONOTONIC);
}

void PcapFile::open() {
  if (dumper_) return;
  if (!dead_) dead_ = pcap_open_dead(DLT_NFLOG, kSnapLen);
  if (!dead_) throw UsageError("--output-pcap: libpcap could not set up an NFLOG capture");
  dumper_ = pcap_dump_open(dead_, path_.c_str());
  if (!dumper_) throw UsageError("--output-pcap " + path_ + ": cannot write it (" + pcap_geterr(dead_) + ")");
}

PcapFile::~PcapFile() {
  if (dumper_) pcap_dump_close(dumper_);
  if (dead_) pcap_close(dead_);
}

void PcapFile::write(const pwru_event& event, std::string_view hook, std::span<const std::uint8_t> packet,
                     std::uint32_t packet_len) {
  open();
  record_ = nflog_record(event, hook, packet);
  const std::int64_t wall = static_cast<std::int64_t>(event.ts_ns) + realtime_minus_monotonic_ns_;
  pcap_pkthdr header{};
  header.ts.tv_sec = wall / 1'000'000'000;
  header.ts.tv_usec = (wall % 1'000'000'000) / 1000;
  header.caplen = static_cast<bpf_u_int32>(record_.size());
  const std::uint32_t missing = packet_len > packet.size() ? packet_len - static_cast<std::uint32_t>(packet.size()) : 0;
  header.len = header.caplen + missing;
  if (missing) ++truncated_;
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &header, reinterpret_cast<const u_char*>(record_.data()));
  // pcap_dump says nothing: a full disk shows in the stream's error flag
  // (at the latest at the next flush), and ends the trace with that error
  // rather than a file that silently stops growing.
  if (std::ferror(pcap_dump_file(dumper_))) throw write_failure(errno);
  ++records_;
}

void PcapFile::flush() {
  if (dumper_ && pcap_dump_flush(dumper_) != 0) throw write_failure(errno);
}

SystemError PcapFile::write_failure(int err) const {
  return SystemError("writing --output-pcap " + path_ + " (" + std::to_string(records_) + " packets written)",
                     err ? err : EIO);
}

}  // namespace pwru
