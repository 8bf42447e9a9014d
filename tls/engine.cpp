#include "tls/engine.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "tls/errors.hpp"
#include "tls/records.hpp"

namespace tls {

// ---- Session ----------------------------------------------------------------

Session Session::ref(SSL_SESSION* s) {
  if (s) SSL_SESSION_up_ref(s);
  return Session(s);
}

Session::Session(const Session& o) : s_(o.s_) {
  if (s_) SSL_SESSION_up_ref(s_);
}

Session& Session::operator=(const Session& o) {
  if (this != &o) {
    if (o.s_) SSL_SESSION_up_ref(o.s_);
    if (s_) SSL_SESSION_free(s_);
    s_ = o.s_;
  }
  return *this;
}

Session& Session::operator=(Session&& o) noexcept {
  if (this != &o) {
    if (s_) SSL_SESSION_free(s_);
    s_ = o.s_;
    o.s_ = nullptr;
  }
  return *this;
}

Session::~Session() {
  if (s_) SSL_SESSION_free(s_);
}

bool Session::resumable() const {
  if (!s_ || SSL_SESSION_is_resumable(s_) != 1) return false;
  // Expired sessions would just be ignored by the server; say so up front.
  long age = static_cast<long>(std::time(nullptr)) - static_cast<long>(SSL_SESSION_get_time(s_));
  return age < static_cast<long>(SSL_SESSION_get_timeout(s_));
}

// ---- The engine's BIO ---------------------------------------------------------
// One BIO serves as both read and write BIO of the SSL. Reads take from
// Engine::in_ (bytes fed by the caller) and say "retry" when it is empty;
// writes append to Engine::out_ and never fail. BIO data = the Engine, which
// never moves (not copyable or movable) and frees the SSL (and so the BIO)
// in its destructor.
struct EngineBio {
  static Engine* engine(BIO* b) { return static_cast<Engine*>(BIO_get_data(b)); }

  static int write(BIO* b, const char* data, int len) {
    BIO_clear_retry_flags(b);
    if (len <= 0) return 0;
    auto& out = engine(b)->out_;
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(data),
               reinterpret_cast<const uint8_t*>(data) + len);
    return len;
  }

  static int read(BIO* b, char* buf, int len) {
    BIO_clear_retry_flags(b);
    Engine* e = engine(b);
    size_t avail = e->in_.size() - e->in_off_;
    if (avail == 0) {
      BIO_set_retry_read(b);  // not EOF: "no bytes yet"
      return -1;
    }
    if (len <= 0) return 0;
    size_t n = std::min(avail, static_cast<size_t>(len));
    std::memcpy(buf, e->in_.data() + e->in_off_, n);
    e->in_off_ += n;
    return static_cast<int>(n);
  }

  static long ctrl(BIO* b, int cmd, long, void*) {
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        return 1;
      case BIO_CTRL_PENDING: {
        Engine* e = engine(b);
        return static_cast<long>(e->in_.size() - e->in_off_);
      }
      case BIO_CTRL_WPENDING:
        return 0;  // what we "wrote" is already in out_, nothing is held here
      default:
        return 0;
    }
  }

  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }
  static int destroy(BIO*) { return 1; }

  // Created once per process, never freed (reachable from this static).
  static BIO_METHOD* method() {
    static BIO_METHOD* m = [] {
      BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mqttlb-tls");
      if (bm) {
        BIO_meth_set_write(bm, write);
        BIO_meth_set_read(bm, read);
        BIO_meth_set_ctrl(bm, ctrl);
        BIO_meth_set_create(bm, create);
        BIO_meth_set_destroy(bm, destroy);
      }
      return bm;
    }();
    return m;
  }
};

// ---- Handover ---------------------------------------------------------------
// Captured during the handshake, then (once handed over) the record layer and
// what the engine still answers for the SSL it freed.
struct Engine::Handover {
  // From the key log: the client's and our application traffic secrets.
  uint8_t read_secret[48];
  uint8_t write_secret[48];
  uint8_t read_len = 0, write_len = 0;
  // From the message callback: records OpenSSL read / wrote under them.
  uint64_t read_seq = 0, write_seq = 0;
  bool key_update = false;  // a KeyUpdate went by: OpenSSL's keys moved on
  bool wanted = false;      // allow_handover() was called
  bool done = false;        // rec is in charge; the SSL is freed
  // After the handover.
  Records rec;
  const char* version = "";
  const char* cipher = "";
  bool verified = false;
  bool reused = false;
  std::string subject;
  std::string alpn;
  // A record decrypted in place at in_[in_off_ + plain_off] that the caller's
  // buffer could not take whole; the record is rec_len bytes from in_off_.
  size_t plain_off = 0, plain_len = 0, rec_len = 0;

  ~Handover() {
    OPENSSL_cleanse(read_secret, sizeof read_secret);
    OPENSSL_cleanse(write_secret, sizeof write_secret);
  }
};

namespace {

int engine_index() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<LABEL> <client random, 64 hex> <secret, hex>" (NSS key log format).
// Returns the secret's length (32 or 48), 0 if the line is not that.
size_t parse_secret(std::string_view line, std::string_view label, uint8_t* out) {
  if (line.size() < label.size() + 1 || line.substr(0, label.size()) != label ||
      line[label.size()] != ' ')
    return 0;
  line.remove_prefix(label.size() + 1);
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return 0;
  line.remove_prefix(sp + 1);
  size_t n = line.size() / 2;
  if (line.size() % 2 != 0 || (n != 32 && n != 48)) return 0;
  for (size_t i = 0; i < n; ++i) {
    int hi = hex_value(line[2 * i]), lo = hex_value(line[2 * i + 1]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return n;
}

}  // namespace

struct EngineCallbacks {
  // Key log: each traffic secret when OpenSSL switches to it. Server side,
  // CLIENT_TRAFFIC_SECRET_0 comes when the client's Finished was read (the
  // next record it reads is the first under it), SERVER_TRAFFIC_SECRET_0
  // right after our Finished was written.
  static void keylog(const SSL* ssl, const char* line) {
    auto* e = static_cast<Engine*>(SSL_get_ex_data(ssl, engine_index()));
    if (!e || !e->hand_) return;
    Engine::Handover& h = *e->hand_;
    std::string_view l(line);
    if (size_t n = parse_secret(l, "CLIENT_TRAFFIC_SECRET_0", h.read_secret)) {
      h.read_len = static_cast<uint8_t>(n);
      h.read_seq = 0;
    } else if (size_t m = parse_secret(l, "SERVER_TRAFFIC_SECRET_0", h.write_secret)) {
      h.write_len = static_cast<uint8_t>(m);
      h.write_seq = 0;
    }
  }

  // Message callback: every record header OpenSSL reads or writes (counted
  // once the direction's application secret is in use), and every handshake
  // message (a KeyUpdate makes the counts and secrets stale).
  static void message(int write_p, int, int content_type, const void* buf, size_t len, SSL*,
                      void* arg) {
    auto* e = static_cast<Engine*>(arg);
    if (!e || !e->hand_) return;
    Engine::Handover& h = *e->hand_;
    if (content_type == SSL3_RT_HEADER) {
      if (write_p && h.write_len) ++h.write_seq;
      if (!write_p && h.read_len) ++h.read_seq;
    } else if (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
               static_cast<const uint8_t*>(buf)[0] == SSL3_MT_KEY_UPDATE) {
      h.key_update = true;
    }
  }
};

void detail::install_handover(SSL_CTX* ctx) {
  SSL_CTX_set_keylog_callback(ctx, EngineCallbacks::keylog);
}

// ---- Engine -----------------------------------------------------------------

namespace {

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::string name_string(X509_NAME* name) {
  BIO* b = BIO_new(BIO_s_mem());
  if (!b) return {};
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  std::string s = n > 0 ? std::string(p, static_cast<size_t>(n)) : std::string();
  BIO_free(b);
  return s;
}

void release(std::vector<uint8_t>& v) {
  std::vector<uint8_t>().swap(v);
}

}  // namespace

Engine::Engine(Context& ctx, Role role, std::string_view sni) : Engine(ctx, role, sni, Limits{}) {}

Engine::Engine(Context& ctx, Role role, std::string_view sni, Limits limits)
    : role_(role), limits_(limits) {
  limits_.max_ciphertext_in = std::max(limits_.max_ciphertext_in, 2 * kMaxRecordSize);
  limits_.max_ciphertext_out = std::max<size_t>(limits_.max_ciphertext_out, 1);
  if (ctx.role() != role) {
    failed_ = true;
    error_ = role == Role::Client ? "a client engine needs a client context"
                                  : "a server engine needs a server context";
    return;
  }
  ERR_clear_error();
  BIO_METHOD* method = EngineBio::method();
  ssl_ = SSL_new(ctx.native());
  bio_ = method ? BIO_new(method) : nullptr;
  if (!ssl_ || !bio_) {
    failed_ = true;
    error_ = "cannot create a TLS connection: " + detail::drain_errors();
    BIO_free(bio_);
    bio_ = nullptr;
    return;
  }
  BIO_set_data(bio_, this);
  SSL_set_bio(ssl_, bio_, bio_);  // same BIO both ways: consumes our one reference
  if (role == Role::Client) {
    SSL_set_connect_state(ssl_);
    std::string name(sni);
    if (!name.empty()) {
      bool ok;
      if (is_ip_literal(name)) {
        // RFC 6066: no IP literals in SNI; verify against the IP SANs.
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str()) == 1;
      } else {
        SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(ssl_, name.c_str()) == 1 &&
             SSL_set1_host(ssl_, name.c_str()) == 1;
      }
      if (!ok) {
        failed_ = true;
        error_ = "invalid server name '" + name + "': " + detail::drain_errors();
      }
    }
  } else {
    SSL_set_accept_state(ssl_);
    if (ctx.handover()) {
      hand_ = std::make_unique<Handover>();
      SSL_set_ex_data(ssl_, engine_index(), this);
      SSL_set_msg_callback(ssl_, EngineCallbacks::message);
      SSL_set_msg_callback_arg(ssl_, this);
    }
  }
}

Engine::~Engine() {
  if (ssl_) SSL_free(ssl_);  // frees bio_ too
}

void Engine::start() {
  started_ = true;
  drive();
}

void Engine::fail(std::string_view what, int ret) {
  int code = SSL_get_error(ssl_, ret);  // before draining: it reads the queue
  std::string reasons = detail::drain_errors();
  failed_ = true;
  error_ = std::string(what) + ": ";
  if (!reasons.empty()) {
    error_ += reasons;
  } else if (code == SSL_ERROR_SYSCALL) {
    error_ += "unexpected end of the TLS stream";
  } else {
    error_ += "OpenSSL error code " + std::to_string(code);
  }
  long vr = SSL_get_verify_result(ssl_);
  if (vr != X509_V_OK && SSL_get_verify_mode(ssl_) != SSL_VERIFY_NONE) {
    error_ += std::string(" (") + X509_verify_cert_error_string(vr) + ")";
  }
  // Our buffered input is useless now; an alert may sit in out_ to be taken.
  release(in_);
  in_off_ = 0;
  release(early_);
}

void Engine::release_drained_input() {
  if (in_off_ != 0 && in_off_ == in_.size()) {
    release(in_);
    in_off_ = 0;
  }
}

void Engine::drive() {
  if (failed_ || handshake_done_ || !ssl_) return;
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshake_done_ = true;
    if (hand_ && SSL_version(ssl_) != TLS1_3_VERSION) drop_handover();  // TLS 1.2 stays
    if (!early_.empty()) {
      std::vector<uint8_t> early;
      early.swap(early_);
      write_now(early);
    }
  } else {
    int code = SSL_get_error(ssl_, r);
    if (code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE)
      fail("TLS handshake failed", r);
  }
  release_drained_input();
}

size_t Engine::feed_ciphertext(std::span<const uint8_t> in) {
  if (failed_ || (!ssl_ && !handed_over())) return 0;
  size_t held = in_.size() - in_off_;
  size_t room = held >= limits_.max_ciphertext_in ? 0 : limits_.max_ciphertext_in - held;
  size_t n = std::min(in.size(), room);
  if (n > 0) {
    if (in_off_ > 0) {  // keep only the unconsumed tail (at most a partial record)
      in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(in_off_));
      in_off_ = 0;
    }
    in_.insert(in_.end(), in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
  }
  if (!started_)
    start();
  else
    drive();
  return n;
}

size_t Engine::read_plaintext(std::span<uint8_t> out) {
  if (failed_ || peer_closed_) return 0;
  if (hand_) try_handover();
  if (handed_over()) return out.empty() ? 0 : read_records(out);
  if (!ssl_) return 0;
  if (!started_) start();
  drive();
  if (!handshake_done_ || failed_ || out.empty()) return 0;
  ERR_clear_error();
  size_t got = 0;
  int r = SSL_read_ex(ssl_, out.data(), out.size(), &got);
  if (r != 1) {
    got = 0;
    int code = SSL_get_error(ssl_, r);
    if (code == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;  // close_notify received
    } else if (code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) {
      fail("TLS read failed", r);
    }
  }
  release_drained_input();
  return got;
}

size_t Engine::write_now(std::span<const uint8_t> in) {
  if (in.empty()) return 0;
  ERR_clear_error();
  size_t written = 0;
  // Our BIO never refuses a write, so OpenSSL encrypts all of it at once.
  int r = SSL_write_ex(ssl_, in.data(), in.size(), &written);
  if (r != 1) {
    // WANT_READ would need renegotiation or post-handshake auth, both off:
    // not expected, but not fatal either; the caller offers the bytes again.
    int code = SSL_get_error(ssl_, r);
    if (code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) fail("TLS write failed", r);
    ERR_clear_error();
    return 0;
  }
  return written;
}

size_t Engine::write_plaintext(std::span<const uint8_t> in) {
  if (failed_ || shutdown_sent_) return 0;
  if (hand_) try_handover();
  if (handed_over()) {
    size_t pending = pending_ciphertext();
    if (pending >= limits_.max_ciphertext_out) return 0;
    auto chunk = in.first(std::min(in.size(), limits_.max_ciphertext_out - pending));
    if (!hand_->rec.seal_data(chunk, out_)) {
      records_failed("TLS write failed");
      return 0;
    }
    return chunk.size();
  }
  if (!ssl_) return 0;
  if (!started_) start();
  drive();
  if (failed_) return 0;
  if (!handshake_done_) {  // keep it (bounded) until the handshake completes
    size_t room = early_.size() >= limits_.max_ciphertext_out
                      ? 0
                      : limits_.max_ciphertext_out - early_.size();
    size_t n = std::min(in.size(), room);
    early_.insert(early_.end(), in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
    return n;
  }
  size_t pending = pending_ciphertext();
  if (pending >= limits_.max_ciphertext_out) return 0;
  return write_now(in.first(std::min(in.size(), limits_.max_ciphertext_out - pending)));
}

size_t Engine::take_ciphertext(std::vector<uint8_t>& out) {
  if (!started_ && !failed_ && ssl_) start();
  size_t n = pending_ciphertext();
  if (n == 0) return 0;
  if (out.empty() && out_off_ == 0) {
    out.swap(out_);  // hand the whole buffer over
    release(out_);
  } else {
    out.insert(out.end(), out_.begin() + static_cast<std::ptrdiff_t>(out_off_), out_.end());
    release(out_);
  }
  out_off_ = 0;
  return n;
}

size_t Engine::take_ciphertext(std::span<uint8_t> out) {
  if (!started_ && !failed_ && ssl_) start();
  size_t n = std::min(out.size(), pending_ciphertext());
  if (n == 0) return 0;
  std::memcpy(out.data(), out_.data() + out_off_, n);
  out_off_ += n;
  if (out_off_ == out_.size()) {
    release(out_);
    out_off_ = 0;
  } else if (out_off_ >= 16384 && out_off_ * 2 >= out_.size()) {
    // A caller taking in small pieces while writing more must not make the
    // already-taken prefix grow without bound: drop it (amortised O(1)).
    out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(out_off_));
    out_off_ = 0;
  }
  return n;
}

bool Engine::want_write() const {
  if (pending_ciphertext() > 0) return true;
  // A client that has not started yet has its ClientHello to send.
  return role_ == Role::Client && !started_ && !failed_ && ssl_;
}

void Engine::shutdown() {
  if (handed_over()) {
    if (shutdown_sent_) return;
    shutdown_sent_ = true;
    if (!failed_) hand_->rec.seal_alert(1, 0, out_);  // close_notify
    return;
  }
  if (shutdown_sent_ || !ssl_) return;
  shutdown_sent_ = true;
  release(early_);  // accepted before the handshake completed: never sent
  // Nothing to say after a fatal error (an alert was already queued), and
  // SSL_shutdown refuses during the handshake.
  if (failed_ || !handshake_done_) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues close_notify into out_; we do not wait for the peer's
  ERR_clear_error();
}

bool Engine::set_session(const Session& s) {
  if (!ssl_ || role_ != Role::Client || started_ || !s) return false;
  ERR_clear_error();
  bool ok = SSL_set_session(ssl_, s.get()) == 1;  // takes its own reference
  ERR_clear_error();
  return ok;
}

Session Engine::get_session() const {
  if (!ssl_) return {};
  return Session::adopt(SSL_get1_session(ssl_));
}

bool Engine::session_reused() const {
  if (handed_over()) return hand_->reused;
  return ssl_ && SSL_session_reused(ssl_) == 1;
}

std::string Engine::alpn() const {
  if (handed_over()) return hand_->alpn;
  if (!ssl_) return {};
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}

std::string Engine::protocol() const {
  if (handed_over()) return hand_->version;
  return ssl_ && handshake_done_ ? SSL_get_version(ssl_) : "";
}

std::string Engine::cipher() const {
  if (handed_over()) return hand_->cipher;
  const char* c = ssl_ && handshake_done_ ? SSL_get_cipher_name(ssl_) : nullptr;
  return c ? c : "";
}

std::string Engine::peer_subject() const {
  if (handed_over()) return hand_->subject;
  X509* cert = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
  return cert ? name_string(X509_get_subject_name(cert)) : std::string();
}

std::string Engine::peer_identity(IdentityFrom from) const {
  if (!ssl_ || !peer_verified()) return {};
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (from == IdentityFrom::Cn) {
    X509_NAME* n = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
    if (i < 0) return {};
    ASN1_STRING* d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, d);
    if (len < 0) return {};
    std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
    OPENSSL_free(utf8);
    return out;
  }
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return {};
  std::string out;
  const int want = from == IdentityFrom::SanDns ? GEN_DNS : GEN_URI;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && out.empty(); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type != want) continue;
    const ASN1_IA5STRING* s = want == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
    out.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
               static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

bool Engine::peer_verified() const {
  if (handed_over()) return hand_->verified;
  return ssl_ && handshake_done_ && SSL_get0_peer_certificate(ssl_) != nullptr &&
         SSL_get_verify_result(ssl_) == X509_V_OK;
}

// ---- the handover -------------------------------------------------------------

bool Engine::handed_over() const {
  return hand_ && hand_->done;
}

bool Engine::handover_pending() const {
  return hand_ && hand_->wanted && !hand_->done;
}

void Engine::allow_handover() {
  if (!hand_) return;
  hand_->wanted = true;
  try_handover();
}

void Engine::drop_handover() {
  if (!hand_ || hand_->done) return;
  if (ssl_) {
    SSL_set_msg_callback(ssl_, nullptr);
    SSL_set_ex_data(ssl_, engine_index(), nullptr);
  }
  hand_.reset();
}

void Engine::try_handover() {
  Handover& h = *hand_;
  if (h.done || !h.wanted || !ssl_ || !handshake_done_ || failed_ || shutdown_sent_ ||
      peer_closed_ || !early_.empty())
    return;
  if (h.key_update || h.read_len == 0 || h.write_len == 0 || SSL_version(ssl_) != TLS1_3_VERSION)
    return drop_handover();
  // A record OpenSSL started to read (or plaintext it holds) stays its own:
  // try again once it is through.
  if (SSL_has_pending(ssl_) || SSL_pending(ssl_) > 0) return;
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
  Aead aead;
  switch (c ? SSL_CIPHER_get_protocol_id(c) : 0) {
    case 0x1301:
      aead = Aead::Aes128GcmSha256;
      break;
    case 0x1302:
      aead = Aead::Aes256GcmSha384;
      break;
    case 0x1303:
      aead = Aead::Chacha20Poly1305Sha256;
      break;
    default:  // the CCM suites: OpenSSL keeps them
      return drop_handover();
  }
  if (!h.rec.init(aead, {std::span<const uint8_t>(h.read_secret, h.read_len), h.read_seq},
                  {std::span<const uint8_t>(h.write_secret, h.write_len), h.write_seq}))
    return drop_handover();
  OPENSSL_cleanse(h.read_secret, sizeof h.read_secret);
  OPENSSL_cleanse(h.write_secret, sizeof h.write_secret);
  h.version = SSL_get_version(ssl_);  // static strings in OpenSSL
  h.cipher = SSL_CIPHER_get_name(c);
  h.verified = peer_verified();
  h.subject = peer_subject();
  h.alpn = alpn();
  h.reused = SSL_session_reused(ssl_) == 1;
  h.done = true;
  SSL_free(ssl_);  // frees bio_ too; in_ keeps what OpenSSL did not read, whole records
  ssl_ = nullptr;
  bio_ = nullptr;
}

size_t Engine::read_records(std::span<uint8_t> out) {
  Handover& h = *hand_;
  while (!failed_ && !peer_closed_) {
    if (h.plain_len > 0) {
      size_t k = std::min(out.size(), h.plain_len);
      std::memcpy(out.data(), in_.data() + in_off_ + h.plain_off, k);
      h.plain_off += k;
      h.plain_len -= k;
      if (h.plain_len == 0) {
        in_off_ += h.rec_len;
        h.rec_len = 0;
        release_drained_input();
      }
      return k;
    }
    Records::Read r = h.rec.open(std::span<uint8_t>(in_).subspan(in_off_), out_);
    switch (r.kind) {
      case Records::Read::Kind::NeedMore:
        release_drained_input();
        return 0;
      case Records::Read::Kind::Record:
        in_off_ += r.consumed;
        continue;
      case Records::Read::Kind::Data:
        h.plain_off = r.offset;
        h.plain_len = r.length;
        h.rec_len = r.consumed;
        continue;
      case Records::Read::Kind::Closed:
        peer_closed_ = true;  // close_notify: what follows is ignored
        release(in_);
        in_off_ = 0;
        return 0;
      case Records::Read::Kind::Failed:
        records_failed("TLS read failed");
        return 0;
    }
  }
  return 0;
}

void Engine::records_failed(std::string_view what) {
  failed_ = true;
  error_ = std::string(what) + ": " + hand_->rec.error();
  if (int a = hand_->rec.peer_alert(); a >= 0)
    error_ += std::string(" (") + SSL_alert_desc_string_long(a) + ")";
  hand_->plain_len = 0;
  release(in_);  // an alert for the peer may sit in out_ to be taken
  in_off_ = 0;
}

}  // namespace tls
