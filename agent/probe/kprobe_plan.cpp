#include "probe/kprobe_plan.h"

#include <fstream>
#include <regex>
#include <sstream>

#include "common/error.h"

namespace pwru {

std::optional<std::unordered_set<std::string>> read_traceable_functions(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::unordered_set<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    // "ip_rcv", "veth_xmit [veth]"
    std::istringstream fields(line);
    std::string name;
    if (fields >> name) names.insert(name);
  }
  if (in.bad() || names.empty()) return std::nullopt;
  return names;
}

KprobePlan plan_kprobes(const std::vector<SkbFunction>& candidates, const Ksyms& kallsyms,
                        const std::optional<std::unordered_set<std::string>>& traceable,
                        const std::string& filter_func, const std::vector<SkbFunction>& named) {
  std::optional<std::regex> pattern;
  if (!filter_func.empty()) {
    try {
      pattern.emplace(filter_func, std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      throw UsageError("--filter-func '" + filter_func + "' is not a valid regular expression (" + e.what() +
                       "); e.g. --filter-func '^ip_.*'");
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
    if (pattern && !std::regex_search(fn.name, *pattern)) {
      ++plan.filtered_out;
      continue;
    }
    consider(fn);
  }
  for (const SkbFunction& fn : named) consider(fn);
  return plan;
}

}  // namespace pwru
