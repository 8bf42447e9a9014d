#include "tls/records.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <atomic>
#include <cstring>

namespace tls {
namespace {

// Alert descriptions (RFC 8446 §6).
constexpr uint8_t kUnexpectedMessage = 10, kBadRecordMac = 20, kRecordOverflow = 22,
                  kIllegalParameter = 47, kDecodeError = 50, kInternalError = 80,
                  kUserCanceled = 90;
constexpr uint8_t kKeyUpdate = 24;  // HandshakeType key_update

std::atomic<uint64_t> g_key_ids{0};

const char* cipher_name(Aead a) {
  switch (a) {
    case Aead::Aes128GcmSha256:
      return "AES-128-GCM";
    case Aead::Aes256GcmSha384:
      return "AES-256-GCM";
    default:
      return "ChaCha20-Poly1305";
  }
}

// One EVP context per AEAD per thread, fetched once (an implicit fetch per
// record would cost a lock and a name lookup). `key_id` is the key loaded in
// it: the same connection's next record only sets the nonce.
struct AeadSlot {
  EVP_CIPHER* cipher = nullptr;
  EVP_CIPHER_CTX* ctx = nullptr;
  uint64_t key_id = 0;
  bool broken = false;
};

struct AeadCache {
  AeadSlot slot[3];
  ~AeadCache() {
    for (auto& s : slot) {
      EVP_CIPHER_CTX_free(s.ctx);
      EVP_CIPHER_free(s.cipher);
    }
  }
};

thread_local AeadCache t_aead;

AeadSlot* aead_slot(Aead a) {
  AeadSlot& s = t_aead.slot[static_cast<int>(a)];
  if (s.ctx) return &s;
  if (s.broken) return nullptr;
  s.cipher = EVP_CIPHER_fetch(nullptr, cipher_name(a), nullptr);
  s.ctx = s.cipher ? EVP_CIPHER_CTX_new() : nullptr;
  if (!s.ctx || EVP_CipherInit_ex(s.ctx, s.cipher, nullptr, nullptr, nullptr, 1) != 1) {
    EVP_CIPHER_CTX_free(s.ctx);
    EVP_CIPHER_free(s.cipher);
    s = AeadSlot{};
    s.broken = true;
    return nullptr;
  }
  return &s;
}

// SHA-256 / SHA-384, fetched once per thread (HMAC() would fetch its MAC
// and digest by name on every call: about 10 us per handover).
struct DigestCache {
  EVP_MD* md[2] = {nullptr, nullptr};
  EVP_MD_CTX* ctx = nullptr;
  ~DigestCache() {
    EVP_MD_CTX_free(ctx);
    for (EVP_MD* m : md) EVP_MD_free(m);
  }
};

thread_local DigestCache t_digest;

const EVP_MD* digest(size_t hash_len) {
  EVP_MD*& m = t_digest.md[hash_len == 48 ? 1 : 0];
  if (!m) m = EVP_MD_fetch(nullptr, hash_len == 48 ? "SHA2-384" : "SHA2-256", nullptr);
  if (!t_digest.ctx) t_digest.ctx = EVP_MD_CTX_new();
  return t_digest.ctx ? m : nullptr;
}

// H(key XOR pad || msg) into out: either half of HMAC (RFC 2104).
bool pad_hash(const EVP_MD* md, const uint8_t* key, size_t block, uint8_t pad, const uint8_t* msg,
              size_t len, uint8_t* out) {
  uint8_t k[128];
  for (size_t i = 0; i < block; ++i) k[i] = key[i] ^ pad;
  EVP_MD_CTX* c = t_digest.ctx;
  bool ok = EVP_DigestInit_ex2(c, md, nullptr) == 1 && EVP_DigestUpdate(c, k, block) == 1 &&
            EVP_DigestUpdate(c, msg, len) == 1 && EVP_DigestFinal_ex(c, out, nullptr) == 1;
  OPENSSL_cleanse(k, sizeof k);
  return ok;
}

// HKDF-Expand-Label(secret, label, "", len) (§7.1); len <= the hash length,
// so HKDF-Expand is a single HMAC block: T(1) = HMAC(secret, info || 0x01).
bool expand_label(size_t hash_len, const uint8_t* secret, const char* label, uint8_t* out,
                  size_t len) {
  const EVP_MD* md = digest(hash_len);
  uint8_t info[2 + 1 + 6 + 32 + 1 + 1];
  size_t llen = std::strlen(label);
  if (!md || llen > 32 || len > hash_len) return false;
  size_t n = 0;
  info[n++] = static_cast<uint8_t>(len >> 8);
  info[n++] = static_cast<uint8_t>(len);
  info[n++] = static_cast<uint8_t>(6 + llen);
  std::memcpy(info + n, "tls13 ", 6);
  n += 6;
  std::memcpy(info + n, label, llen);
  n += llen;
  info[n++] = 0;  // empty context
  info[n++] = 1;  // HKDF-Expand's block counter
  const size_t block = static_cast<size_t>(EVP_MD_get_block_size(md));  // 64 or 128
  uint8_t key[128] = {};  // the secret (32 or 48 bytes) zero-padded to the block
  uint8_t inner[EVP_MAX_MD_SIZE], outer[EVP_MAX_MD_SIZE];
  std::memcpy(key, secret, hash_len);
  bool ok = block <= sizeof key && hash_len <= block &&
            pad_hash(md, key, block, 0x36, info, n, inner) &&
            pad_hash(md, key, block, 0x5c, inner, hash_len, outer);
  if (ok) std::memcpy(out, outer, len);
  OPENSSL_cleanse(key, sizeof key);
  OPENSSL_cleanse(inner, sizeof inner);
  OPENSSL_cleanse(outer, sizeof outer);
  return ok;
}

}  // namespace

Records::~Records() {
  OPENSSL_cleanse(&r_, sizeof r_);
  OPENSSL_cleanse(&w_, sizeof w_);
}

bool Records::init(Aead aead, Direction read, Direction write) {
  aead_ = aead;
  hash_len_ = aead == Aead::Aes256GcmSha384 ? 48 : 32;
  key_len_ = aead == Aead::Aes128GcmSha256 ? 16 : 32;
  if (read.secret.size() != hash_len_ || write.secret.size() != hash_len_) {
    why_ = "traffic secret of the wrong length for the cipher suite";
    return false;
  }
  std::memcpy(r_.secret, read.secret.data(), hash_len_);
  std::memcpy(w_.secret, write.secret.data(), hash_len_);
  r_.seq = read.seq;
  w_.seq = write.seq;
  if (!derive(r_) || !derive(w_) || !aead_slot(aead_)) {
    why_ = "cannot derive the record keys";
    return false;
  }
  return true;
}

bool Records::derive(Keys& k) {
  k.id = ++g_key_ids;
  return expand_label(hash_len_, k.secret, "key", k.key, key_len_) &&
         expand_label(hash_len_, k.secret, "iv", k.iv, sizeof k.iv);
}

bool Records::next_secret(Keys& k) {
  uint8_t next[48];
  if (!expand_label(hash_len_, k.secret, "traffic upd", next, hash_len_)) return false;
  std::memcpy(k.secret, next, hash_len_);
  OPENSSL_cleanse(next, sizeof next);
  k.seq = 0;
  return derive(k);
}

// AEAD over data[0, n) in place with header as additional data (§5.2); the
// nonce is the iv XOR the left-padded sequence number (§5.3). Decrypting,
// tag is checked; encrypting, it is written.
bool Records::crypt(bool enc, Keys& k, const uint8_t* header, uint8_t* data, size_t n,
                    uint8_t* tag) {
  AeadSlot* s = aead_slot(aead_);
  if (!s) return false;
  uint8_t nonce[12];
  std::memcpy(nonce, k.iv, sizeof nonce);
  for (int i = 0; i < 8; ++i) nonce[11 - i] ^= static_cast<uint8_t>(k.seq >> (8 * i));
  bool same_key = s->key_id == k.id;
  s->key_id = 0;  // until this record went through: a failure leaves it unknown
  int len = 0;
  if (EVP_CipherInit_ex(s->ctx, nullptr, nullptr, same_key ? nullptr : k.key, nonce, enc ? 1 : 0) !=
          1 ||
      EVP_CipherUpdate(s->ctx, nullptr, &len, header, static_cast<int>(kHeader)) != 1)
    return false;
  if (n > 0 && EVP_CipherUpdate(s->ctx, data, &len, data, static_cast<int>(n)) != 1) return false;
  if (!enc && EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTag), tag) != 1)
    return false;
  int fin = 0;
  if (EVP_CipherFinal_ex(s->ctx, data + n, &fin) != 1) return false;  // decrypting: a bad tag
  if (enc && EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTag), tag) != 1)
    return false;
  s->key_id = k.id;
  return true;
}

bool Records::seal(uint8_t type, std::span<const uint8_t> in, std::vector<uint8_t>& out,
                   size_t padding) {
  if (failed()) return false;
  if (in.size() + 1 + padding > kMaxCiphertext - kTag || w_.seq == UINT64_MAX) {
    why_ = "record to seal out of bounds";
    return false;
  }
  size_t inner = in.size() + 1 + padding;
  size_t len = inner + kTag;
  size_t at = out.size();
  out.resize(at + kHeader + len);
  uint8_t* p = out.data() + at;
  p[0] = kTypeData;  // opaque_type: every protected record says application_data
  p[1] = 0x03;
  p[2] = 0x03;
  p[3] = static_cast<uint8_t>(len >> 8);
  p[4] = static_cast<uint8_t>(len);
  if (!in.empty()) std::memcpy(p + kHeader, in.data(), in.size());
  p[kHeader + in.size()] = type;
  std::memset(p + kHeader + in.size() + 1, 0, padding);
  if (!crypt(true, w_, p, p + kHeader, inner, p + kHeader + inner)) {
    out.resize(at);
    why_ = "record encryption failed";
    return false;
  }
  ++w_.seq;
  return true;
}

bool Records::send_key_update(bool request, std::vector<uint8_t>& out) {
  const uint8_t msg[5] = {kKeyUpdate, 0, 0, 1, static_cast<uint8_t>(request ? 1 : 0)};
  if (!seal(kTypeHandshake, msg, out)) return false;
  if (!next_secret(w_)) {
    why_ = "cannot derive the next write keys";
    return false;
  }
  return true;
}

bool Records::seal_alert(uint8_t level, uint8_t description, std::vector<uint8_t>& out) {
  const uint8_t alert[2] = {level, description};
  return seal(kTypeAlert, alert, out);
}

bool Records::seal_data(std::span<const uint8_t> in, std::vector<uint8_t>& out) {
  if (failed()) return false;
  if (answer_update_ && !in.empty()) {  // before our next application data (§4.6.3)
    answer_update_ = false;
    if (!send_key_update(false, out)) return false;
  }
  while (!in.empty()) {
    size_t k = in.size() < kMaxPlain ? in.size() : kMaxPlain;
    if (!seal(kTypeData, in.first(k), out)) return false;
    in = in.subspan(k);
  }
  return true;
}

Records::Read Records::fail(uint8_t alert, const char* why, std::vector<uint8_t>& out) {
  if (!failed()) {
    if (alert != 0) seal_alert(2, alert, out);  // fatal; best effort
    why_ = why;
  }
  Read r;
  r.kind = Read::Kind::Failed;
  return r;
}

Records::Read Records::open(std::span<uint8_t> in, std::vector<uint8_t>& out) {
  Read r;
  if (failed()) {
    r.kind = Read::Kind::Failed;
    return r;
  }
  if (closed_) {
    r.kind = Read::Kind::Closed;
    return r;
  }
  if (in.size() < kHeader) return r;
  const uint8_t type = in[0];
  const size_t len = static_cast<size_t>(in[3]) << 8 | in[4];
  if (type != kTypeData)
    return fail(kUnexpectedMessage,
                type == 20   ? "change_cipher_spec after the handshake"
                : type == 21 ? "unprotected alert after the handshake"
                             : "not a protected TLS record",
                out);
  if (len > kMaxCiphertext) return fail(kRecordOverflow, "record longer than 2^14+256 bytes", out);
  if (len < kTag + 1) return fail(kBadRecordMac, "record too short to be protected", out);
  if (in.size() < kHeader + len) return r;
  if (r_.seq == UINT64_MAX) return fail(kInternalError, "read sequence number exhausted", out);
  uint8_t* body = in.data() + kHeader;
  size_t n = len - kTag;
  if (!crypt(false, r_, in.data(), body, n, body + n))
    return fail(kBadRecordMac, "record authentication failed (bad_record_mac)", out);
  ++r_.seq;
  // The whole TLSInnerPlaintext, padding included, is at most 2^14 + 1 (§5.4).
  if (n > kMaxPlain + 1) return fail(kRecordOverflow, "plaintext longer than 2^14 bytes", out);
  while (n > 0 && body[n - 1] == 0) --n;  // padding
  if (n == 0) return fail(kUnexpectedMessage, "protected record without a content type", out);
  const uint8_t inner = body[--n];
  r.consumed = kHeader + len;
  if (hs_len_ > 0 && inner != kTypeHandshake)
    return fail(kUnexpectedMessage, "handshake message interleaved with another record type", out);
  switch (inner) {
    case kTypeData:
      r.kind = n == 0 ? Read::Kind::Record : Read::Kind::Data;
      r.offset = kHeader;
      r.length = n;
      return r;
    case kTypeAlert:
      if (n != 2) return fail(kDecodeError, "malformed alert", out);
      if (body[1] == 0) {  // close_notify
        closed_ = true;
        r.kind = Read::Kind::Closed;
        return r;
      }
      if (body[1] == kUserCanceled) {
        r.kind = Read::Kind::Record;
        return r;
      }
      peer_alert_ = body[1];
      return fail(0, "the peer sent a fatal alert", out);
    case kTypeHandshake:
      return handshake(body, n, r.consumed, out);
    default:
      return fail(kUnexpectedMessage, "unknown record content type", out);
  }
}

// Post-handshake messages from a client: only KeyUpdate (no tickets, no
// post-handshake authentication: we never ask for it).
Records::Read Records::handshake(const uint8_t* p, size_t n, size_t consumed,
                                 std::vector<uint8_t>& out) {
  if (n == 0) return fail(kUnexpectedMessage, "empty handshake record", out);
  for (size_t i = 0; i < n; ++i) {
    if (hs_len_ == sizeof hs_)
      return fail(kUnexpectedMessage, "data after a KeyUpdate in its record", out);
    hs_[hs_len_++] = p[i];
    if (hs_len_ == 1 && hs_[0] != kKeyUpdate)
      return fail(kUnexpectedMessage, "post-handshake message other than KeyUpdate", out);
    if (hs_len_ == 4 && (hs_[1] != 0 || hs_[2] != 0 || hs_[3] != 1))
      return fail(kDecodeError, "malformed KeyUpdate", out);
    if (hs_len_ == 5 && hs_[4] > 1) return fail(kIllegalParameter, "bad KeyUpdate request", out);
  }
  Read r;
  r.kind = Read::Kind::Record;
  r.consumed = consumed;
  if (hs_len_ < sizeof hs_) return r;  // the rest comes in the next record
  hs_len_ = 0;
  if (!next_secret(r_)) return fail(kInternalError, "cannot derive the next read keys", out);
  if (hs_[4] == 1) answer_update_ = true;
  return r;
}

}  // namespace tls
