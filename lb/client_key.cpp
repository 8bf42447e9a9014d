#include "lb/client_key.hpp"

#include <openssl/sha.h>

namespace lb {

ClientKey client_key(std::string_view id) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(id.data()), id.size(), d);
  ClientKey k;
  for (int i = 0; i < 8; ++i) {
    k.hi = (k.hi << 8) | d[i];
    k.lo = (k.lo << 8) | d[8 + i];
  }
  return k;
}

}  // namespace lb
