// pcap filter expressions compiled by libpcap itself, so they mean exactly
// what tcpdump means by the same words.
#pragma once

#include <optional>
#include <string>

#include "filter/cbpf.h"

namespace pwru {

struct CompiledPcap {
  std::string expression;
  // For skbs whose MAC header is set (Ethernet framing, DLT_EN10MB).
  CbpfProgram l2;
  // For skbs that only have a network header (DLT_RAW). An expression that
  // has no meaning without a link layer (ether, arp, vlan) compiles to a
  // program that rejects everything.
  CbpfProgram l3;
  bool l3_rejects_all = false;
};

// Throws UsageError carrying libpcap's message when the L2 form does not
// compile. An empty expression compiles to programs that accept everything.
CompiledPcap compile_pcap(const std::string& expression);

// One form only, as libpcap builds it; nullopt and the message on failure.
std::optional<CbpfProgram> compile_pcap_for(const std::string& expression, int dlt, std::string* error);

}  // namespace pwru
