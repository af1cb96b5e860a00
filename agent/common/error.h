// Errors that cross module boundaries. Every message names what failed and,
// where a user can fix it, what to do; callers add context by wrapping.
#pragma once

#include <stdexcept>
#include <string>

namespace pwru {

// A failure the user caused (bad flag value, unknown netns path, ...):
// reported without a stack of context and mapped to exit code 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A request to the agent's HTTP API that cannot be served as asked: the
// HTTP status to answer with and a message that says what to fix.
class RequestError : public std::runtime_error {
 public:
  RequestError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

// A failure of the system underneath (kernel refused, file unreadable).
class SystemError : public std::runtime_error {
 public:
  SystemError(const std::string& what, int err);
  int code() const noexcept { return err_; }

 private:
  int err_;
};

// libbpf returns -errno (or sets errno and returns NULL); turn either into a
// SystemError with context. Pass the libbpf return value (negative) or 0 to
// read errno.
[[noreturn]] void throw_libbpf(const std::string& context, long ret);

}  // namespace pwru
