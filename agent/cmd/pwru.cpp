// pwru: the command-line skb tracer. Parses flags, resolves what the user
// named, and runs one TraceSession until Ctrl-C, SIGTERM or the line limit.
#include <bpf/libbpf.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

#include "bpfobj/libbpf_quiet.h"
#include "btf/kernel_btf.h"
#include "cli/deferred_file_sink.h"
#include "cli/pwru_options.h"
#include "common/error.h"
#include "netns/netns.h"
#include "output/pcap_file.h"
#include "session/startup_phases.h"
#include "session/trace_session.h"

namespace {

std::atomic<bool> g_stop{false};
bool g_debug = false;

extern "C" void on_signal(int) { g_stop.store(true); }

// The library's warnings (spdlog's default logger writes to stdout) go to
// stderr like every other message of pwru: stdout is the trace.
void log_to_stderr(bool debug) {
  auto logger = std::make_shared<spdlog::logger>("", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("pwru: %l: %v");
  logger->set_level(debug ? spdlog::level::debug : spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

extern "C" int libbpf_log(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG && !g_debug) return 0;
  std::fputs("libbpf: ", stderr);
  return std::vfprintf(stderr, fmt, args);
}

// Every kprobe link holds a perf event fd: ~1.5k of them overflow the usual
// soft limit of 1024 open files. Raise the soft limit to the hard one, and
// the hard one too where we may (CAP_SYS_RESOURCE).
void raise_open_file_limit() {
  constexpr rlim_t kWanted = 1 << 16;
  struct rlimit lim {};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  struct rlimit raised = lim;
  raised.rlim_max = std::max<rlim_t>(lim.rlim_max, kWanted);
  raised.rlim_cur = raised.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return;
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a signal must interrupt the ring poll
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A closed stdout (`pwru | head`) ends the trace through EPIPE, with the
  // usual detach and summary, instead of killing the process mid-write.
  signal(SIGPIPE, SIG_IGN);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// pwru shows a bar while it attaches; ours redraws one line of stderr.
void print_progress(std::size_t done, std::size_t total) {
  constexpr int kWidth = 40;
  const int filled = total ? static_cast<int>(kWidth * done / total) : kWidth;
  std::fprintf(stderr, "\rpwru: attaching [%.*s%*s] %zu/%zu", filled, "########################################",
               kWidth - filled, "", done, total);
  std::fflush(stderr);
}

pwru_filter_cfg resolve_filters(const pwru::PwruOptions& o) {
  pwru_filter_cfg f{};
  pwru::NetnsRef ns;
  if (!o.filter_netns.empty()) {
    ns = pwru::resolve_netns(o.filter_netns);
    f.netns = ns.inode;
  }
  if (!o.filter_ifname.empty()) {
    // An ifindex only means something inside one netns, so the ifname
    // filter also pins the netns it was looked up in.
    if (o.filter_netns.empty()) ns = pwru::current_netns();
    if (ns.path.empty())
      throw pwru::UsageError("--filter-ifname: found no process or /var/run/netns entry in netns " + o.filter_netns +
                             "; name the netns by path instead");
    f.ifindex = pwru::ifindex_in_netns(ns.path, o.filter_ifname);
    f.netns = ns.inode;
  }
  f.mark = o.filter_mark.mark;
  f.mark_mask = o.filter_mark.mask;
  return f;
}

// --summary, after the events: a block per skb, or one JSON line each.
void write_summary(const pwru::TraceSession& session, bool json, pwru::LineSink& sink) {
  const pwru::JourneyTracker* tracker = session.journeys();
  if (!tracker) return;
  const pwru::JourneyCounts counts = tracker->counts();
  const std::string note = pwru::budget_note(counts, tracker->budget());
  // One skb at a time: the summary of a long trace is not built twice in memory.
  if (!json) sink.write(pwru::journeys_text_header(counts, note));
  tracker->for_each([&](const pwru::Journey& j) {
    sink.write(json ? nlohmann::json{{"journey", pwru::journey_json(j)}}.dump(
                          -1, ' ', false, nlohmann::json::error_handler_t::replace) +
                          "\n"
                    : pwru::journey_text(j));
  });
  if (json && (counts.not_followed || !note.empty())) {
    nlohmann::json tail = {{"journeys_not_followed", counts.not_followed}};
    if (!note.empty()) tail["journeys_note"] = note;
    sink.write(tail.dump() + "\n");
  }
  sink.flush();
}

int run(const pwru::PwruOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const pwru_filter_cfg filter = resolve_filters(o);
  pwru::DeferredFileSink sink(o.output_file);
  pwru::StartupPhases startup;
  const pwru::KernelBtf btf = startup.time("btf", [&] { return pwru::KernelBtf::load(o.kernel_btf); });

  pwru::TraceConfig config;
  config.filter = filter;
  config.output = o.output;
  config.limit = o.output_limit_lines;
  config.ring_bytes = o.ring_buffer_bytes;
  config.backend = o.backend;
  config.filter_func = o.filter_func;
  config.kmods = o.kmods;
  config.all_kmods = o.all_kmods;
  config.kprobe_batch = o.filter_kprobe_batch;
  config.non_skb_funcs = o.filter_non_skb_funcs;
  config.track_bpf_helpers = o.filter_track_bpf_helpers;
  config.filter.track_skb_by_stack = o.filter_track_skb_by_stackid ? 1 : 0;
  config.filter.track_skb = o.filter_track_skb ? 1 : 0;
  config.pcap = o.pcap;
  config.summary = o.summary;
  config.trace_tc = o.filter_trace_tc;
  config.trace_xdp = o.filter_trace_xdp;
  if (!o.output_pcap.empty()) config.pcap_file = std::make_shared<pwru::PcapFile>(o.output_pcap);
  config.drop_hints = o.drop_hints;
  pwru::TraceSession session(btf, config, sink);

  std::fprintf(stderr, "pwru: backend %s: %s\n", session.backend_name().c_str(), session.backend_reason().c_str());
  if (!session.plan_summary().empty()) std::fprintf(stderr, "pwru: kprobes on %s\n", session.plan_summary().c_str());
  std::fprintf(stderr, "pwru: attaching %zu hooks...\n", session.hook_count());
  const bool terminal = isatty(STDERR_FILENO);
  const auto attach_start = std::chrono::steady_clock::now();
  const pwru::AttachReport report = session.attach([] { return g_stop.load(); },
                                                   [terminal](std::size_t done, std::size_t total) {
                                                     if (terminal) print_progress(done, total);
                                                   });
  if (terminal) std::fputc('\n', stderr);
  std::fprintf(stderr, "pwru: attached %zu, skipped %zu in %.2f s\n", report.attached, report.skipped.size(),
               seconds_since(attach_start));
  constexpr std::size_t kShownSkips = 10;
  for (std::size_t i = 0; i < report.skipped.size(); ++i) {
    if (i == kShownSkips && !o.debug) {
      std::fprintf(stderr, "pwru: ... and %zu more skipped (--debug lists them all)\n", report.skipped.size() - i);
      break;
    }
    std::fprintf(stderr, "pwru: skipped %s\n", report.skipped[i].c_str());
  }

  // Created here, not before: a start that fails leaves --output-file alone.
  sink.open();
  if (config.pcap_file) config.pcap_file->open();
  if (!o.ready_file.empty() && !g_stop.load()) {
    std::ofstream ready(o.ready_file);
    if (!ready) throw pwru::UsageError("--ready-file " + o.ready_file + ": cannot create it");
  }
  startup.append(session.startup_phases());
  startup.add("total", seconds_since(start));
  std::fprintf(stderr, "pwru: startup: %s\n", startup.line().c_str());
  std::fprintf(stderr, "pwru: listening for events...\n");
  session.run([] { return g_stop.load(); });
  const auto detach_start = std::chrono::steady_clock::now();
  const pwru::TraceStats stats = session.finish();
  std::fprintf(stderr, "pwru: detached in %.2f s\n", seconds_since(detach_start));
  if (o.summary) write_summary(session, o.output.json, sink);

  std::fprintf(stderr, "pwru: %llu events received\n", static_cast<unsigned long long>(stats.events_written));
  if (stats.events_lost)
    std::fprintf(stderr, "pwru: %llu events lost (ring buffer full; raise --ring-buffer-size or filter more)\n",
                 static_cast<unsigned long long>(stats.events_lost));
  if (stats.track_failures)
    std::fprintf(stderr, "pwru: %llu skbs could not be tracked by stack (kernel refused a map update)\n",
                 static_cast<unsigned long long>(stats.track_failures));
  if (stats.texts_lost)
    std::fprintf(stderr,
                 "pwru: %llu --output-skb/--output-skb-shared-info texts lost (the kernel could not store them)\n",
                 static_cast<unsigned long long>(stats.texts_lost));
  if (config.pcap_file)
    std::fprintf(
        stderr,
        "pwru: %llu packets written to %s (%llu hold only the packet's first bytes: paged data, or beyond %d)\n",
        static_cast<unsigned long long>(stats.pcap_records), o.output_pcap.c_str(),
        static_cast<unsigned long long>(stats.pcap_truncated), PWRU_CAPTURE_MAX - 1);
  if (stats.events_malformed)
    std::fprintf(stderr, "pwru: %llu malformed records skipped\n",
                 static_cast<unsigned long long>(stats.events_malformed));
  if (stats.events_unhandled)
    std::fprintf(stderr, "pwru: %llu events could not be printed and were skipped (the first: %s)\n",
                 static_cast<unsigned long long>(stats.events_unhandled), stats.first_unhandled_reason.c_str());
  if (stats.counters_unread)
    std::fprintf(stderr, "pwru: %u of the kernel's counters could not be read (%s): the counts above may be short\n",
                 stats.counters_unread, std::strerror(stats.counters_errno));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const pwru::ParsedArgs parsed = pwru::parse_pwru_args(argc, argv, std::cout, std::cerr);
  if (!parsed.options) return parsed.exit_code;
  g_debug = parsed.options->debug;
  log_to_stderr(g_debug);
  pwru::set_libbpf_log(libbpf_log);
  install_signal_handlers();
  raise_open_file_limit();
  try {
    return run(*parsed.options);
  } catch (const std::exception& e) {
    // Whatever stops pwru once its flags are read (a netns that does not
    // exist, a kernel that refuses): exit 1, as cilium/pwru's log.Fatalf.
    std::fprintf(stderr, "pwru: %s\n", e.what());
    return 1;
  }
}
