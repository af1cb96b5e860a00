#include "common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <string_view>

#include "common/error.h"

namespace pwru {
namespace {

enum class LineFormat { kText, kJson };

// Level names follow the configuration's vocabulary ("warn", not spdlog's
// "warning"), so a level read in a log line can be put back in the config.
std::string_view level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

spdlog::level::level_enum parse_level(const std::string& level) {
  for (auto candidate :
       {spdlog::level::trace, spdlog::level::debug, spdlog::level::info, spdlog::level::warn, spdlog::level::err}) {
    if (level_name(candidate) == level) return candidate;
  }
  throw UsageError("log level '" + level + "' is not one of trace, debug, info, warn, error");
}

LineFormat parse_format(const std::string& format) {
  if (format == "text") return LineFormat::kText;
  if (format == "json") return LineFormat::kJson;
  throw UsageError("log format '" + format + "' is not one of text, json");
}

void append(spdlog::memory_buf_t& dest, std::string_view text) { dest.append(text.data(), text.data() + text.size()); }

// One line per message in either format. Both share the timestamp, taken
// from spdlog's own pattern code so its clock caching and %z stay in use.
class LineFormatter final : public spdlog::formatter {
 public:
  explicit LineFormatter(LineFormat format)
      : format_(format), timestamp_("%Y-%m-%dT%H:%M:%S.%e%z", spdlog::pattern_time_type::utc, "") {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    spdlog::memory_buf_t time;
    timestamp_.format(msg, time);
    const std::string_view time_text(time.data(), time.size());
    const std::string_view text(msg.payload.data(), msg.payload.size());
    if (format_ == LineFormat::kText) {
      append(dest, time_text);
      append(dest, " ");
      append(dest, level_name(msg.level));
      append(dest, " ");
      append(dest, text);
    } else {
      // ordered_json keeps time, level, msg in the order people scan them.
      nlohmann::ordered_json line;
      line["time"] = time_text;
      line["level"] = level_name(msg.level);
      line["msg"] = text;
      // Messages can carry kernel or packet bytes that are not UTF-8; a
      // replacement character beats losing the line to an exception.
      append(dest, line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    append(dest, "\n");
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<LineFormatter>(format_); }

 private:
  LineFormat format_;
  spdlog::pattern_formatter timestamp_;
};

}  // namespace

std::shared_ptr<spdlog::logger> make_logger(const std::string& level, const std::string& format,
                                            spdlog::sink_ptr sink) {
  const spdlog::level::level_enum threshold = parse_level(level);
  const LineFormat line_format = parse_format(format);
  // Named "" like spdlog's own default logger, so replacing the default
  // does not leave a second named logger behind in spdlog's registry.
  auto logger = std::make_shared<spdlog::logger>("", std::move(sink));
  logger->set_formatter(std::make_unique<LineFormatter>(line_format));
  logger->set_level(threshold);
  return logger;
}

void setup_logging(const std::string& level, const std::string& format) {
  spdlog::set_default_logger(make_logger(level, format, std::make_shared<spdlog::sinks::stderr_sink_mt>()));
}

}  // namespace pwru
