#include "common/error.h"

#include <cerrno>
#include <cstring>

namespace pwru {

SystemError::SystemError(const std::string& what, int err)
    : std::runtime_error(what + ": " + std::strerror(err)), err_(err) {}

void throw_libbpf(const std::string& context, long ret) {
  int err = ret < 0 ? static_cast<int>(-ret) : errno;
  if (err == 0) err = EINVAL;
  throw SystemError(context, err);
}

}  // namespace pwru
