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
  // The reader went away (EPIPE, e.g. `pwru | head`): writes are dropped
  // from then on and the trace should end as if the user had stopped it.
  bool closed() const { return closed_; }

 private:
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  bool closed_ = false;
  std::string path_;
};

}  // namespace pwru
