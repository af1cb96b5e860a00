// Text files from config/ compiled into the library (generated source, see
// CMakeLists.txt), so the agent needs no file on disk to start.
#pragma once

#include <string_view>

namespace pwru {

// config/pwru-agent.yaml: the agent's embedded default configuration.
std::string_view default_agent_config();
// config/skb-functions.txt: skb functions whose visits the agent counts on
// kprobe backends (one name per line, '#' comments).
std::string_view skb_function_catalogue();
// config/drop-hints.yaml: pwru --summary's advice per skb drop reason.
std::string_view drop_hints_catalogue();

}  // namespace pwru
