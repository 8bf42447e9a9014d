// TLS 1.3 record protection after the handshake (RFC 8446 §5), for a session
// whose handshake OpenSSL completed: what kernel TLS does, done here, so an
// idle session keeps about 250 bytes of key state instead of OpenSSL's SSL
// object (about 14 KB; docs/tls.md "Record layer handover").
//
// One Records is one connection's two directions: `read` (the peer's traffic
// secret) and `write` (ours), each with the sequence number of its next
// record. Pure: bytes in, bytes out, no I/O, no exceptions, no allocation but
// the caller's output vector. The AEADs are OpenSSL's (EVP), from a cache
// per thread that re-keys only when another connection's key comes by.
//
// What open() accepts after the handshake, and nothing else:
//  - application data (also empty records), with any padding (§5.4);
//  - close_notify (then closed()); user_canceled is ignored (§6.1);
//  - KeyUpdate (§4.6.3), also fragmented over records: the read keys move
//    on; update_requested sets a pending answer that seal_data() sends first
//    (requests coalesce: a peer that floods them gets one answer).
// Any other alert from the peer fails the connection without an answer.
// Everything else fails it with a fatal alert appended to `out` (sealed):
// a bad tag (bad_record_mac), a record over 2^14+256 bytes or a plaintext
// over 2^14 (record_overflow), an unprotected record or change_cipher_spec,
// a record without a content type, any post-handshake message but KeyUpdate,
// a handshake fragment interleaved with another type, bytes after a
// KeyUpdate in its record (§5.1: key changes fall on record boundaries), a
// malformed KeyUpdate or alert (decode_error, illegal_parameter).
// After a failure every call does nothing and returns failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tls {

enum class Aead : uint8_t { Aes128GcmSha256, Aes256GcmSha384, Chacha20Poly1305Sha256 };

class Records {
 public:
  static constexpr size_t kHeader = 5;
  static constexpr size_t kTag = 16;
  static constexpr size_t kMaxPlain = 16384;                 // 2^14 (§5.1)
  static constexpr size_t kMaxCiphertext = kMaxPlain + 256;  // TLSCiphertext.length (§5.2)
  static constexpr uint8_t kTypeAlert = 21, kTypeHandshake = 22, kTypeData = 23;

  struct Direction {
    std::span<const uint8_t> secret;  // the traffic secret: 32 bytes (SHA-256) or 48 (SHA-384)
    uint64_t seq = 0;                 // sequence number of the next record
  };

  Records() = default;
  ~Records();  // cleanses the keys
  Records(const Records&) = delete;
  Records& operator=(const Records&) = delete;

  // Derives both directions' keys. False (and failed()) when a secret's
  // length does not fit the suite or the crypto library refuses.
  bool init(Aead aead, Direction read, Direction write);

  struct Read {
    enum class Kind : uint8_t {
      NeedMore,  // no whole record at the start of `in`
      Record,    // a record was consumed that gives the caller nothing
      Data,      // application data: in[offset, offset + length), decrypted in place
      Closed,    // close_notify: nothing more will be read
      Failed,    // see error(); an alert for the peer may have been appended to out
    } kind = Kind::NeedMore;
    size_t consumed = 0;  // bytes of `in` the record took (Record, Data, Closed)
    size_t offset = 0, length = 0;
  };
  // Opens the record at the start of `in`, decrypting it in place.
  Read open(std::span<uint8_t> in, std::vector<uint8_t>& out);

  // Application data, split into records of at most kMaxPlain bytes and
  // appended to out, after our KeyUpdate when the peer asked for one.
  bool seal_data(std::span<const uint8_t> in, std::vector<uint8_t>& out);
  // One record of content `type` holding `in` and `padding` zeros, as long
  // as the wire allows (kMaxCiphertext), which is more than a compliant
  // plaintext (kMaxPlain + 1 with type and padding): tests act as a hostile
  // peer with it. seal_data() and the alerts stay within the limits.
  bool seal(uint8_t type, std::span<const uint8_t> in, std::vector<uint8_t>& out,
            size_t padding = 0);
  // An alert record (close_notify: level 1, description 0).
  bool seal_alert(uint8_t level, uint8_t description, std::vector<uint8_t>& out);
  // Our own KeyUpdate; request asks the peer to update too. Write keys move on.
  bool send_key_update(bool request, std::vector<uint8_t>& out);
  // Moves the write keys on without sending anything: for a test peer that
  // sent its KeyUpdate by hand (seal(), e.g. fragmented).
  bool next_write_keys() { return next_secret(w_); }

  bool failed() const { return why_ != nullptr; }
  bool closed() const { return closed_; }
  const char* error() const { return why_ ? why_ : ""; }
  // The alert the peer sent that ended the connection, or -1.
  int peer_alert() const { return peer_alert_; }
  uint64_t read_seq() const { return r_.seq; }
  uint64_t write_seq() const { return w_.seq; }

 private:
  struct Keys {
    uint8_t secret[48];
    uint8_t key[32];
    uint8_t iv[12];
    uint64_t seq = 0;
    uint64_t id = 0;  // names this key in the per-thread AEAD cache (never reused)
  };
  bool derive(Keys& k);       // key and iv from secret; a new id
  bool next_secret(Keys& k);  // secret_{n+1} (§7.2), then derive; seq back to 0
  bool crypt(bool enc, Keys& k, const uint8_t* header, uint8_t* data, size_t n, uint8_t* tag);
  Read fail(uint8_t alert, const char* why, std::vector<uint8_t>& out);
  Read handshake(const uint8_t* p, size_t n, size_t consumed, std::vector<uint8_t>& out);

  Keys r_, w_;
  Aead aead_ = Aead::Aes128GcmSha256;
  uint8_t hash_len_ = 0;
  uint8_t key_len_ = 0;
  uint8_t hs_[5] = {};  // a KeyUpdate being reassembled
  uint8_t hs_len_ = 0;
  bool answer_update_ = false;  // the peer asked for our KeyUpdate
  bool closed_ = false;
  int16_t peer_alert_ = -1;
  const char* why_ = nullptr;
};

}  // namespace tls
