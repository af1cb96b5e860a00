#include "enrich/ksyms.h"

#include <gtest/gtest.h>

#include <sstream>

namespace pwru {
namespace {

TEST(Ksyms, NearestTextSymbolIncludingModules) {
  std::istringstream in(
      "ffffffff81000000 T _stext\n"
      "ffffffff81100000 t ip_rcv\n"
      "ffffffff81100400 D some_data\n"
      "ffffffff81100800 T ip_rcv_finish\n"
      "ffffffffc0a01000 t veth_xmit\t[veth]\n"
      "garbage line\n");
  const Ksyms k = Ksyms::parse(in);
  EXPECT_EQ(k.size(), 4u);
  EXPECT_EQ(k.nearest(0xffffffff81100010), "ip_rcv");
  // Data symbols never capture a code address.
  EXPECT_EQ(k.nearest(0xffffffff81100500), "ip_rcv");
  EXPECT_EQ(k.nearest(0xffffffff81100800), "ip_rcv_finish");
  EXPECT_EQ(k.nearest(0xffffffffc0a01234), "veth_xmit [veth]");
  EXPECT_EQ(k.nearest(0x1000), "");
  EXPECT_TRUE(k.has_function("veth_xmit"));
  EXPECT_TRUE(k.has_function("ip_rcv"));
  EXPECT_FALSE(k.has_function("some_data"));
  EXPECT_FALSE(k.has_function("veth_xmit [veth]"));
  EXPECT_EQ(k.name_or_hex(0x1000), "0x1000");
}

TEST(Ksyms, LastLineWithoutNewlineAndTabsBetweenFields) {
  std::istringstream in("ffffffff81000000\tT\t_stext\n\nffffffffc0a02000 t  nf_nat_ipv4_fn  [nf_nat]");
  const Ksyms k = Ksyms::parse(in);
  EXPECT_EQ(k.size(), 2u);
  EXPECT_EQ(k.nearest(0xffffffffc0a02010), "nf_nat_ipv4_fn [nf_nat]");
  EXPECT_TRUE(k.has_function("nf_nat_ipv4_fn"));
  EXPECT_TRUE(k.has_function("_stext"));
}

TEST(Ksyms, RestrictedKallsymsIsEmptyNotAnError) {
  std::istringstream in("0000000000000000 T _stext\n0000000000000000 t ip_rcv\n");
  const Ksyms k = Ksyms::parse(in);
  EXPECT_TRUE(k.empty());
  EXPECT_EQ(k.name_or_hex(0xffffffff81100010), "0xffffffff81100010");
  EXPECT_TRUE(Ksyms::load("/nonexistent/kallsyms").empty());
}

}  // namespace
}  // namespace pwru
