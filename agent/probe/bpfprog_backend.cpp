#include "probe/bpfprog_backend.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>

#include "bpfobj/libbpf_quiet.h"
#include "common/error.h"

namespace pwru {

namespace {

struct TracedProg {
  int fd = -1;
  TracedProgKind kind;
  std::string entry;  // the function the program starts in, from its BTF
  std::string name;   // as pwru prints it
};

// The first function of the program's BTF func info is its entry point.
std::string entry_function(int fd, const bpf_prog_info& info) {
  if (!info.btf_id || !info.nr_func_info) return {};
  std::vector<bpf_func_info> funcs(info.nr_func_info);
  bpf_prog_info more{};
  more.nr_func_info = info.nr_func_info;
  more.func_info_rec_size = sizeof(bpf_func_info);
  more.func_info = reinterpret_cast<std::uint64_t>(funcs.data());
  std::uint32_t len = sizeof(more);
  if (bpf_obj_get_info_by_fd(fd, &more, &len) != 0) return {};
  struct btf* btf = btf__load_from_kernel_by_id(info.btf_id);
  if (!btf) return {};
  const struct btf_type* t = btf__type_by_id(btf, funcs[0].type_id);
  std::string name = t ? btf__name_by_offset(btf, t->name_off) : "";
  btf__free(btf);
  return name;
}

std::vector<TracedProg> find_programs(bool tc, bool xdp, std::vector<std::string>& skipped) {
  std::vector<TracedProg> out;
  std::uint32_t id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;  // gone meanwhile
    bpf_prog_info info{};
    std::uint32_t len = sizeof(info);
    const bool wanted = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
                        ((tc && info.type == BPF_PROG_TYPE_SCHED_CLS) || (xdp && info.type == BPF_PROG_TYPE_XDP));
    if (!wanted) {
      close(fd);
      continue;
    }
    TracedProg p;
    p.fd = fd;
    p.kind = info.type == BPF_PROG_TYPE_XDP ? TracedProgKind::kXdp : TracedProgKind::kTc;
    p.entry = entry_function(fd, info);
    char tag[2 * BPF_TAG_SIZE + 1] = {};
    for (int i = 0; i < BPF_TAG_SIZE; ++i) std::snprintf(tag + 2 * i, 3, "%02x", info.tag[i]);
    const std::string fn = p.entry.empty() ? std::string(info.name) : p.entry;
    p.name = "bpf_prog_" + std::string(tag) + "_" + fn + (p.kind == TracedProgKind::kXdp ? "(xdp)" : "(tc)");
    if (p.entry.empty()) {
      skipped.push_back(p.name + ": the program has no BTF, so its entry function cannot be named");
      close(fd);
      continue;
    }
    out.push_back(std::move(p));
  }
  return out;
}

// The kernel's verifier runs on the loading thread: one per core.
// PWRU_PROG_LOAD_THREADS=1 loads one after another (bench/vm_tc_start.sh
// compares the two in one run).
unsigned load_threads() {
  if (const char* forced = std::getenv("PWRU_PROG_LOAD_THREADS")) {
    const long n = std::strtol(forced, nullptr, 10);
    if (n >= 1 && n <= 64) return static_cast<unsigned>(n);
  }
  return std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
}

}  // namespace

BpfProgBackend::BpfProgBackend(bool trace_tc, bool trace_xdp, std::uint16_t first_hook_id,
                               const pwru_filter_cfg& filter, std::shared_ptr<const CompiledPcap> pcap,
                               const SharedMaps& maps) {
  // A refusal is an answer, reported once below, not a libbpf warning per program.
  QuietLibbpf quiet;
  std::vector<TracedProg> progs = find_programs(trace_tc, trace_xdp, skipped_);
  for (TracedProg& p : progs) target_fds_.push_back(p.fd);
  // Each tracer is a verifier run of its own (an fentry program names its
  // target at load): on a node with a hundred tc programs, loading them one
  // after another is most of pwru's start-up.
  std::vector<std::unique_ptr<BpfProgObject>> loaded(progs.size());
  std::vector<std::exception_ptr> failed(progs.size());
  std::atomic<std::size_t> next{0};
  const auto load_some = [&] {
    QuietLibbpf quiet_loader;  // per thread: the loaders are quiet too
    for (std::size_t i; (i = next++) < progs.size();) {
      const TracedProg& p = progs[i];
      try {
        const auto hook_id = static_cast<std::uint16_t>(first_hook_id + i);
        loaded[i] = std::make_unique<BpfProgObject>(p.kind, p.fd, p.entry, hook_id, filter, pcap, maps);
      } catch (...) {
        failed[i] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> loaders;
  for (unsigned t = 1; t < std::min<std::size_t>(load_threads(), progs.size()); ++t) {
    try {
      loaders.emplace_back(load_some);
    } catch (const std::system_error&) {
      break;  // no more threads: this one and those started load the rest
    }
  }
  load_some();
  for (std::thread& t : loaders) t.join();
  // Hook ids are the programs' positions, so a skipped one leaves a gap
  // rather than renumbering the rest.
  for (std::size_t i = 0; i < progs.size(); ++i) {
    if (loaded[i]) {
      tracers_.push_back(std::move(loaded[i]));
      hooks_.push_back(Hook{static_cast<std::uint16_t>(first_hook_id + i), progs[i].name, false});
      continue;
    }
    try {
      std::rethrow_exception(failed[i]);
    } catch (const UsageError&) {
      throw;  // the pcap filter, not the program: the user must change it
    } catch (const std::exception& e) {
      skipped_.push_back(progs[i].name + ": " + e.what());
    }
  }
  if (hooks_.empty() && !skipped_.empty())
    throw UsageError("--filter-trace-tc/--filter-trace-xdp: no program could be traced (" + skipped_.front() +
                     "); this kernel may refuse fentry on BPF programs");
}

BpfProgBackend::~BpfProgBackend() {
  detach();
  tracers_.clear();
  for (int fd : target_fds_) close(fd);
}

AttachReport BpfProgBackend::attach() {
  AttachReport report;
  report.skipped = skipped_;
  if (tracers_.empty() && skipped_.empty())
    report.skipped.push_back("--filter-trace-tc/--filter-trace-xdp: no such program is loaded on this node");
  for (std::size_t i = 0; i < tracers_.size(); ++i) {
    if (tracers_[i]->attach())
      ++report.attached;
    else
      report.skipped.push_back(hooks_[i].name + ": " + std::strerror(errno));
  }
  return report;
}

void BpfProgBackend::detach() noexcept {
  for (auto& t : tracers_) t->detach();
}

}  // namespace pwru
