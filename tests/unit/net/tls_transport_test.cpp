// net::TlsTransport over a fake inner transport, against a real tls::Engine
// client: the contract the session stages rely on. Above all: bytes the
// transport already received are never lost or reordered when its user stops
// reading — whatever the record sizes and however the records were cut into
// reads — and close_notify is reported only after them (issue 9, defect 1).
#include "net/tls_transport.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "../tls/tls_pki.hpp"
#include "fake_transport.hpp"

using test::FakeTransport;
using test::RecordingSink;
using namespace std::string_literals;

namespace {

std::unique_ptr<tls::Context> server_ctx() {
  conf::ListenerTls cfg;
  cfg.cert = tls_test::cert("server.crt");
  cfg.key = tls_test::cert("server.key");
  std::string err;
  auto c = tls::Context::server(cfg, err);
  REQUIRE_MESSAGE(c, err);
  return c;
}

std::unique_ptr<tls::Context> client_ctx() {
  tls::ClientOptions o;
  o.ca = tls_test::cert("ca.crt");
  std::string err;
  auto c = tls::Context::client(o, err);
  REQUIRE_MESSAGE(c, err);
  return c;
}

std::string take(tls::Engine& e) {
  std::vector<uint8_t> out;
  e.take_ciphertext(out);
  return std::string(out.begin(), out.end());
}

// A server-role TlsTransport over a FakeTransport, handshaken with a client engine.
struct Rig {
  std::unique_ptr<tls::Context> sctx = server_ctx(), cctx = client_ctx();
  RecordingSink sink;
  FakeTransport* inner = new FakeTransport;
  net::TlsTransport* t = new net::TlsTransport(inner, &sink, *sctx, tls::Role::Server);
  tls::Engine client{*cctx, tls::Role::Client, "localhost"};
  std::string client_got;

  Rig() {
    t->start_read();
    REQUIRE(inner->reading);
    for (int i = 0; i < 20 && !client.handshake_done(); ++i) {
      std::string c = take(client);
      if (!c.empty()) REQUIRE(inner->deliver(c));
      pull();
    }
    REQUIRE(client.handshake_done());
    std::string fin = take(client);  // the client's Finished
    if (!fin.empty()) REQUIRE(inner->deliver(fin));
    pull();
    REQUIRE(t->handshake_done());
  }
  ~Rig() {
    t->close(true);
    inner->finish_close();  // -> t deletes inner, sink deletes t
  }
  // Server -> client: what the transport wrote on the inner side.
  void pull() {
    if (inner->written.empty()) return;
    std::string w;
    w.swap(inner->written);
    client.feed_ciphertext(std::span(reinterpret_cast<const uint8_t*>(w.data()), w.size()));
    uint8_t buf[65536];
    for (size_t n; (n = client.read_plaintext(buf)) > 0;)
      client_got.append(reinterpret_cast<char*>(buf), n);
  }
  // Client plaintext as records of `record` bytes each; returns the ciphertext.
  std::string records(const std::string& plain, size_t record) {
    std::string wire;
    for (size_t i = 0; i < plain.size(); i += record) {
      auto piece = plain.substr(i, record);
      REQUIRE(client.write_plaintext(std::span(reinterpret_cast<const uint8_t*>(piece.data()),
                                               piece.size())) == piece.size());
      wire += take(client);
    }
    return wire;
  }
};

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace

TEST_CASE("stop_read holds every record of the same read; start_read delivers them in order") {
  Rig r;
  std::string plain = pattern(20 * 1024 + 37, 1);
  std::string wire = r.records(plain, 700);  // 30 records in one TCP read
  r.sink.pause_after = 1;                    // the user pauses after the first record
  REQUIRE(r.inner->deliver(wire));
  CHECK(r.sink.got.size() == 700);  // one record delivered, then nothing while paused
  CHECK_FALSE(r.inner->reading);    // and the socket is not read either
  CHECK_FALSE(r.inner->deliver("x"));
  for (int i = 0; i < 100 && r.sink.got.size() < plain.size(); ++i) {
    r.sink.pause_after = r.sink.got.size() + 1;  // pause again after each record
    r.t->start_read();
  }
  CHECK(r.sink.got == plain);
  r.t->start_read();
  CHECK(r.inner->reading);  // everything out: the socket is read again
}

TEST_CASE("close_notify and data in one read: EOF only after the data, even across a pause") {
  Rig r;
  std::string plain = pattern(5000, 2);
  std::string wire = r.records(plain, 1000);
  r.client.shutdown();
  wire += take(r.client);  // close_notify right behind the data
  r.sink.pause_after = 1;
  REQUIRE(r.inner->deliver(wire));
  CHECK(r.sink.got.size() == 1000);
  CHECK(r.sink.eofs == 0);
  r.t->start_read();
  CHECK(r.sink.got == plain);
  CHECK(r.sink.eofs == 1);
  r.t->start_read();
  CHECK(r.sink.eofs == 1);  // reported once
}

TEST_CASE("a TCP EOF behind held records is reported after them") {
  Rig r;
  std::string plain = pattern(3000, 3);
  std::string wire = r.records(plain, 1000);
  r.t->stop_read();
  r.inner->reading = true;  // the kernel had the bytes and the FIN already
  REQUIRE(r.inner->deliver(wire));
  CHECK(r.sink.got.empty());
  r.inner->eof();
  CHECK(r.sink.eofs == 0);
  r.t->start_read();
  CHECK(r.sink.got == plain);
  CHECK(r.sink.eofs == 1);
}

TEST_CASE("property: any record sizes, any read boundaries, any pauses: bytes out = bytes in") {
  for (unsigned seed = 1; seed <= 60; ++seed) {
    CAPTURE(seed);
    Rig r;
    std::mt19937 rng(seed);
    std::string plain = pattern(1 + rng() % 60000, seed);
    std::string wire;
    for (size_t i = 0; i < plain.size();) {
      size_t n = 1 + rng() % (rng() % 3 == 0 ? 16384 : 300);
      wire += r.records(plain.substr(i, n), n);
      i += n;
    }
    bool fin = rng() % 2;
    if (fin) {
      r.client.shutdown();
      wire += take(r.client);
    }
    size_t off = 0;
    for (int guard = 0; guard < 200000 && (off < wire.size() || r.sink.got.size() < plain.size());
         ++guard) {
      if (rng() % 4 == 0) r.sink.pause_after = r.sink.got.size() + 1 + rng() % 5000;
      if (!r.inner->reading) {
        r.t->start_read();
        continue;
      }
      if (off >= wire.size()) {
        r.t->start_read();
        continue;
      }
      size_t n = std::min<size_t>(wire.size() - off, rng() % 3 == 0 ? 1 : 1 + rng() % 65536);
      REQUIRE(r.inner->deliver(wire.substr(off, n)));
      off += n;
    }
    r.t->start_read();
    CHECK(r.sink.got.size() == plain.size());
    CHECK(r.sink.got == plain);
    CHECK(r.sink.eofs == (fin ? 1 : 0));
  }
}

TEST_CASE("garbage after the handshake fails the transport, never crashes") {
  Rig r;
  std::string junk = "\x17\x03\x03\x00\x10" + std::string(16, 'z');
  REQUIRE(r.inner->deliver(junk));
  CHECK(r.sink.last_error == net::TlsTransport::kTlsFailed);
}

TEST_CASE("server role: a failed handshake is reported with its reason") {
  auto sctx = server_ctx();
  struct Obs : net::TlsObserver {
    void on_tls_handshake(const tls::Engine&, double) override {}
    void on_tls_failure(net::TlsFail why, const std::string&, bool) override {
      reasons.push_back(why);
    }
    std::vector<net::TlsFail> reasons;
  } obs;
  RecordingSink sink;
  auto* inner = new FakeTransport;
  auto* t = new net::TlsTransport(inner, &sink, *sctx, tls::Role::Server, {}, &obs);
  t->start_read();
  REQUIRE(inner->deliver("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"));  // HTTP on the TLS port
  CHECK(sink.last_error == net::TlsTransport::kTlsFailed);
  REQUIRE(obs.reasons.size() == 1);
  CHECK(obs.reasons[0] == net::TlsFail::HttpRequest);
  t->close(true);
  inner->finish_close();
  CHECK(sink.closes == 1);
}

TEST_CASE("classify_tls_error") {
  CHECK(net::classify_tls_error("TLS handshake failed: http request") == net::TlsFail::HttpRequest);
  CHECK(net::classify_tls_error("wrong version number") == net::TlsFail::NotTls);
  CHECK(net::classify_tls_error("peer did not return a certificate") == net::TlsFail::NoClientCert);
  CHECK(net::classify_tls_error("tlsv1 alert unknown ca") == net::TlsFail::UnknownCa);
  CHECK(net::classify_tls_error("no shared cipher") == net::TlsFail::NoSharedCipher);
  CHECK(net::classify_tls_error("certificate expired") == net::TlsFail::BadCertificate);
  CHECK(net::classify_tls_error("something else") == net::TlsFail::Other);
}

TEST_CASE(
    "client role over a connected inner: preamble, ClientHello, on_connect after the handshake") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  RecordingSink sink;
  auto* inner = new FakeTransport;  // "connected" by its user before the TLS layer existed
  auto* t = new net::TlsTransport(inner, &sink, *cctx, tls::Role::Client, "localhost");
  t->set_preamble({'P', 'R', 'O', 'X', 'Y', '\n'});
  REQUIRE(t->begin_handshake() == 0);
  CHECK(t->begin_handshake() == UV_EINVAL);  // once
  REQUIRE(inner->written.size() > 6);
  CHECK(inner->written.substr(0, 6) == "PROXY\n");  // plaintext first ...
  CHECK(inner->written[6] == 0x16);                 // ... then a TLS handshake record
  CHECK(inner->reading);
  CHECK(sink.connects == 0);  // not before the handshake completed

  tls::Engine server(*sctx, tls::Role::Server);
  std::string to_server = inner->written.substr(6);
  inner->written.clear();
  for (int i = 0; i < 20 && sink.connects == 0; ++i) {
    server.feed_ciphertext(
        std::span(reinterpret_cast<const uint8_t*>(to_server.data()), to_server.size()));
    uint8_t buf[4096];
    while (server.read_plaintext(buf) > 0) {
    }
    std::string back = take(server);
    if (!back.empty()) REQUIRE(inner->deliver(back));
    to_server.swap(inner->written);
    inner->written.clear();
  }
  CHECK(sink.connects == 1);
  CHECK(sink.connect_status == 0);
  t->start_read();
  const uint8_t ping[] = {0xC0, 0x00};
  REQUIRE(t->write(ping, sizeof ping) == 0);
  std::string wire = to_server + inner->written;
  server.feed_ciphertext(std::span(reinterpret_cast<const uint8_t*>(wire.data()), wire.size()));
  uint8_t got[16];
  size_t n = 0;
  for (size_t k; (k = server.read_plaintext(std::span(got + n, sizeof got - n))) > 0;) n += k;
  CHECK(std::string(reinterpret_cast<char*>(got), n) == "\xC0\x00"s);

  t->close(true);
  inner->finish_close();
  CHECK(sink.closes == 1);
}

TEST_CASE("begin_handshake is for the client role only") {
  auto sctx = server_ctx();
  RecordingSink sink;
  auto* inner = new FakeTransport;
  auto* t = new net::TlsTransport(inner, &sink, *sctx, tls::Role::Server);
  CHECK(t->begin_handshake() == UV_EINVAL);
  CHECK(inner->written.empty());
  t->close(true);
  inner->finish_close();
}
