#include "common/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"

namespace pwru {
namespace {

using ::testing::HasSubstr;

struct CapturedLog {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;

  CapturedLog(const std::string& level, const std::string& format)
      : logger(make_logger(level, format, std::make_shared<spdlog::sinks::ostream_sink_st>(out))) {}

  std::vector<std::string> lines() const {
    std::vector<std::string> result;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) result.push_back(line);
    return result;
  }
};

const std::regex kTimestamp(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2})");

TEST(Log, JsonLinesParseBackWithTheMessageIntact) {
  CapturedLog log("info", "json");
  const std::string tricky = "said \"hi\"\nthen \\left\ttab \x01 end";
  log.logger->info("{}", tricky);
  log.logger->warn("plain");
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 2u) << log.out.str();

  const nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first.at("msg"), tricky);
  EXPECT_EQ(first.at("level"), "info");
  EXPECT_TRUE(std::regex_match(first.at("time").get<std::string>(), kTimestamp)) << first.at("time");
  EXPECT_EQ(lines[0].rfind("{\"time\":", 0), 0u) << lines[0];

  const nlohmann::json second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(second.at("msg"), "plain");
  EXPECT_EQ(second.at("level"), "warn");
  EXPECT_EQ(second.size(), 3u);
}

TEST(Log, JsonSurvivesBytesThatAreNotUtf8) {
  CapturedLog log("info", "json");
  log.logger->info("name \xff\xfe end");
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  const nlohmann::json line = nlohmann::json::parse(lines[0]);
  EXPECT_THAT(line.at("msg").get<std::string>(), HasSubstr("end"));
}

TEST(Log, TextLineHasTimeLevelAndMessage) {
  CapturedLog log("debug", "text");
  log.logger->debug("listening on {}", "127.0.0.1:9464");
  log.logger->error("map full");
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 2u) << log.out.str();
  const std::regex text_line(R"((\S+) (\w+) (.*))");
  std::smatch match;
  ASSERT_TRUE(std::regex_match(lines[0], match, text_line)) << lines[0];
  EXPECT_TRUE(std::regex_match(match[1].str(), kTimestamp)) << lines[0];
  EXPECT_EQ(match[2], "debug");
  EXPECT_EQ(match[3], "listening on 127.0.0.1:9464");
  EXPECT_THAT(lines[1], HasSubstr(" error map full"));
}

TEST(Log, LevelFiltersLowerMessages) {
  CapturedLog log("warn", "text");
  log.logger->info("hidden");
  log.logger->debug("hidden");
  log.logger->warn("shown");
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 1u) << log.out.str();
  EXPECT_THAT(lines[0], HasSubstr(" warn shown"));
}

TEST(Log, InvalidLevelOrFormatIsAUsageError) {
  const auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(std::cerr);
  EXPECT_THROW(make_logger("verbose", "text", sink), UsageError);
  EXPECT_THROW(make_logger("warning", "text", sink), UsageError);
  EXPECT_THROW(make_logger("info", "yaml", sink), UsageError);
  EXPECT_THROW(setup_logging("info", "xml"), UsageError);
}

TEST(Log, SetupLoggingReplacesTheDefaultLogger) {
  const std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  setup_logging("error", "json");
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::err);
  EXPECT_NE(spdlog::default_logger(), previous);
  spdlog::set_default_logger(previous);
}

}  // namespace
}  // namespace pwru
