// The agent's log lines on stderr: "text" for people, "json" (one object per
// line) for log collectors. Levels and formats are those of the `log:`
// section of the configuration.
#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <string>

namespace pwru {

// A logger writing `format` lines ("text" or "json") at `level` ("trace",
// "debug", "info", "warn", "error") and above into `sink`. Throws UsageError
// for any other level or format.
std::shared_ptr<spdlog::logger> make_logger(const std::string& level, const std::string& format, spdlog::sink_ptr sink);

// Makes such a logger on stderr spdlog's default, so spdlog::info() and
// friends anywhere in the agent follow the configuration.
void setup_logging(const std::string& level, const std::string& format);

}  // namespace pwru
