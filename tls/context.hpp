// TLS contexts: configuration → one OpenSSL SSL_CTX, shared by many Engines.
//
// Thread: a Context is built and configured on one thread (set_alpn before
// sharing); afterwards it may be shared read-only by every worker loop (SSL_CTX
// is thread-safe for SSL_new, and the server's session cache / ticket keys are
// then shared, so a client resumes on whichever worker accepts it).
// Lifetime: each Engine holds a reference count on the SSL_CTX and no callback
// points into the Context object, so a Context may be destroyed (e.g. replaced
// on reload) while engines created from it are still running.
// Errors: factories never throw and never prompt; they return nullptr and a
// message naming the file and OpenSSL's reason. See docs/tls.md.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace tls {

enum class Role { Client, Server };

struct ClientOptions {
  std::string ca;                 // PEM bundle to verify the peer; empty = system default paths
  bool verify = true;             // verify the peer's chain (and its name, see Engine's sni)
  std::string cert, key;          // optional client certificate (both or neither)
  std::vector<std::string> alpn;  // protocols to offer, most preferred first; empty = none
};

// ClientOptions for TLS from the balancer (or its health checker) to a backend.
ClientOptions client_options(const conf::BackendTls& b);

class Context {
 public:
  // Server context for a TLS listener: cert (may hold the full chain, leaf
  // first), key, optional client CAs with verify_client. TLS 1.2+, server-side
  // session cache and stateless session tickets for resumption.
  static std::unique_ptr<Context> server(const conf::ListenerTls& cfg, std::string& err);
  // Client context (load generator, health checker, balancer → backend).
  static std::unique_ptr<Context> client(const ClientOptions& opts, std::string& err);

  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Role role() const { return role_; }
  SSL_CTX* native() const { return ctx_; }

  // Server only: protocols to accept via ALPN, most preferred first. A client
  // offering none of them gets no ALPN (the handshake still succeeds). Call
  // before sharing the Context between threads. Returns false (and sets err)
  // on a name that is empty or longer than 255 bytes.
  bool set_alpn(const std::vector<std::string>& protocols, std::string& err);

  // Server only: share the session-ticket key ring of `previous` (a server
  // Context this one replaces, e.g. on reload), so tickets it issued stay
  // valid and reconnecting clients keep resuming — only when both have the
  // same session id context, i.e. the same security policy (certificate
  // identity, client CAs, verify_client). Otherwise returns false and keeps
  // fresh keys: a reload that tightens client verification is never bypassed
  // by resuming a session made under the looser rules. Call before sharing.
  bool inherit_ticket_keys(const Context& previous);
  // Server only: the session id context, SHA-256 over the leaf certificate's
  // subject and subjectAltName, the client CA bundle's bytes and the verify
  // mode. OpenSSL refuses to resume a session made under another one. A new
  // certificate for the same names keeps it (rotation keeps resumption).
  const std::string& session_id_context() const { return sid_; }
  // Server only: when the leaf certificate expires (Unix seconds), 0 if unknown.
  int64_t not_after() const;
  // Server only: begins a new ticket-key period now (tls/tickets.hpp).
  void rotate_ticket_keys();
  // Server only: engines may hand TLS 1.3 records over to mqttlb
  // (tls/engine.hpp; the listener's tls.record_layer "mqttlb").
  bool handover() const { return handover_; }

 private:
  Context(SSL_CTX* ctx, Role role) : ctx_(ctx), role_(role) {}
  SSL_CTX* ctx_;  // owned: one reference, released in the destructor
  Role role_;
  std::string sid_;  // server: session id context (32 bytes)
  bool handover_ = false;
};

}  // namespace tls
