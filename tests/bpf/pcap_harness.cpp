#include "pcap_harness.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstring>
#include <stdexcept>

#include "filter/pcap_injector.h"
#include "pwru_pcap_test.skel.h"

namespace pwru::testing {

PcapHarness::PcapHarness(std::shared_ptr<const CompiledPcap> filter) {
  register_pcap_sections();
  skel_ = pwru_pcap_test__open();
  if (!skel_) throw std::runtime_error("opening the pcap test object failed");
  if (filter) set_program_filter(skel_->progs.pwru_pcap_run, filter);
  const int err = pwru_pcap_test__load(skel_);
  const std::string why = program_filter_error(skel_->progs.pwru_pcap_run);
  clear_program_filter(skel_->progs.pwru_pcap_run);
  if (err) {
    pwru_pcap_test__destroy(skel_);
    throw std::runtime_error("loading the pcap test program failed (" + std::to_string(err) + ") " + why);
  }
}

PcapHarness::~PcapHarness() { pwru_pcap_test__destroy(skel_); }

Verdicts PcapHarness::run(const std::vector<std::uint8_t>& bytes) {
  if (bytes.size() > sizeof(skel_->bss->packet)) throw std::runtime_error("test packet too large");
  std::memset(skel_->bss->packet, 0, sizeof(skel_->bss->packet));
  std::memcpy(skel_->bss->packet, bytes.data(), bytes.size());
  skel_->bss->packet_len = static_cast<std::uint32_t>(bytes.size());
  skel_->bss->verdict_l2 = 0xdead;
  skel_->bss->verdict_l3 = 0xdead;
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  const int err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.pwru_pcap_run), &opts);
  if (err) throw std::runtime_error("BPF_PROG_TEST_RUN failed: " + std::string(std::strerror(-err)));
  if (skel_->bss->verdict_l2 == 0xdead) throw std::runtime_error("test program did not run the filter");
  return Verdicts{skel_->bss->verdict_l2 != 0, skel_->bss->verdict_l3 != 0};
}

}  // namespace pwru::testing
