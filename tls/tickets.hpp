// Session-ticket keys of a TLS listener: a small key ring instead of
// OpenSSL's one fixed key per SSL_CTX.
//
// The current key encrypts new tickets and is replaced every kRotationS; the
// key it replaces is kept one more period for decryption only (a ticket it
// sealed still resumes, and the client gets a fresh ticket under the new key).
// So a stolen or leaked key opens at most two periods of sessions, and
// nothing survives a restart. A reload shares the ring with the new SSL_CTX
// only when the listener's security policy is unchanged (tls::Context's
// session id context); otherwise old tickets cannot resume.
//
// Thread-safe: the ticket callback runs on every worker that shares the SSL_CTX.
#pragma once

#include <cstdint>
#include <mutex>

typedef struct ssl_st SSL;
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;

namespace tls {

class TicketKeys {
 public:
  static constexpr int64_t kRotationS = 3600;

  TicketKeys();
  // OpenSSL's SSL_CTX_set_tlsext_ticket_key_evp_cb contract: enc=1 seals a new
  // ticket (returns 1, or -1 on error); enc=0 opens one: 0 unknown key (full
  // handshake), 1 ok, 2 ok but issue a new ticket (sealed by an older key).
  int use(unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac,
          int enc, int64_t now_s);
  // Starts a new period now (tests, and operators' forced rotation).
  void rotate(int64_t now_s);

 private:
  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    int64_t created_s = 0;
    bool valid = false;
  };
  static bool fresh(Key& k, int64_t now_s);

  std::mutex mu_;
  Key current_, previous_;
};

}  // namespace tls
