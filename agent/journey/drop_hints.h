// Advice per skb drop reason, from config/drop-hints.yaml (compiled in) or
// a file the user names: what --summary prints under a dropped skb.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace pwru {

struct HintContext {
  std::string_view reason;    // "NETFILTER_DROP" or "SKB_DROP_REASON_NETFILTER_DROP"
  std::string_view function;  // where it was dropped
  std::string_view iface;     // last interface seen
  unsigned long long netns = 0;
};

class DropHints {
 public:
  // The compiled-in catalogue.
  static DropHints builtin();
  // Parses a catalogue; `origin` names it in errors. Throws UsageError
  // saying what to fix (not YAML, no default, a non-string hint).
  static DropHints parse(std::string_view yaml, const std::string& origin);

  // The reason's hint with placeholders filled; the default's for a reason
  // the catalogue does not know.
  std::string hint(const HintContext& context) const;
  bool knows(std::string_view reason) const;
  std::size_t size() const { return by_reason_.size(); }

 private:
  std::string default_;
  std::map<std::string, std::string, std::less<>> by_reason_;
};

// "SKB_DROP_REASON_NO_SOCKET" -> "NO_SOCKET"; other names unchanged.
std::string_view short_reason(std::string_view reason);

}  // namespace pwru
