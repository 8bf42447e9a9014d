#include "tls/tickets.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>

namespace tls {

namespace {
bool init(const unsigned char* aes, const unsigned char* hmac, unsigned char* iv,
          EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(hmac), 32),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  int ok = enc ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, aes, iv)
               : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, aes, iv);
  return ok == 1 && EVP_MAC_CTX_set_params(mac, params) == 1;
}
}  // namespace

TicketKeys::TicketKeys() {
  std::lock_guard<std::mutex> g(mu_);
  fresh(current_, 0);
}

bool TicketKeys::fresh(Key& k, int64_t now_s) {
  k.valid = RAND_bytes(k.name, sizeof k.name) == 1 && RAND_bytes(k.aes, sizeof k.aes) == 1 &&
            RAND_bytes(k.hmac, sizeof k.hmac) == 1;
  k.created_s = now_s;
  return k.valid;
}

void TicketKeys::rotate(int64_t now_s) {
  std::lock_guard<std::mutex> g(mu_);
  previous_ = current_;
  fresh(current_, now_s);
}

int TicketKeys::use(unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                    EVP_MAC_CTX* mac, int enc, int64_t now_s) {
  Key k;
  int result = 1;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (current_.created_s == 0) current_.created_s = now_s;  // first use starts the period
    if (now_s - current_.created_s >= kRotationS) {
      previous_ = current_;
      fresh(current_, now_s);
    }
    if (previous_.valid && now_s - previous_.created_s >= 2 * kRotationS) {
      OPENSSL_cleanse(&previous_, sizeof previous_);
      previous_.valid = false;
    }
    if (enc) {
      k = current_;
    } else if (current_.valid && std::memcmp(name, current_.name, 16) == 0) {
      k = current_;
    } else if (previous_.valid && std::memcmp(name, previous_.name, 16) == 0) {
      k = previous_;
      result = 2;  // still good: renew it under the current key
    } else {
      return 0;  // unknown (rotated out, or another process): full handshake
    }
  }
  bool ok = k.valid;
  if (ok && enc) {
    std::memcpy(name, k.name, 16);
    ok = RAND_bytes(iv, 16) == 1;
  }
  ok = ok && init(k.aes, k.hmac, iv, cipher, mac, enc);
  OPENSSL_cleanse(&k, sizeof k);
  if (!ok) return enc ? -1 : 0;
  return result;
}

}  // namespace tls
