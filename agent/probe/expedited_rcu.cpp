#include "probe/expedited_rcu.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

namespace pwru {

namespace {

std::string read_word(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  in >> word;
  return word;
}

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

void make_parent_dir(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  ::mkdir(path.substr(0, slash).c_str(), 0700);
}

bool process_lives(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

}  // namespace

ExpeditedRcu::ExpeditedRcu(Paths paths) : paths_(std::move(paths)) {}

ExpeditedRcu& ExpeditedRcu::shared() {
  static ExpeditedRcu instance(Paths{});
  return instance;
}

std::string ExpeditedRcu::restore_left_over() {
  std::lock_guard lock(mutex_);
  if (holders_ > 0) return "";
  std::ifstream in(paths_.state);
  long pid = 0;
  std::string original;
  if (!(in >> pid >> original)) return "";
  if (pid == static_cast<long>(::getpid()) || process_lives(pid)) return "";
  if (original != "0" || read_word(paths_.knob) != "1") {
    ::unlink(paths_.state.c_str());
    return "";
  }
  if (!write_text(paths_.knob, "0")) return "";
  ::unlink(paths_.state.c_str());
  return paths_.knob + " put back to 0: a run (pid " + std::to_string(pid) +
         ") ended while detaching kprobes with expedited grace periods";
}

void ExpeditedRcu::acquire() {
  std::lock_guard lock(mutex_);
  if (holders_++ > 0) return;
  changed_ = false;
  if (read_word(paths_.knob) != "0") return;
  // Recorded before the knob changes: a kill between the two leaves a
  // record of a knob still at 0, which restore_left_over ignores.
  make_parent_dir(paths_.state);
  const bool recorded = write_text(paths_.state, std::to_string(::getpid()) + " 0\n");
  changed_ = write_text(paths_.knob, "1");
  if (!changed_ && recorded) ::unlink(paths_.state.c_str());
}

void ExpeditedRcu::release() {
  std::lock_guard lock(mutex_);
  if (holders_ == 0 || --holders_ > 0) return;
  if (!changed_) return;
  changed_ = false;
  if (write_text(paths_.knob, "0")) ::unlink(paths_.state.c_str());
}

bool ExpeditedRcu::held() const {
  std::lock_guard lock(mutex_);
  return changed_;
}

ExpeditedRcu::Hold::Hold(ExpeditedRcu& owner) : owner_(owner) { owner_.acquire(); }
ExpeditedRcu::Hold::~Hold() { owner_.release(); }

}  // namespace pwru
