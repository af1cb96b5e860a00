#include "probe/expedited_rcu.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace pwru {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s, '\0');
  return s;
}

void write_all(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

class ExpeditedRcuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/pwru-rcu-XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    dir_ = templ;
    paths_.knob = dir_ + "/rcu_expedited";
    paths_.state = dir_ + "/state/rcu_expedited.restore";
    write_all(paths_.knob, "0\n");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A pid that surely names no process: a child already reaped.
  static long dead_pid() {
    const pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, nullptr, 0);
    return child;
  }

  std::string dir_;
  ExpeditedRcu::Paths paths_;
};

TEST_F(ExpeditedRcuTest, ConcurrentHoldersShareTheKnobAndTheLastPutsItBack) {
  ExpeditedRcu rcu(paths_);
  {
    auto first = std::make_unique<ExpeditedRcu::Hold>(rcu);
    EXPECT_EQ(read_all(paths_.knob), "1");
    EXPECT_TRUE(std::filesystem::exists(paths_.state)) << "no record for a run killed while it holds the knob";
    {
      ExpeditedRcu::Hold second(rcu);
      EXPECT_EQ(read_all(paths_.knob), "1");
    }
    // One trace's detach ended; the other's is still under way.
    EXPECT_EQ(read_all(paths_.knob), "1") << "the first detach to end took expedited RCU from the other";
    first.reset();
  }
  EXPECT_EQ(read_all(paths_.knob), "0");
  EXPECT_FALSE(std::filesystem::exists(paths_.state));
  EXPECT_FALSE(rcu.held());
}

TEST_F(ExpeditedRcuTest, AKnobAlreadySetIsLeftAlone) {
  write_all(paths_.knob, "1\n");
  ExpeditedRcu rcu(paths_);
  {
    ExpeditedRcu::Hold hold(rcu);
    EXPECT_FALSE(rcu.held());
  }
  EXPECT_EQ(read_all(paths_.knob), "1\n");
  EXPECT_FALSE(std::filesystem::exists(paths_.state));
}

TEST_F(ExpeditedRcuTest, AKilledRunsSettingIsPutBackAtTheNextStart) {
  write_all(paths_.knob, "1\n");
  std::filesystem::create_directories(dir_ + "/state");
  write_all(paths_.state, std::to_string(dead_pid()) + " 0\n");
  ExpeditedRcu rcu(paths_);
  const std::string said = rcu.restore_left_over();
  EXPECT_NE(said.find("put back to 0"), std::string::npos) << said;
  EXPECT_EQ(read_all(paths_.knob), "0");
  EXPECT_FALSE(std::filesystem::exists(paths_.state));
  EXPECT_EQ(rcu.restore_left_over(), "");
}

TEST_F(ExpeditedRcuTest, ALiveRunsSettingIsNotTaken) {
  write_all(paths_.knob, "1\n");
  std::filesystem::create_directories(dir_ + "/state");
  // A live process other than this one (the recorded pid of a detaching run).
  const pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  write_all(paths_.state, std::to_string(child) + " 0\n");
  ExpeditedRcu rcu(paths_);
  EXPECT_EQ(rcu.restore_left_over(), "");
  EXPECT_EQ(read_all(paths_.knob), "1\n");
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_NE(rcu.restore_left_over(), "");
  EXPECT_EQ(read_all(paths_.knob), "0");
}

TEST_F(ExpeditedRcuTest, AnUnwritableKnobOnlyMeansNoExpediting) {
  ExpeditedRcu::Paths missing{dir_ + "/no/such/knob", paths_.state};
  ExpeditedRcu rcu(missing);
  ExpeditedRcu::Hold hold(rcu);
  EXPECT_FALSE(rcu.held());
  EXPECT_FALSE(std::filesystem::exists(paths_.state));
}

}  // namespace
}  // namespace pwru
