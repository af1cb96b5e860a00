// --filter-track-bpf-helpers on the running kernel: the helper a loaded tc
// program calls is found in the kernel's translated instructions (no
// kprobes needed for this part, so it runs here too).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "btf/kernel_btf.h"
#include "common/error.h"
#include "output/sink.h"
#include "probe/backend_select.h"
#include "probe/bpf_helper_scan.h"
#include "pwru_test_progs.skel.h"
#include "session/trace_session.h"

namespace pwru {
namespace {

struct TestProgs {
  TestProgs() : skel(pwru_test_progs__open_and_load()) {}
  ~TestProgs() { pwru_test_progs__destroy(skel); }
  pwru_test_progs* skel;
};

TEST(BpfHelperScanRoot, FindsTheHelperALoadedTcProgramCalls) {
  const TestProgs progs;
  ASSERT_NE(progs.skel, nullptr) << "loading bpf/pwru_test_progs.bpf.c";
  const Ksyms ksyms = Ksyms::load();
  const std::optional<std::uint64_t> call_base = ksyms.address_of("__bpf_call_base");
  ASSERT_TRUE(call_base.has_value()) << "root sees kernel addresses";

  // The tc program calls bpf_skb_load_bytes and nothing else; the XDP
  // program calls nothing.
  EXPECT_EQ(called_kernel_functions(translated_instructions(bpf_program__fd(progs.skel->progs.pwru_test_tc)),
                                    *call_base, ksyms),
            std::vector<std::string>{"bpf_skb_load_bytes"});
  EXPECT_TRUE(called_kernel_functions(translated_instructions(bpf_program__fd(progs.skel->progs.pwru_test_xdp)),
                                      *call_base, ksyms)
                  .empty());

  const BpfHelperScan scan = scan_loaded_bpf_helpers();
  EXPECT_GE(scan.programs, 2u);
  EXPECT_TRUE(std::binary_search(scan.functions.begin(), scan.functions.end(), "bpf_skb_load_bytes"))
      << scan.functions.size() << " functions found";
  for (const std::string& fn : scan.functions) EXPECT_TRUE(ksyms.has_function(fn)) << fn;
}

class DiscardSink final : public LineSink {
 public:
  void write(std::string_view) override {}
  void flush() override {}
  bool closed() const override { return false; }
};

// Without kprobes (this CI kernel) the flag is refused with the kernel's
// reason before anything loads; with them, the helpers join the plan.
TEST(BpfHelperScanRoot, TraceSessionProbesHelpersOrSaysWhyNot) {
  const TestProgs progs;
  ASSERT_NE(progs.skel, nullptr);
  const KernelBtf btf = KernelBtf::load();
  TraceConfig config;
  config.track_bpf_helpers = true;
  config.filter.track_skb_by_stack = 1;
  config.filter_func = "^ip_rcv$";
  DiscardSink sink;
  const BackendChoice choice = choose_backend("auto");
  if (!choice.kprobe) {
    try {
      TraceSession session(btf, config, sink);
      FAIL() << "a session on backend " << choice.name << " accepted --filter-track-bpf-helpers";
    } catch (const SystemError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("--filter-track-bpf-helpers probes BPF helpers with kprobes, and this kernel accepts none"),
                std::string::npos)
          << what;
      EXPECT_NE(what.find(choice.reason), std::string::npos) << what;
      EXPECT_NE(what.find("CONFIG_KPROBES"), std::string::npos) << what;
    }
    return;
  }
  TraceSession session(btf, config, sink);
  EXPECT_NE(session.plan_summary().find("--filter-track-bpf-helpers: "), std::string::npos) << session.plan_summary();
}

}  // namespace
}  // namespace pwru
