#include "cli/pwru_options.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "cli/deferred_file_sink.h"
#include "common/error.h"

namespace pwru {
namespace {

struct CliRun {
  ParsedArgs parsed;
  std::string out, err;
};

CliRun parse(std::vector<const char*> args) {
  args.insert(args.begin(), "pwru");
  std::ostringstream out, err;
  CliRun r{parse_pwru_args(static_cast<int>(args.size()), args.data(), out, err), "", ""};
  r.out = out.str();
  r.err = err.str();
  return r;
}

TEST(PwruOptions, DefaultsArePwrus) {
  const CliRun r = parse({});
  ASSERT_TRUE(r.parsed.options);
  const PwruOptions& o = *r.parsed.options;
  EXPECT_TRUE(o.output.meta);
  EXPECT_TRUE(o.output.tuple);
  EXPECT_FALSE(o.output.json);
  EXPECT_EQ(o.output.timestamp, TimestampMode::None);
  EXPECT_EQ(o.backend, "auto");
  EXPECT_EQ(o.filter_mark.mask, 0u);
}

TEST(PwruOptions, FlagsAndValues) {
  const CliRun r = parse({"--output-json", "--output-meta=false", "--timestamp", "relative", "--filter-mark",
                          "0xa00/0xf00", "--output-limit-lines", "10", "--backend", "tracepoint", "--output-stack",
                          "--filter-netns", "inode:4026531840"});
  ASSERT_TRUE(r.parsed.options) << r.err;
  const PwruOptions& o = *r.parsed.options;
  EXPECT_TRUE(o.output.json);
  EXPECT_FALSE(o.output.meta);
  EXPECT_EQ(o.output.timestamp, TimestampMode::Relative);
  EXPECT_EQ(o.filter_mark.mark, 0xa00u);
  EXPECT_EQ(o.filter_mark.mask, 0xf00u);
  EXPECT_EQ(o.output_limit_lines, 10u);
  EXPECT_TRUE(o.output.stack);
  EXPECT_EQ(o.filter_netns, "inode:4026531840");
  const CliRun kmods = parse({"--kmods", "veth,bridge", "--filter-func", "^br_"});
  ASSERT_TRUE(kmods.parsed.options) << kmods.err;
  EXPECT_EQ(kmods.parsed.options->kmods, (std::vector<std::string>{"veth", "bridge"}));
  EXPECT_EQ(kmods.parsed.options->filter_func, "^br_");
  // Naming non-skb functions turns on tracking by stack, as in pwru.
  const CliRun non_skb = parse({"--filter-non-skb-funcs", "fib_table_lookup,dst_release"});
  ASSERT_TRUE(non_skb.parsed.options) << non_skb.err;
  EXPECT_EQ(non_skb.parsed.options->filter_non_skb_funcs,
            (std::vector<std::string>{"fib_table_lookup", "dst_release"}));
  EXPECT_TRUE(non_skb.parsed.options->filter_track_skb_by_stackid);
  EXPECT_FALSE(parse({}).parsed.options->filter_track_skb_by_stackid);
  // So does tracing BPF helpers (pwru: FilterTrackBpfHelpers sets FilterTrackSkbByStackid).
  const CliRun helpers = parse({"--filter-track-bpf-helpers"});
  ASSERT_TRUE(helpers.parsed.options) << helpers.err;
  EXPECT_TRUE(helpers.parsed.options->filter_track_bpf_helpers);
  EXPECT_TRUE(helpers.parsed.options->filter_track_skb_by_stackid);
  EXPECT_FALSE(parse({}).parsed.options->filter_track_bpf_helpers);
}

// pwru's exit statuses: 2 when pflag refuses the command line, 1 when
// pwru refuses it as it starts (log.Fatalf).
TEST(PwruOptions, BadInputsExitAsPwruWithAHint) {
  for (std::vector<const char*> bad : std::vector<std::vector<const char*>>{{"--no-such-flag"},
                                                                            {"--backend"},
                                                                            {"--timestamp", "sometimes"},
                                                                            {"--filter-mark", "banana"},
                                                                            {"--filter-mark", "0x1/0x2"},
                                                                            {"--filter-mark", "-1"},
                                                                            {"--filter-mark", "0x100000000"},
                                                                            {"--output-limit-lines", "-3"},
                                                                            {"--output-limit-lines", "1__0"},
                                                                            {"--filter-kprobe-batch", "0"},
                                                                            {"--ring-buffer-size", "1000"}}) {
    const CliRun r = parse(bad);
    EXPECT_FALSE(r.parsed.options) << bad[0];
    EXPECT_EQ(r.parsed.exit_code, 2) << bad[0] << ": " << r.err;
    EXPECT_EQ(r.err.rfind("pwru: ", 0), 0u) << bad[0] << ": " << r.err;
    EXPECT_EQ(r.out, "") << bad[0];
  }
  for (std::vector<const char*> bad :
       std::vector<std::vector<const char*>>{{"--backend", "fentry"},
                                             {"tcp", "and", "prot", "80"},
                                             {"host", "999.1.1.1"},
                                             {"--backend", "tracepoint", "--filter-track-skb-by-stackid"},
                                             {"--backend", "tracepoint", "--filter-non-skb-funcs", "fib_table_lookup"},
                                             {"--summary-hints", "/nonexistent.yaml"},
                                             {"--filter-func", "ip_(rcv"},
                                             {"--filter-func", "(?=ip_)"}}) {
    const CliRun r = parse(bad);
    EXPECT_FALSE(r.parsed.options) << bad[0];
    EXPECT_EQ(r.parsed.exit_code, 1) << bad[0] << ": " << r.err;
    EXPECT_EQ(r.err.rfind("pwru: ", 0), 0u) << bad[0] << ": " << r.err;
    EXPECT_EQ(r.out, "") << bad[0];
  }
  // libpcap's own message, with the expression.
  const CliRun bad_pcap = parse({"tcp", "and", "prot", "80"});
  EXPECT_NE(bad_pcap.err.find("'tcp and prot 80'"), std::string::npos) << bad_pcap.err;
  EXPECT_NE(bad_pcap.err.find("syntax error"), std::string::npos) << bad_pcap.err;
  EXPECT_NE(parse({"--no-such-flag"}).err.find("pwru --help"), std::string::npos);
  EXPECT_NE(parse({"--backend", "tracepoint", "--filter-non-skb-funcs", "x"}).err.find("needs a kprobe backend"),
            std::string::npos);
  EXPECT_EQ(parse({"--filter-mark", "banana"}).err,
            "pwru: --filter-mark 'banana' is not a 32-bit unsigned number (as pwru reads it: 42, 0x2a, 0o52, 052, "
            "0b101010, 1_000)\n");
}

// Item 1: pflag's StringSlice takes one comma-separated word per
// occurrence; the words after it are the pcap expression.
TEST(PwruOptions, ListFlagsTakeOneWordEachAndAddUp) {
  const CliRun kmods = parse({"--kmods", "veth", "icmp"});
  ASSERT_TRUE(kmods.parsed.options) << kmods.err;
  EXPECT_EQ(kmods.parsed.options->kmods, (std::vector<std::string>{"veth"}));
  EXPECT_EQ(kmods.parsed.options->pcap_filter, "icmp");
  ASSERT_TRUE(kmods.parsed.options->pcap);
  const CliRun repeated = parse({"--kmods", "a", "--kmods=b,c", "tcp", "and", "port", "80"});
  ASSERT_TRUE(repeated.parsed.options) << repeated.err;
  EXPECT_EQ(repeated.parsed.options->kmods, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(repeated.parsed.options->pcap_filter, "tcp and port 80");
  const CliRun non_skb =
      parse({"--filter-non-skb-funcs", "fib_table_lookup", "udp", "--filter-non-skb-funcs", "dst_release"});
  ASSERT_TRUE(non_skb.parsed.options) << non_skb.err;
  EXPECT_EQ(non_skb.parsed.options->filter_non_skb_funcs,
            (std::vector<std::string>{"fib_table_lookup", "dst_release"}));
  EXPECT_EQ(non_skb.parsed.options->pcap_filter, "udp");
  // pflag reads "" as no item at all.
  const CliRun empty = parse({"--kmods=", "icmp"});
  ASSERT_TRUE(empty.parsed.options) << empty.err;
  EXPECT_TRUE(empty.parsed.options->kmods.empty());
  EXPECT_EQ(empty.parsed.options->pcap_filter, "icmp");
}

// Item 3: pwru's --filter-mark is a pflag Uint32 (strconv.ParseUint(s, 0,
// 32)), and mark 0 switches the filter off.
TEST(PwruOptions, FilterMarkReadsPwrusNumbersAndZeroIsNoFilter) {
  const auto mark = [](const char* text) {
    const CliRun r = parse({"--filter-mark", text});
    EXPECT_TRUE(r.parsed.options) << text << ": " << r.err;
    return r.parsed.options ? r.parsed.options->filter_mark : MarkFilter{~0u, ~0u};
  };
  for (const char* zero : {"0", "0x0", "00", "0b0", "0o0"}) {
    EXPECT_EQ(mark(zero).mark, 0u) << zero;
    EXPECT_EQ(mark(zero).mask, 0u) << zero << " must mean no mark filter";
  }
  for (const char* fortytwo : {"42", "0x2a", "0X2A", "052", "0o52", "0O52", "0b101010", "4_2", "0x_2a"}) {
    EXPECT_EQ(mark(fortytwo).mark, 42u) << fortytwo;
    EXPECT_EQ(mark(fortytwo).mask, 0xffffffffu) << fortytwo;
  }
  EXPECT_EQ(mark("4294967295").mark, 0xffffffffu);
  // Ours beyond pwru: a mask, and so "only unmarked skbs".
  EXPECT_EQ(mark("0xa00/0xf00").mask, 0xf00u);
  EXPECT_EQ(mark("0/0xffffffff").mask, 0xffffffffu);
  for (const char* bad : {"", "+1", "-0", "0x", "08", "0b2", "_1", "1_", "0x_", "1__0", "4294967296", "1/", "42 "}) {
    const CliRun r = parse({"--filter-mark", bad});
    EXPECT_FALSE(r.parsed.options) << "'" << bad << "'";
    EXPECT_EQ(r.parsed.exit_code, 2) << "'" << bad << "'";
  }
  // The same reader for pwru's other integer flags.
  const CliRun numbers =
      parse({"--output-limit-lines", "0x10", "--filter-kprobe-batch", "0b11", "--ring-buffer-size", "0o40000"});
  ASSERT_TRUE(numbers.parsed.options) << numbers.err;
  EXPECT_EQ(numbers.parsed.options->output_limit_lines, 16u);
  EXPECT_EQ(numbers.parsed.options->filter_kprobe_batch, 3u);
  EXPECT_EQ(numbers.parsed.options->ring_buffer_bytes, 16384u);
  const CliRun big = parse({"--output-limit-lines", "18446744073709551615"});
  ASSERT_TRUE(big.parsed.options) << big.err;
  EXPECT_EQ(big.parsed.options->output_limit_lines, 18446744073709551615ull);
  EXPECT_EQ(parse({"--output-limit-lines", "18446744073709551616"}).parsed.exit_code, 2);
}

// Item 7: pflag's reading of values.
TEST(PwruOptions, ValuesAreReadAsPflagReadsThem) {
  // "--flag=" is an empty value, not a request for the next word; pwru's
  // empty --backend is auto-detection.
  const CliRun empty = parse({"--backend=", "icmp"});
  ASSERT_TRUE(empty.parsed.options) << empty.err;
  EXPECT_EQ(empty.parsed.options->backend, "auto");
  EXPECT_EQ(empty.parsed.options->pcap_filter, "icmp");
  const CliRun empty_file = parse({"--output-file=", "--filter-func=", "udp"});
  ASSERT_TRUE(empty_file.parsed.options) << empty_file.err;
  EXPECT_EQ(empty_file.parsed.options->output_file, "");
  EXPECT_EQ(empty_file.parsed.options->filter_func, "");
  EXPECT_EQ(empty_file.parsed.options->pcap_filter, "udp");
  // A flag given twice keeps its last value.
  const CliRun twice = parse({"--backend",
                              "kprobe",
                              "--backend=tracepoint",
                              "--filter-func",
                              "a",
                              "--filter-func",
                              "ip_rcv",
                              "--filter-mark",
                              "1",
                              "--filter-mark",
                              "2",
                              "--output-limit-lines",
                              "5",
                              "--output-limit-lines",
                              "7",
                              "--output-json",
                              "--output-json",
                              "--timestamp",
                              "current",
                              "--timestamp",
                              "relative"});
  ASSERT_TRUE(twice.parsed.options) << twice.err;
  EXPECT_EQ(twice.parsed.options->backend, "tracepoint");
  EXPECT_EQ(twice.parsed.options->filter_func, "ip_rcv");
  EXPECT_EQ(twice.parsed.options->filter_mark.mark, 2u);
  EXPECT_EQ(twice.parsed.options->output_limit_lines, 7u);
  EXPECT_EQ(twice.parsed.options->output.timestamp, TimestampMode::Relative);
  // The word after a flag is its value, whatever it looks like.
  const CliRun dash = parse({"--output-file", "--output-json", "icmp"});
  ASSERT_TRUE(dash.parsed.options) << dash.err;
  EXPECT_EQ(dash.parsed.options->output_file, "--output-json");
  EXPECT_FALSE(dash.parsed.options->output.json);
  // A bool flag takes no word: the next one is a pcap word.
  const CliRun bool_flag = parse({"--output-meta", "icmp"});
  ASSERT_TRUE(bool_flag.parsed.options) << bool_flag.err;
  EXPECT_TRUE(bool_flag.parsed.options->output.meta);
  EXPECT_EQ(bool_flag.parsed.options->pcap_filter, "icmp");
  const CliRun off = parse({"--output-meta=false", "--output-tuple=0"});
  ASSERT_TRUE(off.parsed.options) << off.err;
  EXPECT_FALSE(off.parsed.options->output.meta);
  EXPECT_FALSE(off.parsed.options->output.tuple);
  // After "--" every word is the pcap expression's, flags in between too.
  const CliRun rest = parse({"--output-json", "--", "icmp"});
  ASSERT_TRUE(rest.parsed.options) << rest.err;
  EXPECT_EQ(rest.parsed.options->pcap_filter, "icmp");
  // Flags may follow the pcap words (pflag intersperses).
  const CliRun after = parse({"icmp", "--output-json"});
  ASSERT_TRUE(after.parsed.options) << after.err;
  EXPECT_TRUE(after.parsed.options->output.json);
  EXPECT_EQ(after.parsed.options->pcap_filter, "icmp");
}

TEST(PwruOptions, TrackBpfHelpersNeedsAKprobeBackend) {
  const CliRun r = parse({"--backend", "tracepoint", "--filter-track-bpf-helpers"});
  EXPECT_FALSE(r.parsed.options);
  EXPECT_NE(r.parsed.exit_code, 0);
  // The same kind of refusal as tracking by stack on that backend, which it implies.
  EXPECT_EQ(r.parsed.exit_code, parse({"--backend", "tracepoint", "--filter-track-skb-by-stackid"}).parsed.exit_code);
  EXPECT_NE(r.err.find("pwru: --filter-track-bpf-helpers needs a kprobe backend: use --backend auto, kprobe or "
                       "kprobe-multi"),
            std::string::npos)
      << r.err;
  for (const char* backend : {"auto", "kprobe", "kprobe-multi"})
    EXPECT_TRUE(parse({"--backend", backend, "--filter-track-bpf-helpers"}).parsed.options) << backend;
}

TEST(PwruOptions, FilterFuncIsCheckedAsRe2BeforeAnythingLoads) {
  // RE2 syntax, as pwru's Go regexp: Perl classes yes, lookaround no.
  EXPECT_TRUE(parse({"--filter-func", "^(ip_rcv|tcp_v4_rcv)$"}).parsed.options);
  EXPECT_TRUE(parse({"--filter-func", "ip_\\w+"}).parsed.options);
  const CliRun paren = parse({"--filter-func", "ip_(rcv"});
  EXPECT_NE(paren.err.find("pwru: --filter-func 'ip_(rcv' is not a valid regular expression: a '(' without its ')'"),
            std::string::npos)
      << paren.err;
  const CliRun look = parse({"--filter-func", "(?=ip_)"});
  EXPECT_NE(look.err.find("no lookaround"), std::string::npos) << look.err;
  // RE2 stays quiet on stderr: the one line is ours.
  EXPECT_EQ(std::count(look.err.begin(), look.err.end(), '\n'), 1) << look.err;
}

TEST(PwruOptions, PcapExpressionIsCompiledInBothForms) {
  const CliRun r = parse({"--output-tuple", "tcp", "and", "port", "443"});
  ASSERT_TRUE(r.parsed.options) << r.err;
  ASSERT_TRUE(r.parsed.options->pcap);
  EXPECT_EQ(r.parsed.options->pcap_filter, "tcp and port 443");
  EXPECT_FALSE(r.parsed.options->pcap->l2.empty());
  EXPECT_FALSE(r.parsed.options->pcap->l3_rejects_all);
  const CliRun arp = parse({"arp"});
  ASSERT_TRUE(arp.parsed.options) << arp.err;
  EXPECT_TRUE(arp.parsed.options->pcap->l3_rejects_all);
  EXPECT_FALSE(parse({}).parsed.options->pcap);
}

// pwru's --help is pflag's usage on stderr with exit status 0; --version
// prints "pwru v1.0.9" (its git tag) on stdout.
TEST(PwruOptions, HelpAndVersion) {
  for (const char* flag : {"--help", "-h"}) {
    const CliRun help = parse({flag});
    EXPECT_FALSE(help.parsed.options);
    EXPECT_EQ(help.parsed.exit_code, 0);
    EXPECT_EQ(help.out, "") << flag;
    EXPECT_NE(help.err.find("--filter-netns"), std::string::npos);
    EXPECT_NE(help.err.find("Examples:"), std::string::npos);
  }
  const CliRun version = parse({"--version"});
  EXPECT_FALSE(version.parsed.options);
  EXPECT_EQ(version.parsed.exit_code, 0);
  EXPECT_EQ(version.out, "pwru v" + pwru_version() + "\n");
  EXPECT_EQ(version.err, "");
}

TEST(PwruOptions, MarkParsing) {
  EXPECT_EQ(parse_mark("42").mark, 42u);
  EXPECT_EQ(parse_mark("42").mask, 0xffffffffu);
  EXPECT_EQ(parse_mark("0").mask, 0u);
  EXPECT_EQ(parse_mark("0x0/0x0").mask, 0u);
  EXPECT_THROW(parse_mark("0x100000000"), UsageError);
  EXPECT_THROW(parse_mark("1/"), UsageError);
}

// Item 8: --output-file comes to exist once the trace is attached, as in
// pwru; a start that fails before leaves it alone.
class DeferredFileSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pwru-sink-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static std::string read(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string dir_;
};

TEST_F(DeferredFileSinkTest, CreatesNothingUntilOpenedOrWritten) {
  const std::string fresh = dir_ + "/fresh.txt";
  {
    DeferredFileSink sink(fresh);
    sink.flush();
    EXPECT_FALSE(sink.opened());
    EXPECT_FALSE(sink.closed());
  }
  EXPECT_FALSE(std::filesystem::exists(fresh));
  const std::string kept = dir_ + "/kept.txt";
  std::ofstream(kept) << "an earlier trace\n";
  { DeferredFileSink sink(kept); }
  EXPECT_EQ(read(kept), "an earlier trace\n");
  {
    DeferredFileSink sink(kept);
    sink.open();
    EXPECT_TRUE(sink.opened());
    EXPECT_EQ(read(kept), "");  // truncated, as pwru's os.Create
    sink.write("SKB CPU\n");
    sink.open();  // a second open keeps what was written
    sink.write("line\n");
  }
  EXPECT_EQ(read(kept), "SKB CPU\nline\n");
  {
    DeferredFileSink sink(fresh);
    sink.write("");  // the JSON header is empty: the file exists all the same
  }
  EXPECT_TRUE(std::filesystem::exists(fresh));
}

TEST_F(DeferredFileSinkTest, AFileThatCannotBeCreatedNamesTheFlag) {
  DeferredFileSink sink(dir_ + "/missing/out.txt");
  try {
    sink.open();
    ADD_FAILURE() << "opened a file in a missing directory";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--output-file " + dir_ + "/missing/out.txt: cannot create it"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace pwru
