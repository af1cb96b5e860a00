// A regular expression from a user (pwru --filter-func, the trace API's
// "functions") selecting kernel functions by name. RE2, the engine behind
// pwru's Go regexp: matching time is linear in the name whatever the
// pattern, so a pattern cannot stall the agent (ECMAScript std::regex
// backtracks exponentially on nested quantifiers).
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace re2 {
class RE2;
}

namespace pwru {

class FunctionNameFilter {
 public:
  // Throws UsageError saying what is wrong with `pattern` in words a user
  // can act on (it names neither a flag nor a field: callers add that).
  explicit FunctionNameFilter(const std::string& pattern);
  ~FunctionNameFilter();
  FunctionNameFilter(FunctionNameFilter&&) noexcept;
  FunctionNameFilter& operator=(FunctionNameFilter&&) noexcept;

  // pwru's rule: a function is kept when the leftmost-first match of the
  // pattern in its name is the whole name (`regexp.FindString(name) ==
  // name`). So "ip_rcv" keeps only ip_rcv and "^ip_" keeps nothing
  // ("^ip_.*" is meant); and as in Go, "ip_rcv|ip_rcv_finish" does not
  // keep ip_rcv_finish, where the first alternative already matched.
  bool matches(std::string_view name) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::unique_ptr<re2::RE2> re_;
};

}  // namespace pwru
