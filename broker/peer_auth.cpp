#include "broker/peer_auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <vector>

namespace broker::peer {

bool random_bytes(uint8_t* out, size_t n) {
  return RAND_bytes(out, int(n)) == 1;
}

Proof make_proof(std::string_view secret, bool dialer, std::string_view from, std::string_view to,
                 const Nonce& to_nonce, const Nonce& from_nonce) {
  // label | role | len(from) from | len(to) to | to's nonce | from's nonce
  static constexpr std::string_view kLabel = "mqttlb-cluster-v1";
  std::vector<uint8_t> m(kLabel.begin(), kLabel.end());
  m.push_back(dialer ? 'D' : 'A');
  for (std::string_view s : {from, to}) {
    m.push_back(uint8_t(s.size() >> 8));
    m.push_back(uint8_t(s.size()));
    m.insert(m.end(), s.begin(), s.end());
  }
  m.insert(m.end(), to_nonce.begin(), to_nonce.end());
  m.insert(m.end(), from_nonce.begin(), from_nonce.end());
  Proof p{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()), m.data(), m.size(), p.data(), &len);
  return p;
}

bool same_proof(const Proof& a, const Proof& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace broker::peer
