#include "cli/deferred_file_sink.h"

#include <utility>

namespace pwru {

DeferredFileSink::DeferredFileSink(std::string path) : path_(std::move(path)) {}

DeferredFileSink::~DeferredFileSink() = default;

void DeferredFileSink::open() {
  if (!sink_) sink_ = std::make_unique<FileSink>(path_);
}

void DeferredFileSink::write(std::string_view text) {
  open();
  sink_->write(text);
}

void DeferredFileSink::flush() {
  if (sink_) sink_->flush();
}

bool DeferredFileSink::closed() const { return sink_ && sink_->closed(); }

}  // namespace pwru
