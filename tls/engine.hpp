// One TLS connection over in-memory buffers: OpenSSL never sees a socket.
//
// The caller moves bytes between the socket and the engine:
//   socket read  → feed_ciphertext() → read_plaintext() → application
//   application  → write_plaintext() → take_ciphertext() → socket write
// After EVERY call, if want_write() is true, take_ciphertext() and send it:
// handshake messages, alerts, session tickets and close_notify appear there.
//
// Thread: one Engine belongs to one thread (its loop). No exceptions, no I/O,
// no blocking. Memory (see docs/tls.md "Buffering limits"):
//  - unconsumed ciphertext held by the engine is bounded by
//    Limits::max_ciphertext_in: feed_ciphertext() accepts only what fits. If the
//    caller drains read_plaintext() after every feed, one feed of up to
//    max_ciphertext_in - kMaxRecordSize bytes is always accepted whole;
//  - pending outgoing ciphertext: write_plaintext() accepts nothing once
//    pending_ciphertext() reaches Limits::max_ciphertext_out, so pending output
//    never exceeds that plus one call's record expansion;
//  - plaintext written before the handshake completes is kept (at most
//    max_ciphertext_out bytes) and sent as soon as it completes;
//  - an idle engine holds no buffers: ours are released when drained, and
//    OpenSSL's with SSL_MODE_RELEASE_BUFFERS.
//
// Handover (server role, a context with handover on; docs/tls.md "Record
// layer handover"): after allow_handover(), a TLS 1.3 session with AES-GCM or
// ChaCha20-Poly1305 moves from OpenSSL to tls/records.hpp at the first moment
// OpenSSL holds no partial record, and its SSL object (about 14 KB) is freed.
// The traffic secrets come from OpenSSL's key log callback, the sequence
// numbers from counting records in its message callback, both during the
// handshake. A session that saw a KeyUpdate before the handover, or TLS 1.2,
// stays with OpenSSL. Nothing changes for the caller but what OpenSSL alone
// knew: after the handover peer_identity() and sessions are empty; protocol(),
// cipher(), alpn(), peer_subject(), peer_verified() keep their values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tls/context.hpp"

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
typedef struct bio_st BIO;

namespace tls {

// A reference-counted handle on an OpenSSL session (for client resumption).
// Copying takes another reference; destruction drops one. Empty = no session.
class Session {
 public:
  Session() = default;
  // Adopts one reference the caller already owns (e.g. from SSL_get1_session).
  static Session adopt(SSL_SESSION* s) { return Session(s); }
  // Takes a new reference on s (which the caller keeps owning).
  static Session ref(SSL_SESSION* s);
  Session(const Session& o);
  Session& operator=(const Session& o);
  Session(Session&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  Session& operator=(Session&& o) noexcept;
  ~Session();

  explicit operator bool() const { return s_ != nullptr; }
  SSL_SESSION* get() const { return s_; }
  bool resumable() const;  // present, not expired, usable for a new handshake

 private:
  explicit Session(SSL_SESSION* s) : s_(s) {}
  SSL_SESSION* s_ = nullptr;
};

class Engine {
 public:
  // Largest TLS record on the wire (16 KiB plaintext + header + expansion).
  static constexpr size_t kMaxRecordSize = 16384 + 2048 + 5;

  struct Limits {
    size_t max_ciphertext_in = 128 * 1024;  // >= 2 * kMaxRecordSize
    size_t max_ciphertext_out = 64 * 1024;
  };

  // sni (client only): the server name to send in SNI and, when the context
  // verifies, to check against the certificate (a DNS name, or an IP literal
  // which is checked against the certificate's IP SANs and not sent as SNI).
  // Empty: no SNI, and only the chain is verified.
  // A client engine starts its handshake on the first call that moves bytes
  // (want_write() is already true: the ClientHello is ready to be taken).
  Engine(Context& ctx, Role role, std::string_view sni = {});
  Engine(Context& ctx, Role role, std::string_view sni, Limits limits);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Bytes read from the socket. Returns how many were accepted (see limits);
  // drives the handshake. Returns 0 after failed().
  size_t feed_ciphertext(std::span<const uint8_t> in);

  // Decrypts into out; returns the number of bytes written (0: nothing
  // available yet, or peer_closed(), or failed()). Call until it returns 0
  // after each feed: it also processes post-handshake messages (tickets).
  size_t read_plaintext(std::span<uint8_t> out);

  // Application bytes to send. Returns how many were accepted (all, some or
  // none); accepted bytes are the engine's, the rest stay the caller's to
  // offer again after take_ciphertext() has drained the output. Returns 0
  // after shutdown() or failed().
  size_t write_plaintext(std::span<const uint8_t> in);

  // Outgoing ciphertext. The vector form appends everything pending to out
  // (O(1) when out is empty: the buffer is handed over, so a write request can
  // own it until its callback). The span form copies up to out.size() bytes.
  // Both return the number of bytes taken.
  size_t take_ciphertext(std::vector<uint8_t>& out);
  size_t take_ciphertext(std::span<uint8_t> out);
  size_t pending_ciphertext() const { return out_.size() - out_off_; }
  bool want_write() const;  // ciphertext is waiting to be taken (or the ClientHello)

  bool handshake_done() const { return handshake_done_; }
  bool failed() const { return failed_; }
  const std::string& error() const { return error_; }  // why it failed; empty if not

  // Sends close_notify (take_ciphertext() then write it, then close the
  // socket; waiting for the peer's close_notify is not required). Idempotent.
  // Plaintext not yet accepted is dropped; accepted plaintext is sent first.
  void shutdown();
  bool shutdown_sent() const { return shutdown_sent_; }
  // The peer sent close_notify: no more plaintext will come. (A TCP EOF
  // without it is a truncation the caller detects: EOF && !peer_closed().)
  bool peer_closed() const { return peer_closed_; }

  // Client resumption: set before the handshake starts (before the first
  // take/feed/write); get after the handshake and after read_plaintext() has
  // run (TLS 1.3 tickets arrive after the handshake).
  bool set_session(const Session& s);
  Session get_session() const;
  bool session_reused() const;

  // After the handshake: negotiated ALPN protocol (empty if none), protocol
  // version ("TLSv1.3"), cipher name, peer certificate subject (empty if none).
  std::string alpn() const;
  std::string protocol() const;
  std::string cipher() const;
  std::string peer_subject() const;
  bool peer_verified() const;  // a peer certificate was presented and verified
  // The verified peer certificate's identity: its subject CN, its first
  // subjectAltName DNS name, or its first URI; empty when there is no
  // verified certificate or no such field.
  enum class IdentityFrom : uint8_t { Cn, SanDns, SanUri };
  std::string peer_identity(IdentityFrom from) const;

  // Server role: the caller needs nothing more that only OpenSSL knows (the
  // peer's certificate fields): hand the record layer over as soon as
  // it can be (see the top of this file). Does nothing on a context without
  // handover, or for a session that cannot be handed over.
  void allow_handover();
  bool handed_over() const;  // records are ours now; native() is null
  // Asked for and still possible: waits for OpenSSL's partial record.
  bool handover_pending() const;

  Role role() const { return role_; }
  SSL* native() const { return ssl_; }  // null after the handover

  struct Handover;  // engine.cpp

 private:
  friend struct EngineBio;
  friend struct EngineCallbacks;
  void try_handover();
  void drop_handover();                         // this session stays with OpenSSL
  size_t read_records(std::span<uint8_t> out);  // after the handover
  void records_failed(std::string_view what);
  void drive();  // advances the handshake; flushes early plaintext when it completes
  void start();
  void fail(std::string_view what, int ret);
  size_t write_now(std::span<const uint8_t> in);
  void release_drained_input();

  SSL* ssl_ = nullptr;
  BIO* bio_ = nullptr;  // our BIO (see engine.cpp): reads in_, writes out_
  Role role_;
  Limits limits_;
  std::vector<uint8_t> in_;         // ciphertext fed but not yet consumed by OpenSSL
  size_t in_off_ = 0;               // in_[in_off_..] is unconsumed
  std::vector<uint8_t> out_;        // ciphertext produced, not yet taken
  size_t out_off_ = 0;              // out_[out_off_..] is pending
  std::vector<uint8_t> early_;      // plaintext accepted before the handshake completed
  std::unique_ptr<Handover> hand_;  // server engines of a handover context, until it cannot be
  bool started_ = false;
  bool handshake_done_ = false;
  bool failed_ = false;
  bool shutdown_sent_ = false;
  bool peer_closed_ = false;
  std::string error_;
};

namespace detail {
// Server contexts with handover: OpenSSL's key log callback, which hands the
// TLS 1.3 traffic secrets to the engine of each connection (never logged).
void install_handover(SSL_CTX* ctx);
}  // namespace detail

}  // namespace tls
