// The `pwru` command line: cilium/pwru's flags, names and defaults.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "filter/pcap_compiler.h"
#include "journey/drop_hints.h"
#include "output/event_formatter.h"

namespace pwru {

struct MarkFilter {
  std::uint32_t mark = 0;
  std::uint32_t mask = 0;  // 0: not filtered
};

struct PwruOptions {
  std::string filter_netns;   // as given: "inode:N", "N" or a path
  std::string filter_ifname;  // resolved in filter_netns (or the current netns)
  MarkFilter filter_mark;
  std::string pcap_filter;                   // trailing words joined by spaces
  std::shared_ptr<const CompiledPcap> pcap;  // compiled pcap_filter; null when empty
  OutputOptions output;
  std::uint64_t output_limit_lines = 0;  // 0: no limit
  std::string output_file;
  std::string output_pcap;  // --output-pcap FILE: the matched packets as pcap (NFLOG, hook as prefix)
  std::string ready_file;
  std::string backend = "auto";
  std::string filter_func;         // RE2 regex over kprobe function names, whole-name match
  std::vector<std::string> kmods;  // --kmods a,b: modules probed too
  bool all_kmods = false;
  unsigned filter_kprobe_batch = 10;  // threads that attach and detach kprobes
  bool filter_track_skb = false;
  bool filter_trace_tc = false;   // fentry on every tc program
  bool filter_trace_xdp = false;  // fentry on every XDP program
  bool filter_track_skb_by_stackid = false;
  std::vector<std::string> filter_non_skb_funcs;  // implies filter_track_skb_by_stackid
  bool filter_track_bpf_helpers = false;  // probes what loaded BPF programs call; implies filter_track_skb_by_stackid
  std::string kernel_btf;
  std::uint32_t ring_buffer_bytes = 8u << 20;
  bool summary = false;                         // --summary: each skb's journey and fate at the end
  std::shared_ptr<const DropHints> drop_hints;  // --summary-hints FILE; null: built in
  bool debug = false;
};

struct ParsedArgs {
  std::optional<PwruOptions> options;  // set when pwru should run
  int exit_code = 0;                   // otherwise: exit with this
};

// Parses argv as cilium/pwru (Go pflag) does. --version prints to `out`,
// --help to `err` (as pflag), both with exit code 0. Otherwise a problem
// is printed to `err` with what to do, and the exit code is pwru's: 2 when
// its flag parser would refuse the command line (unknown flag, missing or
// unreadable value), 1 for what pwru checks as it starts (backend, pcap
// expression, --filter-func regex, ...).
ParsedArgs parse_pwru_args(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// "0xa00/0xf00", "42": exact match when the mask is omitted; "0": no
// filter (pwru's mark 0). Numbers in any of pwru's forms (0x, 0o, 0b, 0).
MarkFilter parse_mark(const std::string& text);

std::string pwru_version();

}  // namespace pwru
