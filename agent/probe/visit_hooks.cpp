#include "probe/visit_hooks.h"

#include <algorithm>
#include <string_view>

namespace pwru {

namespace {

constexpr std::string_view kEntrySuffix = "_entry";
// Every receive API's skb reaches the core receive path here, whichever
// entry point the driver used.
constexpr const char* kReceiveStage = "netif_receive_skb";
constexpr const char* kTransmitDone = "net_dev_xmit";
constexpr const char* kTransmitStart = "net_dev_start_xmit";

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() > suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

}  // namespace

StageTracepoints stage_tracepoints(const std::vector<SkbTracepoint>& skb_tracepoints,
                                   const std::function<bool(const std::string&)>& kernel_has_tracepoint) {
  auto present = [&](const std::string& name) {
    return std::any_of(skb_tracepoints.begin(), skb_tracepoints.end(),
                       [&](const SkbTracepoint& tp) { return tp.name == name; });
  };
  const bool receive_stage_counted = present(kReceiveStage);
  const bool transmit_start_counted = present(kTransmitStart);

  StageTracepoints out;
  for (const SkbTracepoint& tp : skb_tracepoints) {
    if (receive_stage_counted && ends_with(tp.name, kEntrySuffix)) {
      const std::string api = tp.name.substr(0, tp.name.size() - kEntrySuffix.size());
      if (kernel_has_tracepoint(api + "_exit")) {
        out.left_out.push_back(tp.name + ": the entry of " + api +
                               "(), whose skbs are counted where the stack takes "
                               "them (netif_rx, " +
                               kReceiveStage + ")");
        continue;
      }
    }
    if (transmit_start_counted && tp.name == kTransmitDone) {
      out.left_out.push_back(tp.name + ": runs after the driver may have freed the skb; " + kTransmitStart +
                             " counts it");
      continue;
    }
    out.kept.push_back(tp);
  }
  return out;
}

std::vector<std::string> functions_apart_from_tracepoints(const std::vector<std::string>& functions,
                                                          const std::vector<SkbTracepoint>& counted,
                                                          std::vector<std::string>& left_out) {
  std::vector<std::string> kept;
  for (const std::string& name : functions) {
    const bool twin =
        std::any_of(counted.begin(), counted.end(), [&](const SkbTracepoint& tp) { return tp.name == name; });
    if (twin) {
      left_out.push_back(name +
                         ": the tracepoint of the same name counts it (counters.visit_hooks: all counts both, "
                         "added up in one series)");
    } else {
      kept.push_back(name);
    }
  }
  return kept;
}

}  // namespace pwru
