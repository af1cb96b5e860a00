#include "bpfobj/libbpf_quiet.h"

#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pwru {
namespace {

std::mutex g_seen_mutex;
std::vector<std::string> g_seen;

int capture(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[512];
  std::vsnprintf(line, sizeof(line), format, args);
  std::lock_guard lock(g_seen_mutex);
  g_seen.emplace_back(line);
  return 0;
}

std::size_t seen() {
  std::lock_guard lock(g_seen_mutex);
  return g_seen.size();
}

// Not an ELF file: libbpf warns about it through the print callback.
void make_libbpf_warn() {
  static const char garbage[64] = "not an ELF object";
  struct bpf_object* obj = bpf_object__open_mem(garbage, sizeof(garbage), nullptr);
  if (obj) bpf_object__close(obj);
}

class LibbpfQuiet : public ::testing::Test {
 protected:
  void SetUp() override {
    set_libbpf_log(&capture);
    std::lock_guard lock(g_seen_mutex);
    g_seen.clear();
  }
  void TearDown() override { set_libbpf_log(nullptr); }
};

TEST_F(LibbpfQuiet, AQuietScopeSilencesOnlyItsOwnThread) {
  make_libbpf_warn();
  const std::size_t per_warning = seen();
  ASSERT_GT(per_warning, 0u) << "libbpf printed nothing for a bad object: the test shows nothing";

  QuietLibbpf quiet;
  make_libbpf_warn();
  EXPECT_EQ(seen(), per_warning) << "a quiet thread's libbpf message reached the log";
  std::thread other([] { make_libbpf_warn(); });
  other.join();
  EXPECT_EQ(seen(), 2 * per_warning) << "another thread's message was silenced by this thread's scope";
}

// The race the old swap-the-callback scope had: scopes on two threads ending
// in the other order left libbpf silent for good.
TEST_F(LibbpfQuiet, ScopesEndingOutOfOrderOnTwoThreadsLeaveLibbpfHeard) {
  std::atomic<int> stage{0};
  std::thread first([&] {
    QuietLibbpf quiet;
    stage = 1;
    while (stage.load() < 2) std::this_thread::yield();
  });  // ends after the second thread has entered its scope
  while (stage.load() < 1) std::this_thread::yield();
  std::thread second([&] {
    QuietLibbpf quiet;
    stage = 2;
    first.join();
  });
  second.join();
  make_libbpf_warn();
  EXPECT_GT(seen(), 0u) << "libbpf stayed silent after every quiet scope ended";
}

TEST_F(LibbpfQuiet, NestedScopesOnOneThread) {
  {
    QuietLibbpf outer;
    { QuietLibbpf inner; }
    make_libbpf_warn();
    EXPECT_EQ(seen(), 0u);
  }
  make_libbpf_warn();
  EXPECT_GT(seen(), 0u);
}

}  // namespace
}  // namespace pwru
