#include "enrich/event_namer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <sstream>

namespace pwru {
namespace {

TEST(EventNamer, DropReasonsFromTheKernelTable) {
  EventNamer namer({"consume_skb", "kfree_skb"},
                   {{2, "SKB_DROP_REASON_NOT_SPECIFIED"}, {3, "SKB_DROP_REASON_NO_SOCKET"}}, nullptr);
  pwru_event e{};
  e.hook_id = 0;
  EXPECT_EQ(namer.func(e), "consume_skb");
  e.hook_id = 1;
  e.has_drop_reason = 1;
  e.drop_reason = 3;
  EXPECT_EQ(namer.func(e), "kfree_skb(SKB_DROP_REASON_NO_SOCKET)");
  e.drop_reason = 999;
  EXPECT_EQ(namer.func(e), "kfree_skb (999)");
  e.hook_id = 7;
  EXPECT_EQ(namer.func(e), "?");
}

TEST(EventNamer, CallerSkipsTracingMachinery) {
  EXPECT_EQ(EventNamer::caller({"bpf_prog_abc_pwru_tp_00 [bpf]", "bpf_trace_run3", "__bpf_trace_kfree_skb",
                                "sk_skb_reason_drop", "udp_queue_rcv_one_skb"},
                               "kfree_skb"),
            "sk_skb_reason_drop");
  EXPECT_EQ(EventNamer::caller({"0xffffffffa0000000", "__traceiter_kfree_skb"}, "kfree_skb"), "");
  // A kprobe's stack starts in the probed function: its caller comes next.
  EXPECT_EQ(EventNamer::caller({"fprobe_handler", "ip_rcv", "__netif_receive_skb_one_core"}, "ip_rcv"),
            "__netif_receive_skb_one_core");
}

TEST(EventNamer, StackStartsAtTheFunctionThatHitTheHook) {
  std::istringstream kallsyms(
      "ffffffff81000000 t bpf_trace_run1\n"
      "ffffffff81001000 t __dev_queue_xmit\n"
      "ffffffff81002000 t bpf_fake_but_deeper\n"
      "ffffffffa0000000 t bpf_prog_0123_pwru_tp_05\t[bpf]\n");
  const Ksyms ksyms = Ksyms::parse(kallsyms);
  EventNamer namer({}, {}, &ksyms);
  const auto stack =
      namer.stack_names({0xffffffffa0000010, 0xffffffff81000010, 0xffffffff81001010, 0xffffffff81002010});
  ASSERT_EQ(stack.size(), 2u);
  EXPECT_EQ(stack[0], "__dev_queue_xmit");
  // Only leading machinery goes: deeper frames stay whatever their names.
  EXPECT_EQ(stack[1], "bpf_fake_but_deeper");
}

TEST(EventNamer, DropsPrintUnderTheDropFunctionAsPwru) {
  EventNamer namer({"consume_skb", "kfree_skb", "ip_rcv"}, {{3, "SKB_DROP_REASON_NO_SOCKET"}}, nullptr);
  namer.print_drops_as(1, "kfree_skb_reason");
  pwru_event e{};
  e.hook_id = 1;
  e.has_drop_reason = 1;
  e.drop_reason = 3;
  EXPECT_EQ(namer.func(e), "kfree_skb_reason(SKB_DROP_REASON_NO_SOCKET)");
  EXPECT_EQ(namer.printed_hook(e), "kfree_skb_reason");
  EXPECT_EQ(namer.hook_name(e), "kfree_skb") << "the hook itself keeps its name (journeys, metrics)";
  EXPECT_EQ(namer.reason_name(e), "SKB_DROP_REASON_NO_SOCKET");
  e.drop_reason = 999;
  EXPECT_EQ(namer.func(e), "kfree_skb_reason (999)") << "pwru's form for a reason the BTF does not name";
  // 6.11+: the same drop as pwru's kprobe on sk_skb_reason_drop prints it.
  namer.print_drops_as(1, "sk_skb_reason_drop");
  e.drop_reason = 3;
  EXPECT_EQ(namer.func(e), "sk_skb_reason_drop(SKB_DROP_REASON_NO_SOCKET)");
  // Other hooks are untouched.
  e.hook_id = 2;
  e.has_drop_reason = 0;
  EXPECT_EQ(namer.func(e), "ip_rcv");
  EXPECT_EQ(namer.printed_hook(e), "ip_rcv");
  // So is the caller: the frame of the drop function is the hook's own.
  EXPECT_EQ(EventNamer::caller({"__traceiter_kfree_skb", "sk_skb_reason_drop", "__udp4_lib_rcv"}, "sk_skb_reason_drop"),
            "__udp4_lib_rcv");
}

// A /proc of our own making: pwru reads PROCESS from /proc/PID/exe.
class FakeProc {
 public:
  FakeProc() {
    char tmpl[] = "/tmp/program_namer_XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  ~FakeProc() { std::filesystem::remove_all(root_); }
  void process(std::uint32_t pid, const char* exe) {
    const std::filesystem::path dir = std::filesystem::path(root_) / std::to_string(pid);
    std::filesystem::create_directories(dir);
    std::filesystem::remove(dir / "exe");
    if (exe) std::filesystem::create_symlink(exe, dir / "exe");
  }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

pwru_event event_of(std::uint32_t pid, const char* comm) {
  pwru_event e{};
  e.pid = pid;
  std::strncpy(e.comm, comm, sizeof(e.comm));
  return e;
}

TEST(ProgramNamer, ExecutablePathElseComm) {
  FakeProc proc;
  proc.process(4242, "/usr/bin/ping");
  proc.process(77, "/opt/app/server (deleted)");
  proc.process(15, nullptr);  // a kernel thread: no exe link to read
  ProgramNamer namer(proc.root());
  EXPECT_EQ(namer.program(event_of(4242, "ping")), "/usr/bin/ping");
  EXPECT_EQ(namer.program(event_of(77, "server")), "server");
  EXPECT_EQ(namer.program(event_of(15, "ksoftirqd/0")), "ksoftirqd/0");
  // pwru prints "<empty>" for these two; the recorded comm says more.
  EXPECT_EQ(namer.program(event_of(9, "gone")), "gone");
  EXPECT_EQ(namer.program(event_of(0, "swapper/1")), "swapper/1");
}

TEST(ProgramNamer, LooksAgainWhenTheCommChanges) {
  FakeProc proc;
  proc.process(300, "/usr/bin/bash");
  ProgramNamer namer(proc.root());
  EXPECT_EQ(namer.program(event_of(300, "bash")), "/usr/bin/bash");
  proc.process(300, "/usr/bin/curl");  // exec
  EXPECT_EQ(namer.program(event_of(300, "bash")), "/usr/bin/bash") << "cached while the comm stays";
  EXPECT_EQ(namer.program(event_of(300, "curl")), "/usr/bin/curl");
}

}  // namespace
}  // namespace pwru
