// tls::Context and tls::Engine: a client and a server Engine pump ciphertext
// to each other in memory (no sockets), with a throwaway PKI from certs.sh.
#include <doctest/doctest.h>
#include <openssl/ssl.h>

#include <string>
#include <tuple>
#include <vector>

#include "tls_link.hpp"

using namespace tls_test;

TEST_CASE("handshake and data both ways") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  CHECK(c.want_write());  // the ClientHello is ready before anything else happens
  CHECK_FALSE(s.want_write());
  Link l{c, s};
  l.pump();
  REQUIRE_MESSAGE(c.handshake_done(), c.error());
  REQUIRE_MESSAGE(s.handshake_done(), s.error());
  CHECK(c.protocol() == "TLSv1.3");
  CHECK(c.peer_verified());
  CHECK(c.peer_subject().find("CN=localhost") != std::string::npos);
  CHECK_FALSE(s.peer_verified());  // no client certificate asked for

  CHECK(c.write_plaintext(bytes("hello from client")) == 17);
  l.pump();
  CHECK(l.s_got == "hello from client");
  CHECK(s.write_plaintext(bytes("hello from server")) == 17);
  l.pump();
  CHECK(l.c_got == "hello from server");
  CHECK_FALSE(c.failed());
  CHECK_FALSE(s.failed());
  check_record_layer(s);
}

TEST_CASE("TLS 1.2 peers still work") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  SSL_CTX_set_max_proto_version(cctx->native(), TLS1_2_VERSION);
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.send_all(c, "over tls 1.2");
  CHECK(c.protocol() == "TLSv1.2");
  CHECK(l.s_got == "over tls 1.2");
}

TEST_CASE("RSA server certificate, TLS 1.3 and 1.2") {
  auto sctx = server_ctx("rsa-server.crt", "rsa-server.key");
  auto cctx = client_ctx();
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(version);
    SSL_CTX_set_max_proto_version(cctx->native(), version);
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "rsa");
    CHECK_MESSAGE(c.peer_verified(), c.error());
    CHECK(l.s_got == "rsa");
    if (version == TLS1_2_VERSION) CHECK(c.cipher().rfind("ECDHE-RSA-", 0) == 0);
  }
}

TEST_CASE("1 MiB each way; pending output stays bounded") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.pump();
  const std::string up = pattern(1 << 20), down = pattern((1 << 20) + 7).substr(7);
  const size_t bound = Engine::Limits{}.max_ciphertext_out + 4096;
  size_t off_up = 0, off_down = 0;
  for (int round = 0; off_up < up.size() || off_down < down.size(); ++round) {
    REQUIRE(round < 100000);
    off_up += c.write_plaintext(bytes(up).subspan(off_up));
    off_down += s.write_plaintext(bytes(down).subspan(off_down));
    CHECK(c.pending_ciphertext() <= bound);
    CHECK(s.pending_ciphertext() <= bound);
    // a full engine refuses more until its output is taken
    if (c.pending_ciphertext() >= Engine::Limits{}.max_ciphertext_out && off_up < up.size())
      CHECK(c.write_plaintext(bytes(up).subspan(off_up)) == 0);
    l.pump();
  }
  l.pump();
  CHECK(l.s_got.size() == up.size());
  CHECK(l.s_got == up);
  CHECK(l.c_got == down);
  check_record_layer(s);
}

TEST_CASE("feeding more than the input limit without reading is refused, then resumes") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.pump();
  const std::string data = pattern(512 * 1024);
  std::vector<uint8_t> wire;
  for (size_t off = 0; off < data.size();) {  // encrypt everything, deliver nothing
    off += c.write_plaintext(bytes(data).subspan(off));
    c.take_ciphertext(wire);
  }
  REQUIRE(wire.size() > data.size());
  size_t accepted = s.feed_ciphertext(wire);
  CHECK(accepted < wire.size());
  CHECK(accepted <= Engine::Limits{}.max_ciphertext_in);
  CHECK(s.feed_ciphertext(std::span(wire).subspan(accepted)) == 0);  // full until read
  std::string got;
  size_t off = accepted;
  for (int round = 0; off < wire.size(); ++round) {
    REQUIRE(round < 100000);
    drain(s, got);
    off += s.feed_ciphertext(std::span(wire).subspan(off));
  }
  drain(s, got);
  CHECK(got == data);
  check_record_layer(s);
}

TEST_CASE("pull API: ciphertext taken in small pieces while writing") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.pump();
  const std::string data = pattern(300000);
  std::string got;
  size_t off = 0;
  uint8_t piece[1000];
  for (int round = 0; off < data.size() || c.want_write(); ++round) {
    REQUIRE(round < 1000000);
    off += c.write_plaintext(bytes(data).subspan(off));
    CHECK(c.pending_ciphertext() <= Engine::Limits{}.max_ciphertext_out + 4096);
    size_t n = c.take_ciphertext(std::span<uint8_t>(piece));
    REQUIRE(s.feed_ciphertext(std::span<const uint8_t>(piece, n)) == n);
    drain(s, got);
  }
  CHECK(got == data);
  check_record_layer(s);
}

TEST_CASE("byte-by-byte feeding") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.chunk = 1;
  const std::string msg = pattern(20000);  // more than one record
  l.send_all(c, msg);
  l.send_all(s, "reply");
  CHECK(c.handshake_done());
  CHECK(l.s_got == msg);
  CHECK(l.c_got == "reply");
  check_record_layer(s);
}

// The schedule is seeded, but handshake sizes vary (ECDSA signatures, key
// shares), so a run is not bit-for-bit reproducible; failures name the connection.
TEST_CASE("random chunking and interleaving (seeded)") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  uint32_t x = 12345;
  auto rnd = [&x](uint32_t n) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x % n;
  };
  for (int conn = 0; conn < 20; ++conn) {
    CAPTURE(conn);
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    const std::string up = pattern(1000 + rnd(100000)), down = pattern(1 + rnd(50000));
    std::string c_got, s_got;
    size_t up_off = 0, down_off = 0;
    std::vector<uint8_t> c2s, s2c;  // ciphertext in flight, delivered in random pieces
    for (int step = 0; c_got.size() < down.size() || s_got.size() < up.size(); ++step) {
      REQUIRE(step < 200000);
      switch (rnd(4)) {
        case 0:
          up_off += c.write_plaintext(bytes(up).subspan(up_off, rnd(1 + up.size() - up_off)));
          down_off +=
              s.write_plaintext(bytes(down).subspan(down_off, rnd(1 + down.size() - down_off)));
          break;
        case 1:
          c.take_ciphertext(c2s);
          s.take_ciphertext(s2c);
          break;
        default: {
          for (auto [buf, to, got] : {std::tuple{&c2s, &s, &s_got}, std::tuple{&s2c, &c, &c_got}}) {
            size_t n = to->feed_ciphertext(std::span(*buf).first(rnd(1 + buf->size())));
            buf->erase(buf->begin(), buf->begin() + static_cast<std::ptrdiff_t>(n));
            drain(*to, *got);
          }
        }
      }
      REQUIRE_MESSAGE(!c.failed(), c.error());
      REQUIRE_MESSAGE(!s.failed(), s.error());
    }
    CHECK(s_got == up);
    CHECK(c_got == down);
    check_record_layer(s);
  }
}

TEST_CASE("plaintext written before the handshake is sent once it completes") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  CHECK(c.write_plaintext(bytes("early CONNECT")) == 13);
  CHECK_FALSE(c.handshake_done());
  Link l{c, s};
  l.pump();
  CHECK(l.s_got == "early CONNECT");
  // bounded: at most max_ciphertext_out bytes are kept before the handshake
  Engine c2(*cctx, Role::Client, "localhost");
  const std::string big = pattern(1 << 20);
  CHECK(c2.write_plaintext(bytes(big)) == Engine::Limits{}.max_ciphertext_out);
  CHECK(c2.write_plaintext(bytes(big)) == 0);
}

TEST_CASE("client certificates: verify_client required / optional") {
  auto cctx_nocert = client_ctx();
  SUBCASE("required, client sends none: handshake fails with a clear reason") {
    auto sctx = server_ctx("server.crt", "server.key", Verify::Required, "ca.crt");
    Engine c(*cctx_nocert, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "x");  // TLS 1.3: the client learns of the refusal on its next read
    REQUIRE(s.failed());
    CHECK_MESSAGE(s.error().find("peer did not return a certificate") != std::string::npos,
                  s.error());
    CHECK(l.s_got.empty());
    CHECK(c.failed());
    CHECK_MESSAGE(c.error().find("certificate required") != std::string::npos, c.error());
  }
  SUBCASE("required, valid client certificate: accepted and identified") {
    auto sctx = server_ctx("server.crt", "server.key", Verify::Required, "ca.crt");
    auto cctx = client_ctx("ca.crt", "client.crt", "client.key");
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "authenticated");
    CHECK_MESSAGE(!s.failed(), s.error());
    CHECK(l.s_got == "authenticated");
    CHECK(s.peer_verified());
    CHECK(s.peer_subject().find("CN=mqttlb test client") != std::string::npos);
  }
  SUBCASE("required, certificate from another CA: refused") {
    auto sctx = server_ctx("server.crt", "server.key", Verify::Required, "ca.crt");
    auto cctx = client_ctx("ca.crt", "other-client.crt", "other-client.key");
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "x");
    REQUIRE(s.failed());
    CHECK_MESSAGE(s.error().find("certificate verify failed") != std::string::npos, s.error());
    CHECK(l.s_got.empty());
  }
  SUBCASE("optional, certificate from another CA: refused") {
    auto sctx = server_ctx("server.crt", "server.key", Verify::Optional, "ca.crt");
    auto cctx = client_ctx("ca.crt", "other-client.crt", "other-client.key");
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "x");
    CHECK(s.failed());
    CHECK(l.s_got.empty());
  }
  SUBCASE("optional, client sends none: accepted, not verified") {
    auto sctx = server_ctx("server.crt", "server.key", Verify::Optional, "ca.crt");
    Engine c(*cctx_nocert, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "anonymous");
    CHECK(l.s_got == "anonymous");
    CHECK_FALSE(s.peer_verified());
  }
}

TEST_CASE("server verification failures name the reason") {
  auto sctx = server_ctx();
  SUBCASE("wrong CA") {
    auto cctx = client_ctx("other-ca.crt");
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.pump();
    REQUIRE(c.failed());
    CHECK_FALSE(c.handshake_done());
    CHECK_MESSAGE(c.error().find("certificate verify failed") != std::string::npos, c.error());
    CHECK_MESSAGE(c.error().find("unable to get local issuer certificate") != std::string::npos,
                  c.error());
    CHECK(s.failed());  // it received the client's alert
  }
  SUBCASE("name mismatch") {
    auto cctx = client_ctx();
    Engine c(*cctx, Role::Client, "broker.example.com");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.pump();
    REQUIRE(c.failed());
    CHECK_MESSAGE(c.error().find("hostname mismatch") != std::string::npos, c.error());
  }
  SUBCASE("an IP literal is checked against the IP SANs") {
    auto cctx = client_ctx();
    Engine ok(*cctx, Role::Client, "127.0.0.1");
    Engine s1(*sctx, Role::Server);
    Link l1{ok, s1};
    l1.pump();
    CHECK_MESSAGE(ok.handshake_done(), ok.error());
    Engine bad(*cctx, Role::Client, "127.0.0.2");
    Engine s2(*sctx, Role::Server);
    Link l2{bad, s2};
    l2.pump();
    CHECK(bad.failed());
    CHECK_MESSAGE(bad.error().find("IP address mismatch") != std::string::npos, bad.error());
  }
  SUBCASE("verify=false connects to anyone") {
    tls::ClientOptions o;
    o.verify = false;
    std::string err;
    auto cctx = Context::client(o, err);
    REQUIRE(cctx);
    Engine c(*cctx, Role::Client, "broker.example.com");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "unverified");
    CHECK(l.s_got == "unverified");
    CHECK_FALSE(c.failed());
  }
}

TEST_CASE("full-chain server certificate (CA -> intermediate -> leaf)") {
  auto cctx = client_ctx("ca.crt");  // trusts the root only
  SUBCASE("the chain file verifies") {
    auto sctx = server_ctx("chain-server.crt", "chain-server.key");
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "via intermediate");
    CHECK_MESSAGE(c.peer_verified(), c.error());
    CHECK(l.s_got == "via intermediate");
  }
  SUBCASE("the leaf alone does not (so the intermediate really was sent)") {
    std::string chain = read_file(cert("chain-server.crt"));
    const std::string end = "-----END CERTIFICATE-----\n";
    size_t cut = chain.find(end);
    REQUIRE(cut != std::string::npos);
    std::string leaf_path = tls_test::pki_dir() + "/leaf-only.crt";
    std::ofstream(leaf_path) << chain.substr(0, cut + end.size());
    conf::ListenerTls cfg;
    cfg.cert = leaf_path;
    cfg.key = cert("chain-server.key");
    std::string err;
    auto sctx = Context::server(cfg, err);
    REQUIRE_MESSAGE(sctx, err);
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.pump();
    CHECK(c.failed());
    CHECK_MESSAGE(c.error().find("unable to get local issuer certificate") != std::string::npos,
                  c.error());
  }
}

namespace {
// Connects once, exchanges a message, returns the client's session afterwards.
tls::Session connect_once(Context& cctx, Context& sctx, const tls::Session& resume, bool* reused) {
  Engine c(cctx, Role::Client, "localhost");
  if (resume) REQUIRE(c.set_session(resume));
  Engine s(sctx, Role::Server);
  Link l{c, s};
  l.send_all(c, "ping");
  l.send_all(s, "pong");  // the client reads: TLS 1.3 tickets are processed
  REQUIRE_MESSAGE(c.handshake_done(), c.error());
  CHECK(l.c_got == "pong");
  *reused = c.session_reused();
  CHECK(s.session_reused() == *reused);
  c.shutdown();
  l.pump();
  return c.get_session();
}
}  // namespace

TEST_CASE("session resumption") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(version);
    SSL_CTX_set_max_proto_version(cctx->native(), version);
    bool reused = true;
    tls::Session first = connect_once(*cctx, *sctx, {}, &reused);
    CHECK_FALSE(reused);
    REQUIRE(first.resumable());
    tls::Session second = connect_once(*cctx, *sctx, first, &reused);
    CHECK(reused);
    tls::Session copy = second;  // shared references; both outlive their engines
    CHECK(copy.get() == second.get());
    connect_once(*cctx, *sctx, copy, &reused);
    CHECK(reused);
    // another server context has other ticket keys: full handshake, no failure
    auto other = server_ctx();
    connect_once(*cctx, *other, first, &reused);
    CHECK_FALSE(reused);
    // ...unless it inherits the keys of the one it replaces (config reload)
    auto reloaded = server_ctx();
    REQUIRE(reloaded->inherit_ticket_keys(*sctx));
    connect_once(*cctx, *reloaded, first, &reused);
    CHECK(reused);
  }
  Engine late(*cctx, Role::Client, "localhost");
  std::vector<uint8_t> hello;
  CHECK(late.take_ciphertext(hello) > 0);  // the ClientHello is out
  auto fresh = server_ctx();
  bool ignored = false;
  tls::Session s = connect_once(*cctx, *fresh, {}, &ignored);
  CHECK_FALSE(late.set_session(s));                // too late once the ClientHello is out
  CHECK_FALSE(cctx->inherit_ticket_keys(*fresh));  // server contexts only
}

TEST_CASE("ticket keys rotate: the previous key still opens tickets, then it is gone") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(version);
    SSL_CTX_set_max_proto_version(cctx->native(), version);
    bool reused = true;
    tls::Session first = connect_once(*cctx, *sctx, {}, &reused);
    REQUIRE(first.resumable());
    sctx->rotate_ticket_keys();  // `first` was sealed by what is now the previous key
    tls::Session renewed = connect_once(*cctx, *sctx, first, &reused);
    CHECK(reused);
    REQUIRE(renewed.resumable());
    sctx->rotate_ticket_keys();  // two periods later: the first key is gone
    connect_once(*cctx, *sctx, first, &reused);
    CHECK_FALSE(reused);  // a full handshake, not a failure
    connect_once(*cctx, *sctx, renewed, &reused);
    CHECK(reused);  // the renewed ticket was sealed by the then-current key
  }
}

TEST_CASE("a reload keeps tickets only under the same policy (names, client CAs, verify mode)") {
  auto base = server_ctx();
  auto cctx = client_ctx("ca.crt", "client.crt", "client.key");
  bool reused = true;
  tls::Session first = connect_once(*cctx, *base, {}, &reused);
  // A new certificate for the same names (an RSA key instead of EC): kept.
  auto renewed_cert = server_ctx("rsa-server.crt", "rsa-server.key");
  CHECK(renewed_cert->session_id_context() == base->session_id_context());
  CHECK(renewed_cert->inherit_ticket_keys(*base));
  connect_once(*cctx, *renewed_cert, first, &reused);
  CHECK(reused);
  // Client certificates now required or optional: not kept (a full handshake,
  // which then asks for the certificate).
  for (Verify verify : {Verify::Required, Verify::Optional}) {
    auto strict = server_ctx("server.crt", "server.key", verify, "ca.crt");
    CHECK(strict->session_id_context() != base->session_id_context());
    CHECK_FALSE(strict->inherit_ticket_keys(*base));
    connect_once(*cctx, *strict, first, &reused);
    CHECK_FALSE(reused);
  }
  // Another client CA bundle is another policy too.
  auto ca1 = server_ctx("server.crt", "server.key", Verify::Required, "ca.crt");
  auto ca2 = server_ctx("server.crt", "server.key", Verify::Required, "other-ca.crt");
  CHECK(ca1->session_id_context() != ca2->session_id_context());
  CHECK_FALSE(ca2->inherit_ticket_keys(*ca1));
}

TEST_CASE("close_notify") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.send_all(c, "last words");
  c.shutdown();
  c.shutdown();  // idempotent
  CHECK(c.shutdown_sent());
  CHECK(c.want_write());  // close_notify to send
  CHECK(c.write_plaintext(bytes("too late")) == 0);
  l.pump();
  CHECK(l.s_got == "last words");
  CHECK(s.peer_closed());
  CHECK_FALSE(s.failed());
  CHECK_FALSE(c.peer_closed());
  // the server may still answer, then close too
  CHECK(s.write_plaintext(bytes("bye")) == 3);
  s.shutdown();
  l.pump();
  CHECK(l.c_got == "bye");
  CHECK(c.peer_closed());
  CHECK_FALSE(c.failed());
  check_record_layer(s);
}

TEST_CASE("garbage ciphertext fails cleanly") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  SUBCASE("plain MQTT sent to a TLS listener") {
    Engine s(*sctx, Role::Server);
    const uint8_t connect[] = {0x10, 0x0c, 0x00, 0x04, 'M',  'Q',  'T',
                               'T',  0x04, 0x02, 0x00, 0x3c, 0x00, 0x00};
    s.feed_ciphertext(connect);
    std::string got;
    drain(s, got);
    REQUIRE(s.failed());
    CHECK(got.empty());
    CHECK_MESSAGE(s.error().find("TLS handshake failed: ") == 0, s.error());
    CHECK(s.feed_ciphertext(connect) == 0);  // stays failed
    CHECK(s.write_plaintext(bytes("x")) == 0);
  }
  SUBCASE("random bytes after the handshake") {
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.pump();
    REQUIRE(c.handshake_done());
    const std::string junk = pattern(3000);
    // a plausible record header, then noise: the record cannot authenticate
    std::string rec = std::string("\x17\x03\x03\x0b\xb8", 5) + junk;
    c.feed_ciphertext(bytes(rec));
    std::string got;
    drain(c, got);
    REQUIRE(c.failed());
    CHECK(got.empty());
    CHECK_MESSAGE(c.error().find("TLS read failed: ") == 0, c.error());
    std::vector<uint8_t> alert;
    c.take_ciphertext(alert);  // the alert for the peer; must not crash
  }
  SUBCASE("every prefix of noise, byte by byte") {
    Engine s(*sctx, Role::Server);
    const std::string junk = pattern(512);
    size_t fed = 0;
    for (char ch : junk) {
      uint8_t b = static_cast<uint8_t>(ch);
      fed += s.feed_ciphertext(std::span(&b, 1));
      std::string got;
      drain(s, got);
      CHECK(got.empty());
      if (s.failed()) break;
    }
    CHECK(s.failed());
    CHECK(fed < junk.size());
  }
}

TEST_CASE("bad certificate / key files give clear errors") {
  std::string err;
  conf::ListenerTls cfg;
  cfg.cert = cert("server.crt");
  cfg.key = cert("server.key");
  SUBCASE("missing certificate file") {
    cfg.cert = "/nonexistent/server.crt";
    CHECK_FALSE(Context::server(cfg, err));
    CHECK_MESSAGE(err.find("/nonexistent/server.crt") != std::string::npos, err);
    CHECK_MESSAGE(err.find("No such file or directory") != std::string::npos, err);
  }
  SUBCASE("missing key file") {
    cfg.key = "/nonexistent/server.key";
    CHECK_FALSE(Context::server(cfg, err));
    CHECK_MESSAGE(err.find("private key '/nonexistent/server.key'") != std::string::npos, err);
  }
  SUBCASE("a file that is not PEM") {
    std::string junk = tls_test::pki_dir() + "/junk.pem";
    std::ofstream(junk) << "this is not a certificate\n";
    cfg.cert = junk;
    CHECK_FALSE(Context::server(cfg, err));
    CHECK_MESSAGE(err.find(junk) != std::string::npos, err);
    CHECK_MESSAGE(err.find("no start line") != std::string::npos, err);
  }
  SUBCASE("key does not match the certificate") {
    cfg.key = cert("client.key");
    CHECK_FALSE(Context::server(cfg, err));
    CHECK_MESSAGE(err.find("does not match certificate") != std::string::npos, err);
    CHECK_MESSAGE(err.find("key values mismatch") != std::string::npos, err);
  }
  SUBCASE("verify_client without a CA") {
    cfg.verify_client = Verify::Required;
    CHECK_FALSE(Context::server(cfg, err));
    CHECK_MESSAGE(err.find("CA") != std::string::npos, err);
  }
  SUBCASE("missing client CA file") {
    cfg.verify_client = Verify::Optional;
    cfg.ca = "/nonexistent/ca.pem";
    CHECK_FALSE(Context::server(cfg, err));
    CHECK_MESSAGE(err.find("/nonexistent/ca.pem") != std::string::npos, err);
  }
  SUBCASE("client: missing CA, half a client certificate") {
    tls::ClientOptions o;
    o.ca = "/nonexistent/ca.pem";
    CHECK_FALSE(Context::client(o, err));
    CHECK_MESSAGE(err.find("/nonexistent/ca.pem") != std::string::npos, err);
    o.ca.clear();
    o.cert = cert("client.crt");
    CHECK_FALSE(Context::client(o, err));
    CHECK_MESSAGE(err.find("both cert and key") != std::string::npos, err);
  }
}

TEST_CASE("ALPN") {
  auto sctx = server_ctx();
  std::string err;
  REQUIRE(sctx->set_alpn({"mqtt", "x-amzn-mqtt-ca"}, err));
  CHECK_FALSE(sctx->set_alpn({""}, err));
  tls::ClientOptions o;
  o.ca = cert("ca.crt");
  o.alpn = {"x-amzn-mqtt-ca", "mqtt"};
  auto cctx = Context::client(o, err);
  REQUIRE(cctx);
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.pump();
  CHECK(c.alpn() == "mqtt");  // the server's preference wins
  CHECK(s.alpn() == "mqtt");
  o.alpn = {"h2"};
  auto other = Context::client(o, err);
  REQUIRE(other);
  Engine c2(*other, Role::Client, "localhost");
  Engine s2(*sctx, Role::Server);
  Link l2{c2, s2};
  l2.pump();
  CHECK(c2.handshake_done());  // no common protocol: no ALPN, still connected
  CHECK(c2.alpn().empty());
  sctx.reset();  // engines keep the SSL_CTX (and its ALPN list) alive
  l2.send_all(c2, "after the context is gone");
  CHECK(l2.s_got == "after the context is gone");
}

TEST_CASE("engine with a context of the other role fails instead of misbehaving") {
  auto sctx = server_ctx();
  Engine e(*sctx, Role::Client, "localhost");
  CHECK(e.failed());
  CHECK_FALSE(e.want_write());
  CHECK(e.error().find("client context") != std::string::npos);
  CHECK(e.feed_ciphertext(bytes("abc")) == 0);
  std::vector<uint8_t> out;
  CHECK(e.take_ciphertext(out) == 0);
}
