// Where formatted lines go: stdout or --output-file. Buffered; flushed on
// every poll round so a slow trace still shows lines as they happen.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace pwru {

class LineSink {
 public:
  // Empty path: stdout. Otherwise the file is created or truncated.
  explicit LineSink(const std::string& path);
  ~LineSink();
  LineSink(const LineSink&) = delete;
  LineSink& operator=(const LineSink&) = delete;

  void write(std::string_view text);
  void flush();

 private:
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  std::string path_;
};

}  // namespace pwru
