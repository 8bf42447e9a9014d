// Peer link authentication with the shared secret of --cluster-secret: each
// end proves it knows the secret with an HMAC-SHA256 over both ends' fresh
// nonces, both names and its role, so a proof can be neither replayed (the
// other end's nonce is new every time) nor reflected (role and direction of
// the names are in it). OpenSSL's libcrypto; no state.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "broker/peer_proto.hpp"

namespace broker::peer {

using Nonce = std::array<uint8_t, kNonceSize>;
using Proof = std::array<uint8_t, kProofSize>;

// Cryptographically random bytes (RAND_bytes); false if OpenSSL cannot.
bool random_bytes(uint8_t* out, size_t n);

// What `from` sends `to` on a link `from` dialed (dialer) or accepted.
Proof make_proof(std::string_view secret, bool dialer, std::string_view from, std::string_view to,
                 const Nonce& to_nonce, const Nonce& from_nonce);

// Constant-time comparison.
bool same_proof(const Proof& a, const Proof& b);

}  // namespace broker::peer
