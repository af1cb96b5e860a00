// Interface lookups inside a netns: setns() needs CAP_SYS_ADMIN, so root tier.
#include <gtest/gtest.h>

#include "common/error.h"
#include "netns/netns.h"
#include "netns_fixture.h"

namespace pwru {
namespace {

TEST(NetnsRoot, FindsInterfacesInsideOtherNamespaces) {
  EXPECT_EQ(ifindex_in_netns("/proc/self/ns/net", "lo"), 1u);
  testing::NetnsPair net(9);
  EXPECT_EQ(ifindex_in_netns(net.path_b(), "lo"), 1u);
  EXPECT_EQ(ifindex_in_netns(net.path_b(), net.veth_b), net.ifindex_b);
  EXPECT_THROW(ifindex_in_netns(net.path_b(), net.veth_a), UsageError);  // lives in ns_a
  EXPECT_THROW(ifindex_in_netns("/proc/self/ns/net", "no-such-if0"), UsageError);
  // A netns known only by inode is found through /var/run/netns.
  const NetnsRef ref = resolve_netns("inode:" + std::to_string(net.inode_b));
  EXPECT_EQ(ref.path, net.path_b());
}

}  // namespace
}  // namespace pwru
