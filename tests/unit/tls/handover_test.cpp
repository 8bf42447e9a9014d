// The record layer handover (tls/engine.hpp, tls/records.hpp): a server
// Engine gives its TLS 1.3 records to mqttlb's own code and frees OpenSSL's
// SSL; the client stays a plain OpenSSL engine, so every record the server
// seals is checked by OpenSSL and every record it opens was made by OpenSSL.
// A test peer (tls::Records with the client's secrets, from the client
// context's key log) plays a hostile client for what OpenSSL would not send.
#include <doctest/doctest.h>
#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "tls/records.hpp"
#include "tls_link.hpp"

using namespace tls_test;
using tls::Records;

namespace {

// The client side's traffic secrets of the last handshake on this thread.
struct ClientSecrets {
  std::vector<uint8_t> client, server;
};
thread_local ClientSecrets t_secrets;

std::vector<uint8_t> unhex(const std::string& h) {
  std::vector<uint8_t> v;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    v.push_back(static_cast<uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return v;
}

void client_keylog(const SSL*, const char* line) {
  std::string l(line);
  auto secret = [&] { return unhex(l.substr(l.rfind(' ') + 1)); };
  if (l.rfind("CLIENT_TRAFFIC_SECRET_0 ", 0) == 0) t_secrets.client = secret();
  if (l.rfind("SERVER_TRAFFIC_SECRET_0 ", 0) == 0) t_secrets.server = secret();
}

tls::Aead aead_of(const std::string& cipher) {
  if (cipher == "TLS_AES_128_GCM_SHA256") return tls::Aead::Aes128GcmSha256;
  if (cipher == "TLS_AES_256_GCM_SHA384") return tls::Aead::Aes256GcmSha384;
  REQUIRE(cipher == "TLS_CHACHA20_POLY1305_SHA256");
  return tls::Aead::Chacha20Poly1305Sha256;
}

std::unique_ptr<Context> client_with(const char* suite) {
  auto c = client_ctx();
  if (suite) REQUIRE(SSL_CTX_set_ciphersuites(c->native(), suite) == 1);
  SSL_CTX_set_keylog_callback(c->native(), client_keylog);
  return c;
}

const char* kSuites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                         "TLS_CHACHA20_POLY1305_SHA256"};

// A handshake, then the server handed over; the client engine has read the
// server's ticket (one record under the server's secret) and sent nothing.
struct Pair {
  std::unique_ptr<Context> sctx, cctx;
  std::unique_ptr<Engine> c, s;
  std::unique_ptr<Link> l;
  explicit Pair(const char* suite = nullptr) {
    sctx = server_ctx();
    cctx = client_with(suite);
    c = std::make_unique<Engine>(*cctx, Role::Client, "localhost");
    s = std::make_unique<Engine>(*sctx, Role::Server);
    l = std::make_unique<Link>(*c, *s);
    l->pump();
    REQUIRE_MESSAGE(s->handshake_done(), s->error());
    s->allow_handover();
    REQUIRE(s->handed_over());
  }
  // A hostile client with the real client's keys: reads what the server
  // seals, writes what OpenSSL never would.
  std::unique_ptr<Records> peer() {
    auto p = std::make_unique<Records>();
    REQUIRE(p->init(aead_of(c->cipher()), {t_secrets.server, 1}, {t_secrets.client, 0}));
    return p;
  }
  // Feeds raw ciphertext to the server and reads what it gives.
  std::string feed(const std::vector<uint8_t>& wire, size_t chunk = SIZE_MAX) {
    std::string got;
    for (size_t off = 0; off < wire.size();) {
      size_t n = std::min(chunk, wire.size() - off);
      REQUIRE(s->feed_ciphertext(std::span(wire).subspan(off, n)) == n);
      off += n;
      drain(*s, got);
    }
    return got;
  }
  // The server's answer, opened by the peer: (content type, plaintext) of each record.
  std::vector<std::pair<int, std::string>> answer(Records& p) {
    std::vector<uint8_t> wire, sink;
    s->take_ciphertext(wire);
    std::vector<std::pair<int, std::string>> recs;
    size_t off = 0;
    while (off < wire.size()) {
      auto in = std::span(wire).subspan(off);
      // Records::open only yields data; alerts and handshake messages are
      // decoded here from their effect: peek at the inner type first.
      Records::Read r = p.open(in, sink);
      REQUIRE_MESSAGE(r.kind != Records::Read::Kind::NeedMore, "a partial record from the server");
      if (r.kind == Records::Read::Kind::Failed) {
        recs.push_back({-p.peer_alert(), ""});  // the server's fatal alert, negated
        return recs;
      }
      if (r.kind == Records::Read::Kind::Closed) recs.push_back({0, "close_notify"});
      if (r.kind == Records::Read::Kind::Data)
        recs.push_back({23, std::string(reinterpret_cast<char*>(in.data() + r.offset), r.length)});
      if (r.kind == Records::Read::Kind::Record) recs.push_back({1, ""});
      if (r.kind == Records::Read::Kind::Closed) return recs;
      off += r.consumed;
    }
    return recs;
  }
};

// Records sealed in the order given (each seal takes the next sequence
// number, so the order of evaluation matters: no operator+ here).
struct Wire {
  Records& peer;
  std::vector<uint8_t> bytes;
  Wire& rec(uint8_t type, const std::string& data, size_t padding = 0) {
    REQUIRE(peer.seal(type, tls_test::bytes(data), bytes, padding));
    return *this;
  }
  Wire& alert(uint8_t level, uint8_t description) {
    REQUIRE(peer.seal_alert(level, description, bytes));
    return *this;
  }
  Wire& raw(std::vector<uint8_t> b) {
    bytes.insert(bytes.end(), b.begin(), b.end());
    return *this;
  }
};

// The server failed: its error names `why`, and the peer reads its fatal
// alert `alert` (0: none expected), and no plaintext came through.
void check_refused(Pair& p, Records& peer, const std::string& got, const char* why, int alert) {
  CHECK(got.empty());
  REQUIRE(p.s->failed());
  CHECK_MESSAGE(p.s->error().find(why) != std::string::npos, p.s->error());
  if (alert == 0) {
    CHECK(p.s->pending_ciphertext() == 0);
    return;
  }
  auto recs = p.answer(peer);
  REQUIRE(recs.size() == 1);
  CHECK(recs[0].first == -alert);
}

}  // namespace

TEST_CASE("each TLS 1.3 suite is handed over after traffic and keeps working both ways") {
  for (const char* suite : kSuites) {
    CAPTURE(suite);
    auto sctx = server_ctx();
    auto cctx = client_with(suite);
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    // Records under OpenSSL first, so the counted sequence numbers are not 0.
    l.send_all(c, "one");
    l.send_all(c, "two");
    l.send_all(s, "three");
    REQUIRE(l.s_got == "onetwo");
    CHECK(s.cipher() == suite);
    s.allow_handover();
    REQUIRE(s.handed_over());
    CHECK(s.native() == nullptr);
    CHECK(s.protocol() == "TLSv1.3");
    CHECK(s.cipher() == suite);
    std::string up = pattern(300000), down = pattern(200000);
    l.chunk = 777;  // records split across feeds
    l.send_all(c, up);
    l.send_all(s, down);
    CHECK(l.s_got == "onetwo" + up);
    CHECK(l.c_got == "three" + down);
    s.shutdown();
    l.pump();
    CHECK(c.peer_closed());
    c.shutdown();
    l.pump();
    CHECK(s.peer_closed());
    CHECK_FALSE(c.failed());
    CHECK_FALSE(s.failed());
  }
}

TEST_CASE("KeyUpdate from the client, requested or not, after the handover") {
  Pair p;
  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    int type = round % 2 ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED;
    REQUIRE(SSL_key_update(p.c->native(), type) == 1);
    std::string up = "up" + std::to_string(round), down = "down" + std::to_string(round);
    p.l->send_all(*p.c, up);  // the KeyUpdate goes before this data
    CHECK(p.l->s_got.size() >= up.size());
    p.l->send_all(*p.s, down);  // after a request, our KeyUpdate goes first
    CHECK_FALSE(p.c->failed());
    CHECK_FALSE(p.s->failed());
  }
  CHECK(p.l->s_got == "up0up1up2up3");
  CHECK(p.l->c_got == "down0down1down2down3");
}

TEST_CASE("many KeyUpdate requests get one answer, before our next data") {
  Pair p;
  auto peer = p.peer();
  std::vector<uint8_t> wire;
  for (int i = 0; i < 50; ++i) REQUIRE(peer->send_key_update(true, wire));
  CHECK(p.feed(wire).empty());
  CHECK_FALSE(p.s->failed());
  CHECK(p.s->pending_ciphertext() == 0);  // nothing sent until there is data
  REQUIRE(p.s->write_plaintext(bytes("x")) == 1);
  // One KeyUpdate record (5 + 5 + 1 + 16) and the data record (5 + 1 + 1 + 16).
  CHECK(p.s->pending_ciphertext() == 27 + 23);
  // The peer reads the data only if the server moved its write keys once.
  auto recs = p.answer(*peer);
  REQUIRE(recs.size() == 2);
  CHECK(recs[0].first == 1);  // the KeyUpdate (the peer moved its read keys)
  CHECK(recs[1] == std::make_pair(23, std::string("x")));
}

TEST_CASE("a KeyUpdate before the handover keeps the session with OpenSSL") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.pump();
  REQUIRE(SSL_key_update(c.native(), SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
  l.send_all(c, "after update");
  s.allow_handover();
  CHECK_FALSE(s.handed_over());
  CHECK(s.native() != nullptr);
  l.send_all(s, "still fine");
  CHECK(l.c_got == "still fine");
  CHECK(l.s_got == "after update");
}

TEST_CASE("TLS 1.2, and a listener with record_layer openssl, stay with OpenSSL") {
  SUBCASE("TLS 1.2") {
    auto sctx = server_ctx();
    auto cctx = client_ctx();
    SSL_CTX_set_max_proto_version(cctx->native(), TLS1_2_VERSION);
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "v1.2");
    s.allow_handover();
    CHECK_FALSE(s.handed_over());
    l.send_all(s, "ok");
    CHECK(l.c_got == "ok");
  }
  SUBCASE("record_layer openssl") {
    conf::ListenerTls cfg;
    cfg.cert = cert("server.crt");
    cfg.key = cert("server.key");
    cfg.record_layer = conf::ListenerTls::RecordLayer::OpenSsl;
    std::string err;
    auto sctx = Context::server(cfg, err);
    REQUIRE(sctx);
    CHECK_FALSE(sctx->handover());
    auto cctx = client_ctx();
    Engine c(*cctx, Role::Client, "localhost");
    Engine s(*sctx, Role::Server);
    Link l{c, s};
    l.send_all(c, "kept");
    s.allow_handover();
    CHECK_FALSE(s.handed_over());
    CHECK(l.s_got == "kept");
  }
}

TEST_CASE("a record half read by OpenSSL: the handover waits for its end") {
  auto sctx = server_ctx();
  auto cctx = client_ctx();
  Engine c(*cctx, Role::Client, "localhost");
  Engine s(*sctx, Role::Server);
  Link l{c, s};
  l.pump();
  REQUIRE(c.write_plaintext(bytes("split record")) == 12);
  std::vector<uint8_t> wire;
  c.take_ciphertext(wire);
  std::string got;
  REQUIRE(s.feed_ciphertext(std::span(wire).first(10)) == 10);
  drain(s, got);  // OpenSSL holds a header and part of the body
  s.allow_handover();
  CHECK_FALSE(s.handed_over());
  REQUIRE(s.feed_ciphertext(std::span(wire).subspan(10)) == wire.size() - 10);
  drain(s, got);
  CHECK(got == "split record");
  l.send_all(c, " then more");  // the next read hands over
  CHECK(s.handed_over());
  CHECK(l.s_got == " then more");
  l.send_all(s, "answer");
  CHECK(l.c_got == "answer");
}

TEST_CASE("two handed-over sessions interleaved record by record on one thread") {
  // Each record re-keys the per-thread AEAD context: the cache must never
  // use one session's key for the other.
  for (const char* suite : kSuites) {
    CAPTURE(suite);
    Pair a(suite), b(suite);
    for (int i = 0; i < 100; ++i) {
      std::string m = std::to_string(i) + ";";
      a.l->send_all(*a.c, "a" + m);
      b.l->send_all(*b.c, "b" + m);
      a.l->send_all(*a.s, "A" + m);
      b.l->send_all(*b.s, "B" + m);
    }
    CHECK(a.l->s_got.rfind("a99;") == a.l->s_got.size() - 4);
    CHECK(b.l->c_got.rfind("B99;") == b.l->c_got.size() - 4);
    CHECK_FALSE(a.s->failed());
    CHECK_FALSE(b.s->failed());
  }
}

// Each hostile input on a fresh handed-over session, for every suite.
struct Hostile {
  const char* name;
  void (*run)(Pair& p, Records& peer);
};

void refused(Pair& p, Records& peer, Wire& w, const char* why, int alert) {
  check_refused(p, peer, p.feed(w.bytes), why, alert);
}

const Hostile kHostile[] = {
    {"padding, empty records and user_canceled are accepted, byte by byte",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.rec(23, "pad", 200).rec(23, "").alert(1, 90).rec(23, "ded", 1);
       w.rec(23, std::string(16384, 'x'));  // the largest plaintext, no padding
       CHECK(p.feed(w.bytes, 1) == "padded" + std::string(16384, 'x'));
       CHECK_FALSE(p.s->failed());
     }},
    {"a KeyUpdate in two records, then data under the new key",
     [](Pair& p, Records& peer) {
       const std::string ku("\x18\x00\x00\x01\x00", 5);
       Wire w{peer, {}};
       w.rec(22, ku.substr(0, 3)).rec(22, ku.substr(3));
       REQUIRE(peer.next_write_keys());
       w.rec(23, "new key");
       CHECK(p.feed(w.bytes) == "new key");
       CHECK_FALSE(p.s->failed());
     }},
    {"a bad tag",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.rec(23, "tampered");
       w.bytes[7] ^= 1;
       refused(p, peer, w, "bad_record_mac", 20);
     }},
    {"the second record under the first record's sequence number (a replay)",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.rec(23, "once");
       std::vector<uint8_t> again = w.bytes;
       w.raw(again);
       check_refused(p, peer, p.feed(w.bytes).substr(4), "bad_record_mac", 20);
     }},
    {"change_cipher_spec after the handshake",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.raw({20, 3, 3, 0, 1, 1});
       refused(p, peer, w, "change_cipher_spec", 10);
     }},
    {"a record longer than the wire allows, refused from its header",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.raw({23, 3, 3, 0x41, 0x01});
       refused(p, peer, w, "2^14+256", 22);
     }},
    {"a plaintext over 2^14 (padding counts)",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.rec(23, std::string(16384, 'x'), 1);
       refused(p, peer, w, "2^14 bytes", 22);
     }},
    {"a handshake fragment interleaved with data",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.rec(22, std::string("\x18\x00", 2)).rec(23, "data");
       refused(p, peer, w, "interleaved", 10);
     }},
    {"a fatal alert from the client ends it, unanswered",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.alert(2, 80);
       refused(p, peer, w, "internal error", 0);
     }},
    {"close_notify: what follows is ignored, ours goes back",
     [](Pair& p, Records& peer) {
       Wire w{peer, {}};
       w.rec(23, "last").alert(1, 0).raw({1, 2, 3, 4, 5, 6, 7});
       CHECK(p.feed(w.bytes) == "last");
       CHECK(p.s->peer_closed());
       CHECK_FALSE(p.s->failed());
       p.s->shutdown();
       auto recs = p.answer(peer);
       REQUIRE(recs.size() == 1);
       CHECK(recs[0].first == 0);
     }},
};

// One protected record the client may not send, what the server's error
// says, and the alert the client gets back.
struct BadRecord {
  const char* name;
  uint8_t type;
  std::string body;
  size_t padding;
  const char* why;
  int alert;
};

const BadRecord kBadRecords[] = {
    {"a record with no content type", 0, "", 9, "content type", 10},
    {"an unknown content type", 99, "?", 0, "unknown record content type", 10},
    {"a post-handshake message other than KeyUpdate (NewSessionTicket)", 22,
     std::string("\x04\x00\x00\x00", 4), 0, "other than KeyUpdate", 10},
    {"bytes after a KeyUpdate in its record", 22, std::string("\x18\x00\x00\x01\x00\x18", 6), 0,
     "after a KeyUpdate", 10},
    {"a malformed KeyUpdate", 22, std::string("\x18\x00\x00\x02\x00\x00", 6), 0,
     "malformed KeyUpdate", 50},
    {"a KeyUpdate request value that does not exist", 22, std::string("\x18\x00\x00\x01\x02", 5), 0,
     "bad KeyUpdate request", 47},
    {"an empty handshake record", 22, "", 0, "empty handshake record", 10},
    {"a malformed alert", 21, std::string("\x01\x00\x00", 3), 0, "malformed alert", 50},
};

TEST_CASE("a record the client may not send after the handover") {
  for (const char* suite : kSuites) {
    for (const BadRecord& b : kBadRecords) {
      CAPTURE(suite);
      CAPTURE(b.name);
      Pair p(suite);
      auto peer = p.peer();
      Wire w{*peer, {}};
      w.rec(b.type, b.body, b.padding);
      refused(p, *peer, w, b.why, b.alert);
    }
  }
}

TEST_CASE("a hostile client after the handover") {
  for (const char* suite : kSuites) {
    for (const Hostile& h : kHostile) {
      CAPTURE(suite);
      CAPTURE(h.name);
      Pair p(suite);
      auto peer = p.peer();
      h.run(p, *peer);
    }
  }
}
