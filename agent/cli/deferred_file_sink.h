// pwru --output-file, opened when cilium/pwru opens it: once the trace is
// attached. A pwru that fails to start (a bad netns, a kernel that refuses
// a program) thus creates no file and leaves an existing one as it was.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "output/sink.h"

namespace pwru {

class DeferredFileSink final : public LineSink {
 public:
  // Empty path: stdout. Nothing is created until open() or the first write.
  explicit DeferredFileSink(std::string path);
  ~DeferredFileSink() override;

  // Creates (or truncates) the file now; later calls do nothing. Throws
  // UsageError naming --output-file when the file cannot be created.
  void open();
  bool opened() const { return sink_ != nullptr; }

  void write(std::string_view text) override;
  // Before open() there is nothing to flush, and flushing creates nothing.
  void flush() override;
  bool closed() const override;

 private:
  std::string path_;
  std::unique_ptr<FileSink> sink_;
};

}  // namespace pwru
