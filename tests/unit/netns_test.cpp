#include "netns/netns.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/error.h"

namespace pwru {
namespace {

std::uint32_t self_inode() {
  struct stat st {};
  EXPECT_EQ(::stat("/proc/self/ns/net", &st), 0);
  return static_cast<std::uint32_t>(st.st_ino);
}

TEST(Netns, PathAndInodeFormsAgree) {
  const std::uint32_t inode = self_inode();
  EXPECT_EQ(resolve_netns("/proc/self/ns/net").inode, inode);
  const NetnsRef by_inode = resolve_netns("inode:" + std::to_string(inode));
  EXPECT_EQ(by_inode.inode, inode);
  EXPECT_FALSE(by_inode.path.empty());
  EXPECT_EQ(resolve_netns(std::to_string(inode)).inode, inode);
  EXPECT_EQ(current_netns().inode, inode);
}

TEST(Netns, BadSpecsAreUsageErrors) {
  EXPECT_THROW(resolve_netns("/no/such/netns"), UsageError);
  EXPECT_THROW(resolve_netns("inode:abc"), UsageError);
  EXPECT_THROW(resolve_netns("inode:0"), UsageError);
  EXPECT_THROW(ifindex_in_netns("/proc/self/ns/net", std::string(40, 'x')), UsageError);
}

}  // namespace
}  // namespace pwru
