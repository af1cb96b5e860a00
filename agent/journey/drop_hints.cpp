#include "journey/drop_hints.h"

#include <yaml-cpp/yaml.h>

#include "common/error.h"
#include "config/embedded.h"

namespace pwru {

namespace {
constexpr std::string_view kReasonPrefix = "SKB_DROP_REASON_";

std::string fill(std::string_view text, const HintContext& c) {
  std::string out;
  out.reserve(text.size() + 32);
  const std::string netns = std::to_string(c.netns);
  for (std::size_t i = 0; i < text.size();) {
    const auto take = [&](std::string_view placeholder, std::string_view value) {
      if (text.substr(i, placeholder.size()) != placeholder) return false;
      out += value;
      i += placeholder.size();
      return true;
    };
    if (take("{netns}", netns) || take("{function}", c.function.empty() ? "?" : c.function) ||
        take("{iface}", c.iface.empty() ? "?" : c.iface) || take("{reason}", short_reason(c.reason)))
      continue;
    out += text[i++];
  }
  return out;
}
}  // namespace

std::string_view short_reason(std::string_view reason) {
  return reason.substr(0, kReasonPrefix.size()) == kReasonPrefix ? reason.substr(kReasonPrefix.size()) : reason;
}

DropHints DropHints::builtin() {
  static const DropHints hints = parse(drop_hints_catalogue(), "the built-in config/drop-hints.yaml");
  return hints;
}

DropHints DropHints::parse(std::string_view yaml, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    throw UsageError(origin + ": not valid YAML (" + e.msg + " at line " + std::to_string(e.mark.line + 1) + ")");
  }
  const auto text_of = [&](const YAML::Node& node, const std::string& where) {
    if (!node.IsScalar()) throw UsageError(origin + ": " + where + " must be a string (one line of advice)");
    return node.Scalar();
  };
  if (!root.IsMap() || !root["default"])
    throw UsageError(origin + ": needs a `default:` hint and a `reasons:` map of REASON: hint");
  DropHints hints;
  for (const auto& entry : root) {
    const std::string key = entry.first.Scalar();
    if (key != "default" && key != "reasons")
      throw UsageError(origin + ": unknown key '" + key + "' (only default and reasons)");
  }
  hints.default_ = text_of(root["default"], "default");
  if (const YAML::Node reasons = root["reasons"]) {
    if (!reasons.IsMap()) throw UsageError(origin + ": reasons must be a map of REASON: hint");
    for (const auto& entry : reasons) {
      const std::string reason(short_reason(entry.first.Scalar()));
      hints.by_reason_[reason] = text_of(entry.second, "reasons." + reason);
    }
  }
  return hints;
}

bool DropHints::knows(std::string_view reason) const {
  return by_reason_.find(short_reason(reason)) != by_reason_.end();
}

std::string DropHints::hint(const HintContext& context) const {
  auto it = by_reason_.find(short_reason(context.reason));
  return fill(it != by_reason_.end() ? it->second : default_, context);
}

}  // namespace pwru
