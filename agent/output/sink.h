// Where formatted lines go: a file or stdout for `pwru`, an HTTP response
// for the agent's traces. Buffered; flushed on every poll round so a slow
// trace still shows lines as they happen.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace pwru {

class LineSink {
 public:
  virtual ~LineSink() = default;
  virtual void write(std::string_view text) = 0;
  virtual void flush() = 0;
  // The reader went away (EPIPE, `pwru | head`; an HTTP client that hung
  // up): writes are dropped from then on and the trace should end as if
  // the user had stopped it.
  virtual bool closed() const = 0;
};

class FileSink final : public LineSink {
 public:
  // Empty path: stdout. Otherwise the file is created or truncated.
  explicit FileSink(const std::string& path);
  ~FileSink() override;
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  void write(std::string_view text) override;
  void flush() override;
  bool closed() const override { return closed_; }

 private:
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  bool closed_ = false;
  std::string path_;
};

}  // namespace pwru
