// Test helpers shared by the engine tests (tls_test.cpp, handover_test.cpp):
// contexts on the throwaway PKI, and a Link that pumps ciphertext between a
// client and a server Engine in memory, in chunks, reading plaintext after
// each feed as a socket loop would.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "tls/context.hpp"
#include "tls/engine.hpp"
#include "tls_pki.hpp"

namespace tls_test {

using tls::Context;
using tls::Engine;
using tls::Role;

using Verify = conf::ListenerTls::Verify;

inline std::unique_ptr<Context> server_ctx(const std::string& crt = "server.crt",
                                           const std::string& key = "server.key",
                                           Verify verify = Verify::None,
                                           const std::string& ca = "") {
  conf::ListenerTls cfg;
  cfg.cert = cert(crt);
  cfg.key = cert(key);
  cfg.verify_client = verify;
  if (!ca.empty()) cfg.ca = cert(ca);
  std::string err;
  auto c = Context::server(cfg, err);
  INFO(err);
  REQUIRE(c);
  CHECK(err.empty());
  return c;
}

inline std::unique_ptr<Context> client_ctx(const std::string& ca = "ca.crt",
                                           const std::string& crt = "",
                                           const std::string& key = "") {
  tls::ClientOptions o;
  o.ca = cert(ca);
  if (!crt.empty()) {
    o.cert = cert(crt);
    o.key = cert(key);
  }
  std::string err;
  auto c = Context::client(o, err);
  INFO(err);
  REQUIRE(c);
  return c;
}

inline std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// tls_test_handover runs every case again with MQTTLB_TLS_HANDOVER=1: each
// server engine hands its records over (tls/records.hpp) as soon as its
// handshake is done, so the same properties hold on both record layers.
inline bool handover_run() {
  static const bool on = std::getenv("MQTTLB_TLS_HANDOVER") != nullptr;
  return on;
}

// In the handover run, a TLS 1.3 server engine must really have handed over
// (a case that passes on OpenSSL's record layer alone proves nothing there).
inline void check_record_layer(const Engine& s) {
  if (handover_run() && s.protocol() == "TLSv1.3") CHECK(s.handed_over());
}

// Reads every plaintext byte available into got; returns how many.
inline size_t drain(Engine& e, std::string& got) {
  if (handover_run() && e.role() == Role::Server && e.handshake_done()) e.allow_handover();
  uint8_t buf[4096];
  size_t total = 0;
  while (size_t n = e.read_plaintext(buf)) {
    got.append(reinterpret_cast<char*>(buf), n);
    total += n;
  }
  return total;
}

// One direction: takes `from`'s pending ciphertext and feeds it to `to` in
// pieces of at most `chunk` bytes, reading `to`'s plaintext after each feed
// (as a socket loop would). Returns false if there was nothing to move.
inline bool transfer(Engine& from, Engine& to, std::string& to_got, size_t chunk) {
  std::vector<uint8_t> buf;
  from.take_ciphertext(buf);
  if (buf.empty()) return false;
  size_t off = 0;
  while (off < buf.size() && !to.failed()) {
    size_t want = std::min(chunk, buf.size() - off);
    size_t n = to.feed_ciphertext(std::span(buf).subspan(off, want));
    // documented guarantee: after draining plaintext, a feed of up to
    // max_ciphertext_in - kMaxRecordSize bytes is accepted whole
    if (want <= Engine::Limits{}.max_ciphertext_in - Engine::kMaxRecordSize && !to.failed())
      REQUIRE(n == want);
    off += n;
    size_t r = drain(to, to_got);
    REQUIRE((n > 0 || r > 0 || to.failed()));  // never stuck while its plaintext is read
  }
  return true;
}

struct Link {
  Link(Engine& client, Engine& server) : c(client), s(server) {}
  Engine& c;
  Engine& s;
  std::string c_got, s_got;  // plaintext received by the client / the server
  size_t chunk = SIZE_MAX;

  // Moves bytes both ways until neither side has anything to send.
  void pump() {
    for (int round = 0; round < 100000; ++round) {
      bool a = transfer(c, s, s_got, chunk);
      drain(c, c_got);
      bool b = transfer(s, c, c_got, chunk);
      drain(s, s_got);
      if (!a && !b) return;
    }
    FAIL("the two engines never went quiet");
  }

  // Writes all of `data` from `from`, pumping whenever the engine is full.
  void send_all(Engine& from, const std::string& data) {
    size_t off = 0;
    for (int round = 0; off < data.size(); ++round) {
      REQUIRE(round < 1000000);
      size_t n = from.write_plaintext(bytes(data).subspan(off));
      off += n;
      REQUIRE(!from.failed());
      pump();
    }
    pump();
  }
};

inline std::string pattern(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u;
  for (auto& ch : s) {  // xorshift: no repeating period a bug could hide in
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    ch = static_cast<char>(x);
  }
  return s;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace tls_test
