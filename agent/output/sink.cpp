#include "output/sink.h"

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace pwru {

FileSink::FileSink(const std::string& path) : path_(path.empty() ? "stdout" : path) {
  if (path.empty()) {
    file_ = stdout;
    return;
  }
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) throw UsageError("--output-file " + path + ": cannot create it (" + std::strerror(errno) + ")");
  owned_ = true;
}

FileSink::~FileSink() {
  if (!file_) return;
  if (!closed_) std::fflush(file_);
  if (owned_) std::fclose(file_);
}

void FileSink::write(std::string_view text) {
  if (text.empty() || closed_) return;
  if (std::fwrite(text.data(), 1, text.size(), file_) == text.size()) return;
  if (errno == EPIPE) {
    closed_ = true;
    return;
  }
  throw SystemError("writing trace output to " + path_, errno ? errno : EIO);
}

void FileSink::flush() {
  if (closed_ || std::fflush(file_) == 0) return;
  if (errno == EPIPE) {
    closed_ = true;
    return;
  }
  throw SystemError("flushing trace output to " + path_, errno ? errno : EIO);
}

}  // namespace pwru
