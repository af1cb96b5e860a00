#include "session/skb_pseudonym.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>

#include "common/error.h"

namespace pwru {

SkbPseudonym::SkbPseudonym() {
  if (RAND_bytes(key_.data(), static_cast<int>(key_.size())) != 1)
    throw SystemError("cannot draw a random key for the trace's skb pseudonyms", EIO);
}

std::uint64_t SkbPseudonym::operator()(std::uint64_t skb_addr) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(&skb_addr),
       sizeof skb_addr, digest, &length);
  std::uint64_t out = 0;
  std::memcpy(&out, digest, sizeof out);
  // Never 0: pwru prints 0 for "no skb".
  return out | 1;
}

}  // namespace pwru
