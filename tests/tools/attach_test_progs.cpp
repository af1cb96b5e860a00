// pwru-test-attach NETNS_PATH IFACE [MORE]: attaches a pass-everything tc
// (ingress) and XDP program (bpf/pwru_test_progs.bpf.c) to IFACE inside the
// netns, loads MORE further copies of them (loaded, not attached: pwru
// traces every loaded tc and XDP program), prints "attached" and keeps them
// until SIGTERM or SIGINT; then detaches. Gives --filter-trace-tc/-xdp
// something to trace in tests, and many programs in bench/vm_tc_start.sh.
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pwru_test_progs.skel.h"

namespace {
volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s NETNS_PATH IFACE [MORE]\n", argv[0]);
    return 2;
  }
  const long more = argc == 4 ? std::strtol(argv[3], nullptr, 10) : 0;
  if (more < 0 || more > 1000) {
    std::fprintf(stderr, "MORE must be 0 to 1000, not %s\n", argv[3]);
    return 2;
  }
  const int ns = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "entering %s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  const int ifindex = static_cast<int>(if_nametoindex(argv[2]));
  if (!ifindex) {
    std::fprintf(stderr, "no interface %s in %s\n", argv[2], argv[1]);
    return 1;
  }
  struct pwru_test_progs* skel = pwru_test_progs__open_and_load();
  if (!skel) {
    std::fprintf(stderr, "loading the test programs: %s\n", std::strerror(errno));
    return 1;
  }
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST) {
    std::fprintf(stderr, "clsact on %s: %s\n", argv[2], std::strerror(-err));
    return 1;
  }
  LIBBPF_OPTS(bpf_tc_opts, tc, .prog_fd = bpf_program__fd(skel->progs.pwru_test_tc));
  if ((err = bpf_tc_attach(&hook, &tc)) != 0) {
    std::fprintf(stderr, "tc attach on %s: %s\n", argv[2], std::strerror(-err));
    return 1;
  }
  if ((err = bpf_xdp_attach(ifindex, bpf_program__fd(skel->progs.pwru_test_xdp), 0, nullptr)) != 0) {
    std::fprintf(stderr, "xdp attach on %s: %s\n", argv[2], std::strerror(-err));
    return 1;
  }
  std::vector<struct pwru_test_progs*> copies;
  for (long i = 0; i < more; ++i) {
    struct pwru_test_progs* copy = pwru_test_progs__open_and_load();
    if (!copy) {
      std::fprintf(stderr, "loading copy %ld of the test programs: %s\n", i + 1, std::strerror(errno));
      return 1;
    }
    copies.push_back(copy);
  }
  // Blocked until sigsuspend, so a signal between the check and the wait
  // is not lost.
  sigset_t stop_signals, old;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, &old);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::printf("attached\n");
  std::fflush(stdout);
  while (!g_stop) sigsuspend(&old);
  bpf_xdp_detach(ifindex, 0, nullptr);
  hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  bpf_tc_hook_destroy(&hook);
  for (struct pwru_test_progs* copy : copies) pwru_test_progs__destroy(copy);
  pwru_test_progs__destroy(skel);
  return 0;
}
