// Runs a pcap filter, translated and injected exactly as in the tracing
// programs, over packets in a test buffer with BPF_PROG_TEST_RUN.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "filter/pcap_compiler.h"

struct pwru_pcap_test;

namespace pwru::testing {

struct Verdicts {
  bool l2 = false;
  bool l3 = false;
};

class PcapHarness {
 public:
  // Loads the test program with `filter` injected (null: stubs untouched).
  explicit PcapHarness(std::shared_ptr<const CompiledPcap> filter);
  ~PcapHarness();
  PcapHarness(const PcapHarness&) = delete;
  PcapHarness& operator=(const PcapHarness&) = delete;

  // The L2 stub sees `frame` whole; the L3 stub sees it too: callers pass
  // the frame for L2 and the bare packet for L3 in separate runs.
  Verdicts run(const std::vector<std::uint8_t>& bytes);

 private:
  struct pwru_pcap_test* skel_ = nullptr;
};

}  // namespace pwru::testing
