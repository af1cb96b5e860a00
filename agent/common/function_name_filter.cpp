#include "common/function_name_filter.h"

#include <re2/re2.h>

#include "common/error.h"

namespace pwru {

namespace {

// Compiled programs and the DFA's cache together: a pattern that needs more
// is refused as too complex (or, while matching, falls back to RE2's NFA,
// still linear) instead of growing the agent.
constexpr std::int64_t kMaxMemBytes = 4 << 20;

// RE2's error texts are terse and engine-internal: say it in our words,
// quoting the part of the pattern RE2 pointed at.
std::string explain(const re2::RE2& re) {
  const std::string at = re.error_arg().empty() ? std::string() : " at '" + re.error_arg() + "'";
  switch (re.error_code()) {
    case re2::RE2::ErrorBadEscape:
      return "an unknown escape sequence" + at;
    case re2::RE2::ErrorBadCharClass:
      return "an unknown character class" + at;
    case re2::RE2::ErrorBadCharRange:
      return "a character range out of order" + at;
    case re2::RE2::ErrorMissingBracket:
      return "a '[' without its ']'" + at;
    case re2::RE2::ErrorMissingParen:
      return "a '(' without its ')'" + at;
    case re2::RE2::ErrorUnexpectedParen:
      return "a ')' without its '('" + at;
    case re2::RE2::ErrorTrailingBackslash:
      return "a '\\' at the end";
    case re2::RE2::ErrorRepeatArgument:
      return "a repetition (*, +, ?) with nothing before it" + at;
    case re2::RE2::ErrorRepeatSize:
      return "a repetition count over 1000 or out of order" + at + " (nested counts multiply: {100}{100} is 10000)";
    case re2::RE2::ErrorRepeatOp:
      return "a repetition of a repetition" + at;
    case re2::RE2::ErrorBadPerlOp:
      return "an unsupported (?...) group" + at + " (no lookaround, no backreferences)";
    case re2::RE2::ErrorBadUTF8:
      return "bytes that are not UTF-8";
    case re2::RE2::ErrorBadNamedCapture:
      return "a bad named group" + at;
    case re2::RE2::ErrorPatternTooLarge:
      return "a pattern too large to compile (write a simpler one)";
    default:
      return "a pattern RE2 cannot compile" + at;
  }
}

}  // namespace

FunctionNameFilter::FunctionNameFilter(const std::string& pattern) : pattern_(pattern) {
  re2::RE2::Options options;
  options.set_log_errors(false);  // the error reaches the user, not stderr
  options.set_max_mem(kMaxMemBytes);
  re_ = std::make_unique<re2::RE2>(pattern_, options);
  if (!re_->ok())
    throw UsageError("'" + pattern_ + "' is not a valid regular expression: " + explain(*re_) +
                     " (RE2 syntax, as pwru; e.g. '^ip_.*' or '(ip_rcv|tcp_v4_rcv)')");
}

FunctionNameFilter::~FunctionNameFilter() = default;
FunctionNameFilter::FunctionNameFilter(FunctionNameFilter&&) noexcept = default;
FunctionNameFilter& FunctionNameFilter::operator=(FunctionNameFilter&&) noexcept = default;

bool FunctionNameFilter::matches(std::string_view name) const {
  const re2::StringPiece text(name.data(), name.size());
  re2::StringPiece match;
  if (!re_->Match(text, 0, text.size(), re2::RE2::UNANCHORED, &match, 1)) return false;
  return match.data() == text.data() && match.size() == text.size();
}

}  // namespace pwru
