#include "tls/context.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>

#include "tls/engine.hpp"
#include "tls/errors.hpp"
#include "tls/tickets.hpp"

namespace tls {
namespace {

// TLS 1.2 suites: forward secrecy (ECDHE) with AEAD only, as Mozilla's
// "intermediate" profile minus DHE (which needs parameters we do not ship).
// TLS 1.3 keeps OpenSSL's defaults (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Encrypted private keys are not supported: without this callback OpenSSL
// would prompt for a passphrase on the terminal and block the process.
int no_passphrase(char*, int, int, void*) {
  return 0;
}

std::string quoted(const std::string& path) {
  return "'" + path + "'";
}

// Settings shared by server and client contexts. Returns false with err set.
bool common_setup(SSL_CTX* ctx, std::string& err) {
  SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
    err = "cannot set TLS protocol/ciphers: " + detail::drain_errors();
    return false;
  }
  // Renegotiation makes a memory-BIO engine's states much harder to reason
  // about and is a known CPU DoS vector on servers; TLS 1.3 has none anyway.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Idle connections should hold no buffers: OpenSSL frees its record
  // buffers whenever they are empty.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  return true;
}

bool load_cert_and_key(SSL_CTX* ctx, const std::string& cert, const std::string& key,
                       std::string& err) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    err = "certificate " + quoted(cert) + ": " + detail::drain_errors();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    unsigned long last = ERR_peek_last_error();
    bool mismatch =
        ERR_GET_LIB(last) == ERR_LIB_X509 && ERR_GET_REASON(last) == X509_R_KEY_VALUES_MISMATCH;
    err = "private key " + quoted(key) +
          (mismatch ? " does not match certificate " + quoted(cert) : std::string()) + ": " +
          detail::drain_errors();
    return false;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    err = "private key " + quoted(key) + " does not match certificate " + quoted(cert) + ": " +
          detail::drain_errors();
    return false;
  }
  return true;
}

// Server ALPN list in wire format (length-prefixed names), owned by the
// SSL_CTX through ex_data so no callback points into a Context object.
void free_alpn(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::string*>(ptr);
}

int alpn_index() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_alpn);
  return idx;
}

int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  auto* wire =
      static_cast<const std::string*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_index()));
  if (!wire) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* sel = nullptr;
  // Server preference order: the first list wins.
  if (SSL_select_next_proto(&sel, outlen, reinterpret_cast<const unsigned char*>(wire->data()),
                            static_cast<unsigned>(wire->size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no common protocol: continue without ALPN
  }
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

bool alpn_wire(const std::vector<std::string>& protocols, std::string& wire, std::string& err) {
  wire.clear();
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) {
      err = "ALPN protocol name must be 1..255 bytes: '" + p + "'";
      return false;
    }
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return true;
}

// The ticket key ring, owned by the SSL_CTX through ex_data (a shared_ptr, so
// a reload can share one ring between the old and the new context).
void free_keys(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<TicketKeys>*>(ptr);
}

int keys_index() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_keys);
  return idx;
}

std::shared_ptr<TicketKeys> keys_of(SSL_CTX* ctx) {
  auto* p = static_cast<std::shared_ptr<TicketKeys>*>(SSL_CTX_get_ex_data(ctx, keys_index()));
  return p ? *p : nullptr;
}

bool set_keys(SSL_CTX* ctx, std::shared_ptr<TicketKeys> keys) {
  auto* old = static_cast<std::shared_ptr<TicketKeys>*>(SSL_CTX_get_ex_data(ctx, keys_index()));
  auto* p = new std::shared_ptr<TicketKeys>(std::move(keys));
  if (SSL_CTX_set_ex_data(ctx, keys_index(), p) != 1) {
    delete p;
    return false;
  }
  delete old;
  return true;
}

int ticket_cb(SSL* ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
              EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  auto* p = static_cast<std::shared_ptr<TicketKeys>*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), keys_index()));
  if (!p || !*p) return enc ? -1 : 0;
  return (*p)->use(name, iv, cipher, mac, enc, static_cast<int64_t>(std::time(nullptr)));
}

std::string file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void append_der(std::string& out, unsigned char* der, int len) {
  if (len > 0 && der) out.append(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
}

// SHA-256 over what the listener promises and demands: who it is (the leaf's
// subject and SANs, not its key, so a renewed certificate keeps sessions) and
// whom it lets in (the client CA bundle and the verify mode).
std::string policy_id(SSL_CTX* ctx, const conf::ListenerTls& cfg) {
  std::string m = "mqttlb-sid-v1";
  if (X509* leaf = SSL_CTX_get0_certificate(ctx)) {
    unsigned char* der = nullptr;
    append_der(m, der, i2d_X509_NAME(X509_get_subject_name(leaf), &der));
    auto* san =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr));
    if (san) {
      der = nullptr;
      append_der(m, der, i2d_GENERAL_NAMES(san, &der));
      GENERAL_NAMES_free(san);
    }
  }
  m += static_cast<char>(cfg.verify_client);
  if (cfg.verify_client != conf::ListenerTls::Verify::None) m += file_bytes(cfg.ca);
  unsigned char d[32];
  unsigned int n = 0;
  EVP_Digest(m.data(), m.size(), d, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(d), n);
}

}  // namespace

ClientOptions client_options(const conf::BackendTls& b) {
  ClientOptions o;
  o.ca = b.ca;
  o.verify = b.verify;
  o.cert = b.cert;
  o.key = b.key;
  return o;
}

Context::~Context() {
  SSL_CTX_free(ctx_);
}

std::unique_ptr<Context> Context::server(const conf::ListenerTls& cfg, std::string& err) {
  if (cfg.cert.empty() || cfg.key.empty()) {
    err = "a TLS listener needs both a certificate and a private key";
    return nullptr;
  }
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_server_method());
  if (!raw) {
    err = "cannot create a TLS context: " + detail::drain_errors();
    return nullptr;
  }
  std::unique_ptr<Context> c(new Context(raw, Role::Server));
  SSL_CTX* ctx = c->ctx_;
  if (!common_setup(ctx, err) || !load_cert_and_key(ctx, cfg.cert, cfg.key, err)) return nullptr;
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);

  using V = conf::ListenerTls::Verify;
  if (cfg.verify_client != V::None) {
    if (cfg.ca.empty()) {
      err = "verify_client needs a CA file (ca) to verify client certificates against";
      return nullptr;
    }
    if (SSL_CTX_load_verify_locations(ctx, cfg.ca.c_str(), nullptr) != 1) {
      err = "client CA " + quoted(cfg.ca) + ": " + detail::drain_errors();
      return nullptr;
    }
    // The CA names sent in CertificateRequest help clients pick a certificate.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.ca.c_str());
    if (!names) {
      err = "client CA " + quoted(cfg.ca) + ": no CA certificate found: " + detail::drain_errors();
      return nullptr;
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
    int mode = SSL_VERIFY_PEER;
    if (cfg.verify_client == V::Required) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, nullptr);
  }

  // Resumption: a server-side cache for TLS 1.2 session ids and stateless
  // tickets (TLS 1.2 and 1.3) encrypted with this context's random ticket
  // keys, hence valid on every worker sharing the Context, lost on restart.
  // The session id context is mandatory once client certificates are
  // verified (OpenSSL refuses resumption without it).
  c->sid_ = policy_id(ctx, cfg);
  SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(c->sid_.data()),
                                 static_cast<unsigned>(c->sid_.size()));
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  if (!set_keys(ctx, std::make_shared<TicketKeys>()) ||
      SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
    err = "cannot set up session tickets: " + detail::drain_errors();
    return nullptr;
  }
  // One TLS 1.3 ticket per handshake (OpenSSL's default is 2): a client that
  // reconnects gets a fresh one on each resumed connection.
  SSL_CTX_set_num_tickets(ctx, 1);
  if (cfg.record_layer == conf::ListenerTls::RecordLayer::Mqttlb) {
    detail::install_handover(ctx);  // the key log callback that feeds the handover
    c->handover_ = true;
  }
  ERR_clear_error();
  return c;
}

std::unique_ptr<Context> Context::client(const ClientOptions& opts, std::string& err) {
  if (opts.cert.empty() != opts.key.empty()) {
    err = "a client certificate needs both cert and key";
    return nullptr;
  }
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
  if (!raw) {
    err = "cannot create a TLS context: " + detail::drain_errors();
    return nullptr;
  }
  std::unique_ptr<Context> c(new Context(raw, Role::Client));
  SSL_CTX* ctx = c->ctx_;
  if (!common_setup(ctx, err)) return nullptr;
  if (opts.verify) {
    if (opts.ca.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        err = "cannot load the system CA store: " + detail::drain_errors();
        return nullptr;
      }
    } else if (SSL_CTX_load_verify_locations(ctx, opts.ca.c_str(), nullptr) != 1) {
      err = "CA " + quoted(opts.ca) + ": " + detail::drain_errors();
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!opts.cert.empty() && !load_cert_and_key(ctx, opts.cert, opts.key, err)) return nullptr;
  if (!opts.alpn.empty()) {
    std::string wire;
    if (!alpn_wire(opts.alpn, wire, err)) return nullptr;
    // Note the inverted convention: 0 is success here.
    if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0) {
      err = "cannot set ALPN: " + detail::drain_errors();
      return nullptr;
    }
  }
  ERR_clear_error();
  return c;
}

bool Context::set_alpn(const std::vector<std::string>& protocols, std::string& err) {
  if (role_ != Role::Server) {
    err = "set_alpn is for server contexts (clients pass ClientOptions::alpn)";
    return false;
  }
  auto wire = std::make_unique<std::string>();
  if (!alpn_wire(protocols, *wire, err)) return false;
  auto* old = static_cast<std::string*>(SSL_CTX_get_ex_data(ctx_, alpn_index()));
  if (SSL_CTX_set_ex_data(ctx_, alpn_index(), wire.get()) != 1) {
    err = "cannot set ALPN: " + detail::drain_errors();
    return false;
  }
  wire.release();  // now owned by the SSL_CTX (freed by free_alpn)
  delete old;
  SSL_CTX_set_alpn_select_cb(ctx_, select_alpn, nullptr);
  return true;
}

bool Context::inherit_ticket_keys(const Context& previous) {
  if (role_ != Role::Server || previous.role_ != Role::Server) return false;
  if (sid_ != previous.sid_) return false;  // another policy: its tickets must not resume here
  auto keys = keys_of(previous.ctx_);
  return keys && set_keys(ctx_, std::move(keys));
}

int64_t Context::not_after() const {
  X509* leaf = SSL_CTX_get0_certificate(ctx_);
  if (!leaf) return 0;
  tm t{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &t) != 1) return 0;
  return static_cast<int64_t>(timegm(&t));
}

void Context::rotate_ticket_keys() {
  if (auto keys = keys_of(ctx_)) keys->rotate(static_cast<int64_t>(std::time(nullptr)));
}

}  // namespace tls
