#include "k8s/url_encode.h"

#include <gtest/gtest.h>

#include <string>

namespace pwru {
namespace {

TEST(UrlEncodeComponent, KeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(url_encode_component("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(url_encode_component(""), "");
}

// What a selector or a continue token may hold must not end its query value
// or its path segment early, nor be read as an encoding of its own.
TEST(UrlEncodeComponent, ReservedCharactersAreEncoded) {
  EXPECT_EQ(url_encode_component("spec.nodeName=n1"), "spec.nodeName%3Dn1");
  EXPECT_EQ(url_encode_component("app.kubernetes.io/name=pwru-agent,tier in (a,b)"),
            "app.kubernetes.io%2Fname%3Dpwru-agent%2Ctier%20in%20%28a%2Cb%29");
  EXPECT_EQ(url_encode_component("a/b?c&d#e"), "a%2Fb%3Fc%26d%23e");
  EXPECT_EQ(url_encode_component("100%+1"), "100%25%2B1");
  EXPECT_EQ(url_encode_component("!*'();:@$[]"), "%21%2A%27%28%29%3B%3A%40%24%5B%5D");
  EXPECT_EQ(url_encode_component("eyJ2Ijoi=="), "eyJ2Ijoi%3D%3D");  // a continue token's base64 padding
}

TEST(UrlEncodeComponent, ControlBytesAndUtf8AreEncodedByteByByte) {
  EXPECT_EQ(url_encode_component("a b\r\n\t"), "a%20b%0D%0A%09");
  EXPECT_EQ(url_encode_component(std::string("a\0b", 3)), "a%00b");
  EXPECT_EQ(url_encode_component("n\xc3\xb6"
                                 "de-\xe2\x82\xac"),
            "n%C3%B6de-%E2%82%AC");  // "nöde-€"
  EXPECT_EQ(url_encode_component("\xff"), "%FF");
}

}  // namespace
}  // namespace pwru
