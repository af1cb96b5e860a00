#include "cli/pwru_options.h"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <ostream>

#include "common/error.h"
#include "common/function_name_filter.h"

#ifndef PWRU_VERSION
#define PWRU_VERSION "0.0.0-dev"
#endif

namespace pwru {

namespace {

std::uint32_t parse_u32(const std::string& text, const char* what) {
  if (text.empty()) throw UsageError(std::string(what) + " is empty");
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 0);
  if (errno || *end != '\0' || v > 0xffffffffULL || text[0] == '-')
    throw UsageError(std::string(what) + " '" + text +
                     "' is not a 32-bit number (decimal or 0x-prefixed hex)");
  return static_cast<std::uint32_t>(v);
}

constexpr const char* kExamples = R"(
Examples:
  pwru                                   trace every skb on every skb tracepoint
  pwru --output-tuple --filter-netns /var/run/netns/blue
                                         only skbs in the netns 'blue'
  pwru --filter-netns inode:4026531840 --filter-ifname eth0
                                         only skbs on eth0 of that netns
  pwru --filter-mark 0xa00/0xf00         only skbs whose mark & 0xf00 == 0xa00
  pwru --output-json --output-file /tmp/trace.json --output-limit-lines 1000
  pwru --output-stack --timestamp relative

Drops are printed as kfree_skb(SKB_DROP_REASON_...), with the reason names
of the running kernel. Stop with Ctrl-C: every probe is detached on exit.
)";

}  // namespace

// CLI11's own range check prints the range as a 300-digit double.
const CLI::Validator kNotNegative(
    [](std::string& value) -> std::string {
      if (!value.empty() && value.front() == '-') return "must be 0 or a positive whole number, not " + value;
      return "";
    },
    "UINT");

std::string pwru_version() { return PWRU_VERSION; }

MarkFilter parse_mark(const std::string& text) {
  MarkFilter f;
  const auto slash = text.find('/');
  if (slash == std::string::npos) {
    f.mark = parse_u32(text, "--filter-mark");
    f.mask = 0xffffffffu;
  } else {
    f.mark = parse_u32(text.substr(0, slash), "--filter-mark mark");
    f.mask = parse_u32(text.substr(slash + 1), "--filter-mark mask");
  }
  if ((f.mark & f.mask) != f.mark)
    throw UsageError("--filter-mark " + text + " can never match: the mark has bits outside the mask");
  return f;
}

ParsedArgs parse_pwru_args(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  PwruOptions o;
  CLI::App app{"pwru: packet, where are you? Traces skbs through the kernel.", "pwru"};
  app.footer(kExamples);
  app.get_formatter()->column_width(40);
  app.set_help_flag("-h,--help", "display this message and exit");
  bool version = false;
  std::string mark_text, timestamp = "none";
  std::vector<std::string> pcap_words;

  app.add_flag("--version", version, "show pwru version and exit");
  app.add_option("--kernel-btf", o.kernel_btf, "specify kernel BTF file");
  app.add_option("--filter-netns", o.filter_netns,
                 "filter netns (\"/proc/<pid>/ns/net\", \"/var/run/netns/<name>\", \"inode:<inode>\")");
  app.add_option("--filter-mark", mark_text,
                 "filter skb mark (format: mark[/mask], e.g., 0xa00/0xf00; exact match if mask is omitted)");
  app.add_option("--filter-ifname", o.filter_ifname,
                 "filter skb ifname in --filter-netns (if not specified, use current netns)");
  app.add_option("--timestamp", timestamp,
                 "print timestamp per skb (\"current\", \"relative\", \"absolute\", \"none\")")
      ->check(CLI::IsMember({"none", "current", "relative", "absolute"}))
      ->default_str("none");
  app.add_flag("--output-meta", o.output.meta, "print skb metadata (default true)");
  app.add_flag("--output-tuple", o.output.tuple, "print L4 tuple (default true)");
  app.add_flag("--output-stack", o.output.stack, "print stack");
  app.add_flag("--output-caller", o.output.caller, "print caller function name");
  app.add_flag("--output-tcp-flags", o.output.tcp_flags, "print TCP flags");
  app.add_flag("--output-skb", o.output.skb, "print skb");
  app.add_flag("--output-skb-shared-info", o.output.shinfo, "print skb shared info");
  app.add_flag("--output-skb-cb", o.output.cb, "print skb->cb");
  app.add_flag("--output-tunnel", o.output.tunnel, "print encapsulated tunnel header data");
  app.add_option("--output-limit-lines", o.output_limit_lines,
                 "exit the program after the number of events has been received/printed")
      ->check(kNotNegative);
  app.add_option("--output-file", o.output_file, "write traces to file");
  app.add_flag("--output-json", o.output.json, "output traces in JSON format");
  app.add_option("--output-pcap", o.output_pcap,
                 "also write the packets of matched events to this pcap file (link type NFLOG; each packet's "
                 "prefix names the hook that saw it)");
  app.add_option("--ready-file", o.ready_file, "create file after all BPF progs are attached");
  app.add_option("--backend", o.backend,
                 "tracing backend (\"auto\", \"kprobe-multi\", \"kprobe\", \"tracepoint\"); auto tries them in "
                 "that order")
      ->default_str("auto");
  app.add_option("--filter-func", o.filter_func,
                 "filter kernel functions to be probed by name (RE2 regular expression matching the whole "
                 "name, as pwru: '^ip_.*' or 'ip_rcv|tcp_v4_rcv'; kprobe backends)");
  app.add_option("--kmods", o.kmods, "list of kernel modules names to attach to (kprobe backends)")
      ->delimiter(',');
  app.add_flag("--all-kmods", o.all_kmods, "attach to all available kernel modules (kprobe backends)");
  app.add_option("--filter-non-skb-funcs", o.filter_non_skb_funcs,
                 "filter non-skb kernel functions to be probed (--filter-track-skb-by-stackid will be enabled)")
      ->delimiter(',');
  app.add_flag("--filter-track-skb", o.filter_track_skb,
               "trace a packet even if it does not match given filters (e.g., after NAT or tunnel decapsulation)");
  app.add_flag("--filter-trace-tc", o.filter_trace_tc, "trace TC bpf progs");
  app.add_flag("--filter-trace-xdp", o.filter_trace_xdp, "trace XDP bpf progs");
  app.add_flag("--filter-track-skb-by-stackid", o.filter_track_skb_by_stackid,
               "trace a packet even if it does not match given filters (e.g., after NAT or tunnel "
               "decapsulation; kprobe backends)");
  app.add_option("--filter-kprobe-batch", o.filter_kprobe_batch,
                 "how many kprobes are detached in parallel (default 10)")
      ->check(CLI::Range(1u, 256u));
  app.add_option("--ring-buffer-size", o.ring_buffer_bytes,
                 "event ring buffer size in bytes, a power of two >= 4096 (default 8388608)")
      ->check(kNotNegative);
  std::string hints_file;
  app.add_flag("--summary", o.summary,
               "when the trace ends, print each skb's journey: its hooks with relative times and its fate "
               "(delivered, transmitted, dropped with the reason and a hint, consumed, still in flight)");
  app.add_option("--summary-hints", hints_file,
                 "YAML file of hints per drop reason for --summary (default: the built-in config/drop-hints.yaml)");
  app.add_flag("--debug", o.debug, "enable debug logging (libbpf and verifier messages)");
  app.add_option("pcap-filter", pcap_words, "pcap filter expression (see \"man 7 pcap-filter\")");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return ParsedArgs{std::nullopt, 0};
  } catch (const CLI::ParseError& e) {
    err << "pwru: " << e.what() << "\nRun 'pwru --help' for the flags and examples.\n";
    return ParsedArgs{std::nullopt, 2};
  }
  if (version) {
    out << "pwru " << pwru_version() << "\n";
    return ParsedArgs{std::nullopt, 0};
  }

  try {
    if (!mark_text.empty()) o.filter_mark = parse_mark(mark_text);
    if (timestamp == "current") o.output.timestamp = TimestampMode::Current;
    else if (timestamp == "relative") o.output.timestamp = TimestampMode::Relative;
    else if (timestamp == "absolute") o.output.timestamp = TimestampMode::Absolute;
    if (o.backend != "auto" && o.backend != "tracepoint" && o.backend != "kprobe" && o.backend != "kprobe-multi")
      throw UsageError("--backend " + o.backend + " is unknown; use auto, kprobe-multi, kprobe or tracepoint");
    if (!o.filter_non_skb_funcs.empty()) o.filter_track_skb_by_stackid = true;
    // pwru shows __sk_buff->cb[] whenever it traces tc programs.
    if (o.filter_trace_tc) o.output.cb = true;
    if (o.filter_track_skb_by_stackid && o.backend == "tracepoint")
      throw UsageError(std::string(o.filter_non_skb_funcs.empty() ? "--filter-track-skb-by-stackid"
                                                                  : "--filter-non-skb-funcs") +
                       " needs a kprobe backend: use --backend auto, kprobe or kprobe-multi");
    const std::uint32_t ring = o.ring_buffer_bytes;
    if (ring < 4096 || (ring & (ring - 1)) != 0)
      throw UsageError("--ring-buffer-size " + std::to_string(ring) +
                       " must be a power of two of at least 4096 (e.g. 8388608)");
    for (const std::string& w : pcap_words) {
      if (!o.pcap_filter.empty()) o.pcap_filter += ' ';
      o.pcap_filter += w;
    }
    if (!hints_file.empty()) {
      if (!o.summary) throw UsageError("--summary-hints only matters with --summary; add --summary");
      std::ifstream in(hints_file);
      if (!in) throw UsageError("--summary-hints " + hints_file + ": cannot read it");
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      o.drop_hints = std::make_shared<const DropHints>(DropHints::parse(text, "--summary-hints " + hints_file));
    }
    // Compiled now, so a bad expression stops pwru before anything loads.
    if (!o.pcap_filter.empty()) o.pcap = std::make_shared<const CompiledPcap>(compile_pcap(o.pcap_filter));
    if (!o.filter_func.empty()) {
      try {
        FunctionNameFilter check(o.filter_func);
      } catch (const UsageError& e) {
        throw UsageError(std::string("--filter-func ") + e.what());
      }
    }
  } catch (const UsageError& e) {
    err << "pwru: " << e.what() << "\n";
    return ParsedArgs{std::nullopt, 2};
  }
  return ParsedArgs{std::move(o), 0};
}

}  // namespace pwru
