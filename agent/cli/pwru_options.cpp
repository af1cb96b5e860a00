#include "cli/pwru_options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <optional>
#include <ostream>
#include <string_view>

#include "common/error.h"
#include "common/function_name_filter.h"

#ifndef PWRU_VERSION
#define PWRU_VERSION "0.0.0-dev"
#endif

namespace pwru {

namespace {

// Go's strconv.ParseUint(text, 0, bits), the reader behind pwru's pflag
// integer flags, so every number a pwru script passes means the same here:
// decimal, 0x hex, 0o or leading-0 octal, 0b binary, '_' between digits; no
// sign. Returns nullopt where Go returns an error.
std::optional<std::uint64_t> parse_go_uint(const std::string& text, unsigned bits) {
  if (text.empty()) return std::nullopt;
  std::string_view digits = text;
  unsigned base = 10;
  if (digits[0] == '0') {
    const char prefix = digits.size() >= 3 ? static_cast<char>(digits[1] | 0x20) : '\0';
    if (prefix == 'b' || prefix == 'o' || prefix == 'x') {
      base = prefix == 'b' ? 2 : prefix == 'o' ? 8 : 16;
      digits.remove_prefix(2);
    } else {
      base = 8;
      digits.remove_prefix(1);
    }
  }
  const std::uint64_t max = bits >= 64 ? ~0ull : (1ull << bits) - 1;
  std::uint64_t value = 0;
  bool underscores = false;
  for (const char c : digits) {
    if (c == '_') {
      underscores = true;
      continue;
    }
    unsigned d;
    if (c >= '0' && c <= '9')
      d = static_cast<unsigned>(c - '0');
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
      d = static_cast<unsigned>((c | 0x20) - 'a' + 10);
    else
      return std::nullopt;
    if (d >= base) return std::nullopt;
    if (value > (max - d) / base) return std::nullopt;
    value = value * base + d;
  }
  if (underscores) {
    // Go's underscoreOK: each '_' sits between digits (a base prefix counts
    // as one), never first or last.
    std::size_t i = 0;
    char last = '^';  // ^ start, 0 digit or prefix, _ underscore, ! other
    if (text.size() >= 2 && text[0] == '0' &&
        ((text[1] | 0x20) == 'b' || (text[1] | 0x20) == 'o' || (text[1] | 0x20) == 'x')) {
      i = 2;
      last = '0';
    }
    for (; i < text.size(); ++i) {
      if (text[i] == '_') {
        if (last != '0') return std::nullopt;
        last = '_';
      } else {
        last = '0';
      }
    }
    if (last == '_') return std::nullopt;
  }
  return value;
}

std::uint64_t parse_number(const std::string& text, unsigned bits, const std::string& what) {
  const std::optional<std::uint64_t> v = parse_go_uint(text, bits);
  if (!v)
    throw UsageError(what + " '" + text + "' is not a " + std::to_string(bits) +
                     "-bit unsigned number (as pwru reads it: 42, 0x2a, 0o52, 052, 0b101010, 1_000)");
  return *v;
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

Drops are printed as pwru prints them, the kernel's drop function and the
reason: sk_skb_reason_drop(SKB_DROP_REASON_...) from 6.11,
kfree_skb_reason(...) before. Stop with Ctrl-C: every probe is detached on exit.
)";

// argv as pwru's flag parser (Go pflag) reads it, spelled so that CLI11
// reads the same: a flag that takes a value takes the next word whatever
// it looks like (`--filter-func -x`), `--flag=` is an empty value and not a
// request for the next word, and a word after `--` is a pcap word. In
// CLI11's order (reversed).
std::vector<std::string> as_pflag_reads(const CLI::App& app, int argc, const char* const* argv) {
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      for (; i < argc; ++i) words.emplace_back(argv[i]);
      break;
    }
    const CLI::Option* opt = nullptr;
    const auto eq = arg.find('=');
    if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) opt = app.get_option_no_throw(arg.substr(0, eq));
    if (!opt || opt->get_positional() || opt->get_expected_max() == 0) {
      words.push_back(arg);
      continue;
    }
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      words.push_back(arg);  // CLI11 says the value is missing
      continue;
    }
    if (value.empty()) {
      words.push_back(arg.substr(0, eq));
      words.emplace_back();
    } else {
      words.push_back(arg.substr(0, eq) + "=" + value);
    }
  }
  std::reverse(words.begin(), words.end());
  return words;
}

}  // namespace

std::string pwru_version() { return PWRU_VERSION; }

MarkFilter parse_mark(const std::string& text) {
  MarkFilter f;
  const auto slash = text.find('/');
  if (slash == std::string::npos) {
    f.mark = static_cast<std::uint32_t>(parse_number(text, 32, "--filter-mark"));
    // pwru: mark 0 is "no mark filter", not "only unmarked skbs" (0/0xffffffff says that).
    f.mask = f.mark ? 0xffffffffu : 0;
  } else {
    f.mark = static_cast<std::uint32_t>(parse_number(text.substr(0, slash), 32, "--filter-mark mark"));
    f.mask = static_cast<std::uint32_t>(parse_number(text.substr(slash + 1), 32, "--filter-mark mask"));
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
  // pflag's StringSlice: one comma-separated word per occurrence (the words
  // after it are pcap words), occurrences add up.
  const auto one_list_per_flag = [](CLI::Option* opt) {
    opt->delimiter(',')->expected(1)->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  };
  bool version = false;
  std::string mark_text, timestamp = "none";
  // Numbers are read as pwru reads them (parse_go_uint), after CLI11.
  std::string limit_text = "0", kprobe_batch_text = "10", ring_text = std::to_string(o.ring_buffer_bytes);
  std::vector<std::string> pcap_words;

  app.add_flag("--version", version, "show pwru version and exit");
  app.add_option("--kernel-btf", o.kernel_btf, "specify kernel BTF file");
  app.add_option("--filter-netns", o.filter_netns,
                 "filter netns (\"/proc/<pid>/ns/net\", \"/var/run/netns/<name>\", \"inode:<inode>\")");
  app.add_option("--filter-mark", mark_text,
                 "filter skb mark (format: mark[/mask], e.g., 0xa00/0xf00; exact match if mask is omitted; "
                 "0: no filter, as pwru)");
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
  app.add_option("--output-limit-lines", limit_text,
                 "exit the program after the number of events has been received/printed")
      ->type_name("UINT");
  app.add_option("--output-file", o.output_file, "write traces to file");
  app.add_flag("--output-json", o.output.json, "output traces in JSON format");
  app.add_option("--output-pcap", o.output_pcap,
                 "also write the packets of matched events to this pcap file (link type NFLOG; each packet's "
                 "prefix names the hook that saw it)");
  app.add_option("--ready-file", o.ready_file, "create file after all BPF progs are attached");
  app.add_option("--backend", o.backend,
                 "tracing backend (\"auto\", \"kprobe-multi\", \"kprobe\", \"tracepoint\"); auto (or empty, as "
                 "pwru) tries them in that order")
      ->default_str("auto");
  app.add_option("--filter-func", o.filter_func,
                 "filter kernel functions to be probed by name (RE2 regular expression matching the whole "
                 "name, as pwru: '^ip_.*' or 'ip_rcv|tcp_v4_rcv'; kprobe backends)");
  one_list_per_flag(app.add_option("--kmods", o.kmods,
                                   "list of kernel modules names to attach to (kprobe backends; a module "
                                   "without BTF stops pwru on every backend)"));
  app.add_flag("--all-kmods", o.all_kmods, "attach to all available kernel modules (kprobe backends)");
  one_list_per_flag(
      app.add_option("--filter-non-skb-funcs", o.filter_non_skb_funcs,
                     "filter non-skb kernel functions to be probed (--filter-track-skb-by-stackid will be enabled)"));
  app.add_flag("--filter-track-skb", o.filter_track_skb,
               "trace a packet even if it does not match given filters (e.g., after NAT or tunnel decapsulation)");
  app.add_flag("--filter-trace-tc", o.filter_trace_tc, "trace TC bpf progs");
  app.add_flag("--filter-trace-xdp", o.filter_trace_xdp, "trace XDP bpf progs");
  app.add_flag("--filter-track-bpf-helpers", o.filter_track_bpf_helpers,
               "trace BPF helper functions (the kernel functions the loaded BPF programs call; kprobe backends; "
               "--filter-track-skb-by-stackid will be enabled)");
  app.add_flag("--filter-track-skb-by-stackid", o.filter_track_skb_by_stackid,
               "trace a packet even if it does not match given filters (e.g., after NAT or tunnel "
               "decapsulation; kprobe backends)");
  app.add_option("--filter-kprobe-batch", kprobe_batch_text,
                 "how many kprobes are attached and detached in parallel, 1 to 256 (default 10)")
      ->type_name("UINT");
  app.add_option("--ring-buffer-size", ring_text,
                 "event ring buffer size in bytes, a power of two >= 4096 (default 8388608)")
      ->type_name("UINT");
  std::string hints_file;
  app.add_flag("--summary", o.summary,
               "when the trace ends, print each skb's journey: its hooks with relative times and its fate "
               "(delivered, transmitted, dropped with the reason and a hint, consumed, still in flight)");
  app.add_option("--summary-hints", hints_file,
                 "YAML file of hints per drop reason for --summary (default: the built-in config/drop-hints.yaml)");
  app.add_flag("--debug", o.debug, "enable debug logging (libbpf and verifier messages)");
  app.add_option("pcap-filter", pcap_words, "pcap filter expression (see \"man 7 pcap-filter\")")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);

  // pflag keeps the last value of a flag given twice (list flags add up).
  for (CLI::Option* opt : app.get_options())
    if (!opt->get_positional() && opt->get_expected_max() > 0 &&
        opt->get_multi_option_policy() == CLI::MultiOptionPolicy::Throw)
      opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  try {
    std::vector<std::string> words = as_pflag_reads(app, argc, argv);
    app.parse(words);
  } catch (const CLI::CallForHelp&) {
    err << app.help();  // pwru's usage goes to stderr too, with exit status 0
    return ParsedArgs{std::nullopt, 0};
  } catch (const CLI::ParseError& e) {
    err << "pwru: " << e.what() << "\nRun 'pwru --help' for the flags and examples.\n";
    return ParsedArgs{std::nullopt, 2};
  }
  if (version) {
    // pwru prints its git tag: "pwru v1.0.9".
    const std::string v = pwru_version();
    out << "pwru " << (v.rfind('v', 0) == 0 ? "" : "v") << v << "\n";
    return ParsedArgs{std::nullopt, 0};
  }

  // A value pwru's flag parser would refuse: exit 2, as pflag.
  try {
    if (app.count("--filter-mark")) o.filter_mark = parse_mark(mark_text);
    o.output_limit_lines = parse_number(limit_text, 64, "--output-limit-lines");
    const std::uint64_t batch = parse_number(kprobe_batch_text, 64, "--filter-kprobe-batch");
    if (batch < 1 || batch > 256)
      throw UsageError("--filter-kprobe-batch " + kprobe_batch_text + " is out of range: give 1 to 256");
    o.filter_kprobe_batch = static_cast<unsigned>(batch);
    const std::uint64_t ring = parse_number(ring_text, 32, "--ring-buffer-size");
    if (ring < 4096 || (ring & (ring - 1)) != 0)
      throw UsageError("--ring-buffer-size " + ring_text + " must be a power of two of at least 4096 (e.g. 8388608)");
    o.ring_buffer_bytes = static_cast<std::uint32_t>(ring);
    if (timestamp == "current")
      o.output.timestamp = TimestampMode::Current;
    else if (timestamp == "relative")
      o.output.timestamp = TimestampMode::Relative;
    else if (timestamp == "absolute")
      o.output.timestamp = TimestampMode::Absolute;
  } catch (const UsageError& e) {
    err << "pwru: " << e.what() << "\n";
    return ParsedArgs{std::nullopt, 2};
  }

  // pflag's empty list item (`--kmods=`) names nothing.
  for (std::vector<std::string>* list : {&o.kmods, &o.filter_non_skb_funcs})
    list->erase(std::remove(list->begin(), list->end(), std::string()), list->end());
  if (!o.filter_non_skb_funcs.empty()) o.filter_track_skb_by_stackid = true;
  if (o.filter_track_bpf_helpers) o.filter_track_skb_by_stackid = true;
  for (const std::string& w : pcap_words) {
    if (!o.pcap_filter.empty()) o.pcap_filter += ' ';
    o.pcap_filter += w;
  }

  // What pwru checks while it starts (log.Fatalf: exit 1), checked here so
  // nothing loads first.
  try {
    if (o.backend.empty()) o.backend = "auto";  // pwru: "" is auto-detect
    if (o.backend != "auto" && o.backend != "tracepoint" && o.backend != "kprobe" && o.backend != "kprobe-multi")
      throw UsageError("--backend " + o.backend + " is unknown; use auto, kprobe-multi, kprobe or tracepoint");
    if (o.filter_track_bpf_helpers && o.backend == "tracepoint")
      throw UsageError("--filter-track-bpf-helpers needs a kprobe backend: use --backend auto, kprobe or kprobe-multi");
    if (o.filter_track_skb_by_stackid && o.backend == "tracepoint")
      throw UsageError(
          std::string(o.filter_non_skb_funcs.empty() ? "--filter-track-skb-by-stackid" : "--filter-non-skb-funcs") +
          " needs a kprobe backend: use --backend auto, kprobe or kprobe-multi");
    if (!hints_file.empty()) {
      if (!o.summary) throw UsageError("--summary-hints only matters with --summary; add --summary");
      std::ifstream in(hints_file);
      if (!in) throw UsageError("--summary-hints " + hints_file + ": cannot read it");
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      o.drop_hints = std::make_shared<const DropHints>(DropHints::parse(text, "--summary-hints " + hints_file));
    }
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
    return ParsedArgs{std::nullopt, 1};
  }
  return ParsedArgs{std::move(o), 0};
}

}  // namespace pwru
