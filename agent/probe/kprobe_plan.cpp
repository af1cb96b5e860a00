#include "probe/kprobe_plan.h"

#include <fstream>

#include "common/error.h"

namespace pwru {

std::optional<std::unordered_set<std::string>> read_traceable_functions(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::unordered_set<std::string> names;
  names.reserve(1 << 16);
  std::string line;
  while (std::getline(in, line)) {
    // "ip_rcv", "veth_xmit [veth]": the name is the first word (no stream
    // per line: ~60k lines are read on every start).
    const std::size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    names.emplace(line, start, line.find_first_of(" \t", start) - start);
  }
  if (in.bad() || names.empty()) return std::nullopt;
  return names;
}

KprobePlan plan_kprobes(const std::vector<SkbFunction>& candidates, const Ksyms& kallsyms,
                        const std::optional<std::unordered_set<std::string>>& traceable, const std::string& filter_func,
                        const std::vector<SkbFunction>& named) {
  std::optional<FunctionNameFilter> pattern;
  if (!filter_func.empty()) {
    try {
      pattern.emplace(filter_func);
    } catch (const UsageError& e) {
      throw UsageError(std::string("--filter-func ") + e.what());
    }
  }
  KprobePlan plan;
  plan.traceable_list_read = traceable.has_value();
  std::unordered_set<std::string> planned;
  const auto consider = [&](const SkbFunction& fn) {
    if (planned.count(fn.name)) return;
    if (!kallsyms.has_function(fn.name)) {
      ++plan.not_in_kallsyms;
      return;
    }
    if (traceable && !traceable->count(fn.name)) {
      ++plan.not_traceable;
      return;
    }
    plan.functions.push_back(fn);
    planned.insert(fn.name);
  };
  for (const SkbFunction& fn : candidates) {
    if (pattern && !pattern->matches(fn.name)) {
      ++plan.filtered_out;
      continue;
    }
    consider(fn);
  }
  // Checked on the kernel's functions, before kallsyms and tracefs narrow
  // them, as pwru does: a pattern that names nothing is a mistake to fix,
  // not a trace of the tracepoints alone.
  if (pattern && plan.filtered_out == candidates.size())
    throw UsageError("Cannot find a matching kernel function: --filter-func '" + filter_func +
                     "' matches no kernel function among the " + std::to_string(candidates.size()) +
                     " that take an skb; the whole name must match (pwru's rule): '^ip_.*', not '^ip_'");
  for (const SkbFunction& fn : named) consider(fn);
  return plan;
}

std::size_t count_matching(const std::vector<SkbFunction>& candidates, const FunctionNameFilter& filter) {
  std::size_t n = 0;
  for (const SkbFunction& fn : candidates) n += filter.matches(fn.name) ? 1 : 0;
  return n;
}

}  // namespace pwru
