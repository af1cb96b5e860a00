// Which kernel functions the kprobe backends attach to: pwru's rule (a
// struct sk_buff * among the first five arguments, from BTF), kept only when
// kallsyms has the function and, where tracefs lets us read it,
// available_filter_functions lists it; narrowed by --filter-func.
#pragma once

#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "btf/kernel_btf.h"
#include "common/function_name_filter.h"
#include "enrich/ksyms.h"

namespace pwru {

struct KprobePlan {
  std::vector<SkbFunction> functions;
  std::size_t not_in_kallsyms = 0;   // in BTF but no symbol: inlined or static duplicates
  std::size_t not_traceable = 0;     // not in available_filter_functions
  std::size_t filtered_out = 0;      // did not match --filter-func
  bool traceable_list_read = false;  // whether available_filter_functions was readable
};

// Names listed in tracefs' available_filter_functions, or nullopt when it
// cannot be read (EPERM on some kernels: then kallsyms alone decides).
std::optional<std::unordered_set<std::string>> read_traceable_functions(
    const std::string& path = "/sys/kernel/tracing/available_filter_functions");

// `filter_func` keeps the candidates whose whole name it matches (RE2,
// pwru's rule: see FunctionNameFilter); a bad one, or one that keeps none
// of the candidates (pwru stops there too), is a UsageError naming
// --filter-func. `named` functions (--filter-non-skb-funcs) were asked for
// by name: the regex does not apply to them, kallsyms and the traceable
// list do.
KprobePlan plan_kprobes(const std::vector<SkbFunction>& candidates, const Ksyms& kallsyms,
                        const std::optional<std::unordered_set<std::string>>& traceable, const std::string& filter_func,
                        const std::vector<SkbFunction>& named = {});

// How many of `candidates` `filter` keeps: what the agent checks a trace
// request's "functions" against before anything else, on every backend.
std::size_t count_matching(const std::vector<SkbFunction>& candidates, const FunctionNameFilter& filter);

}  // namespace pwru
