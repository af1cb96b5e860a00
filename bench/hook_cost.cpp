// Benchmark helper for bench/agent_hooks.sh: the BPF run-time statistics of
// a process's attached tracepoint programs, and the floor to compare them
// with (an empty program on the same tracepoints).
//
// Usage (root):
//   hook_cost stats PID       one line per raw tracepoint link PID holds:
//                             "TP_NAME RUN_CNT RUN_TIME_NS" (bpf_prog_info;
//                             kernel.bpf_stats_enabled=1 to have them count)
//   hook_cost empty SECONDS TP_NAME...
//                             attaches a program that returns 0 at once
//                             (tp_btf, named pwru_empty) to each tracepoint,
//                             prints "ready" and holds them until
//                             SIGTERM, or SECONDS have passed.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "hook_cost: %s\n", what.c_str());
  std::exit(1);
}

// The value of "key:\t<n>" in an fdinfo file, or -1.
long long fdinfo_value(const std::string& path, const std::string& key, std::string* text = nullptr) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size() + 1, key + ":") != 0) continue;
    std::string value = line.substr(key.size() + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    if (text) *text = value;
    return std::strtoll(value.c_str(), nullptr, 10);
  }
  return -1;
}

int stats(const char* pid) {
  const std::string dir = std::string("/proc/") + pid + "/fdinfo";
  DIR* d = opendir(dir.c_str());
  if (!d) fail("cannot read " + dir + ": " + std::strerror(errno));
  std::vector<long long> link_ids;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string type;
    const std::string path = dir + "/" + e->d_name;
    if (fdinfo_value(path, "link_type", &type) == -1 || type != "raw_tracepoint") continue;
    const long long id = fdinfo_value(path, "link_id");
    if (id > 0) link_ids.push_back(id);
  }
  closedir(d);
  if (link_ids.empty()) fail(std::string("process ") + pid + " holds no raw tracepoint link");
  for (long long id : link_ids) {
    const int link_fd = bpf_link_get_fd_by_id(static_cast<__u32>(id));
    if (link_fd < 0) continue;  // detached meanwhile
    char tp_name[128] = {};
    bpf_link_info link = {};
    link.raw_tracepoint.tp_name = reinterpret_cast<__u64>(tp_name);
    link.raw_tracepoint.tp_name_len = sizeof(tp_name);
    __u32 len = sizeof(link);
    if (bpf_obj_get_info_by_fd(link_fd, &link, &len) != 0) fail("link info: " + std::string(std::strerror(errno)));
    close(link_fd);
    const int prog_fd = bpf_prog_get_fd_by_id(link.prog_id);
    if (prog_fd < 0) continue;
    bpf_prog_info prog = {};
    len = sizeof(prog);
    if (bpf_obj_get_info_by_fd(prog_fd, &prog, &len) != 0) fail("prog info: " + std::string(std::strerror(errno)));
    close(prog_fd);
    std::printf("%s %llu %llu\n", tp_name, static_cast<unsigned long long>(prog.run_cnt),
                static_cast<unsigned long long>(prog.run_time_ns));
  }
  return 0;
}

int empty(int seconds, char** names, int count) {
  libbpf_set_print(nullptr);
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) fail("cannot read the kernel's BTF");
  // r0 = 0; exit
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  std::vector<int> fds;
  for (int i = 0; i < count; ++i) {
    const std::string typedef_name = std::string("btf_trace_") + names[i];
    const int btf_id = btf__find_by_name_kind(vmlinux, typedef_name.c_str(), BTF_KIND_TYPEDEF);
    if (btf_id <= 0) fail(std::string("no tracepoint ") + names[i] + " in the kernel's BTF");
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_RAW_TP,
                .attach_btf_id = static_cast<__u32>(btf_id));
    const int prog = bpf_prog_load(BPF_PROG_TYPE_TRACING, "pwru_empty", "GPL", insns, 2, &opts);
    if (prog < 0) fail(std::string("load for ") + names[i] + ": " + std::strerror(errno));
    const int link = bpf_raw_tracepoint_open(nullptr, prog);
    if (link < 0) fail(std::string("attach to ") + names[i] + ": " + std::strerror(errno));
    fds.push_back(prog);
    fds.push_back(link);
  }
  btf__free(vmlinux);
  std::printf("ready\n");
  std::fflush(stdout);
  // SIGTERM ends it (the kernel detaches what a dead process held); the
  // time limit makes sure nothing is left behind if the script was killed.
  sleep(static_cast<unsigned>(seconds));
  for (int fd : fds) close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "stats") == 0) return stats(argv[2]);
  if (argc >= 4 && std::strcmp(argv[1], "empty") == 0) {
    const int seconds = std::atoi(argv[2]);
    if (seconds <= 0 || seconds > 3600) fail("SECONDS must be 1..3600");
    return empty(seconds, argv + 3, argc - 3);
  }
  std::fprintf(stderr, "usage: hook_cost stats PID | hook_cost empty SECONDS TP_NAME...\n");
  return 2;
}
