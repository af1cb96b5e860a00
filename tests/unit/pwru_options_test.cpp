#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "cli/pwru_options.h"
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
                       "0xa00/0xf00", "--output-limit-lines", "10", "--backend", "tracepoint",
                       "--output-stack", "--filter-netns", "inode:4026531840"});
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
}

TEST(PwruOptions, BadInputsExitTwoWithAHint) {
  for (std::vector<const char*> bad : std::vector<std::vector<const char*>>{
           {"--no-such-flag"},
           {"--timestamp", "sometimes"},
           {"--filter-mark", "banana"},
           {"--filter-mark", "0x1/0x2"},
           {"--output-limit-lines", "-3"},
           {"--backend", "fentry"},
           {"--filter-kprobe-batch", "0"},
           {"--ring-buffer-size", "1000"},
           {"tcp", "and", "prot", "80"},
           {"host", "999.1.1.1"},
           {"--backend", "tracepoint", "--filter-track-skb-by-stackid"},
           {"--backend", "tracepoint", "--filter-non-skb-funcs", "fib_table_lookup"},
           {"--filter-func", "ip_(rcv"},
           {"--filter-func", "(?=ip_)"}}) {
    const CliRun r = parse(bad);
    EXPECT_FALSE(r.parsed.options) << bad[0];
    EXPECT_EQ(r.parsed.exit_code, 2) << bad[0];
    EXPECT_NE(r.err.find("pwru: "), std::string::npos) << bad[0];
  }
  // libpcap's own message, with the expression.
  const CliRun bad_pcap = parse({"tcp", "and", "prot", "80"});
  EXPECT_NE(bad_pcap.err.find("'tcp and prot 80'"), std::string::npos) << bad_pcap.err;
  EXPECT_NE(bad_pcap.err.find("syntax error"), std::string::npos) << bad_pcap.err;
  EXPECT_NE(parse({"--no-such-flag"}).err.find("pwru --help"), std::string::npos);
  EXPECT_NE(parse({"--backend", "tracepoint", "--filter-non-skb-funcs", "x"}).err.find("needs a kprobe backend"),
            std::string::npos);
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

TEST(PwruOptions, HelpAndVersion) {
  const CliRun help = parse({"--help"});
  EXPECT_FALSE(help.parsed.options);
  EXPECT_EQ(help.parsed.exit_code, 0);
  EXPECT_NE(help.out.find("--filter-netns"), std::string::npos);
  EXPECT_NE(help.out.find("Examples:"), std::string::npos);
  const CliRun version = parse({"--version"});
  EXPECT_EQ(version.parsed.exit_code, 0);
  EXPECT_NE(version.out.find("pwru "), std::string::npos);
}

TEST(PwruOptions, MarkParsing) {
  EXPECT_EQ(parse_mark("42").mark, 42u);
  EXPECT_EQ(parse_mark("42").mask, 0xffffffffu);
  EXPECT_EQ(parse_mark("0x0/0x0").mask, 0u);
  EXPECT_THROW(parse_mark("0x100000000"), UsageError);
  EXPECT_THROW(parse_mark("1/"), UsageError);
}

}  // namespace
}  // namespace pwru
