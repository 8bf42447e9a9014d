// libFuzzer target: the TLS transport's input path (net::TlsTransport, server
// role) over a fake inner transport, as a TLS listener sees a client.
//  - raw mode (first byte even): any ciphertext, cut into reads and
//    interleaved with pauses and resumes chosen by the input. No crash, no
//    leak, no plaintext before a completed handshake.
//  - record mode (first byte odd): a real client engine sends the input's
//    bytes as records of input-chosen sizes, cut into reads at input-chosen
//    points, with pauses; optionally close_notify in the last read. What the
//    transport's user receives must be exactly what was sent, then EOF.
// The certificate is made in memory at start-up (no files in the corpus).
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../unit/net/fake_transport.hpp"
#include "fuzz_check.hpp"
#include "net/tls_transport.hpp"

namespace {

struct Pki {
  std::unique_ptr<tls::Context> server, client;
  Pki() {
    char dir[] = "/tmp/mqttlb-fuzz-tls-XXXXXX";
    FUZZ_CHECK(mkdtemp(dir));
    std::string crt = std::string(dir) + "/s.crt", key = std::string(dir) + "/s.key";
    EVP_PKEY* pk = EVP_EC_gen("P-256");
    X509* x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
    X509_set_pubkey(x, pk);
    X509_NAME* n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(x, n);
    FUZZ_CHECK(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE* f = std::fopen(crt.c_str(), "w");
    PEM_write_X509(f, x);
    std::fclose(f);
    f = std::fopen(key.c_str(), "w");
    PEM_write_PrivateKey(f, pk, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
    conf::ListenerTls cfg;
    cfg.cert = crt;
    cfg.key = key;
    std::string err;
    server = tls::Context::server(cfg, err);
    FUZZ_CHECK(server);
    tls::ClientOptions o;
    o.verify = false;
    client = tls::Context::client(o, err);
    FUZZ_CHECK(client);
    unlink(crt.c_str());
    unlink(key.c_str());
    rmdir(dir);
  }
};

Pki& pki() {
  static Pki p;
  return p;
}

std::string take(tls::Engine& e) {
  std::vector<uint8_t> out;
  e.take_ciphertext(out);
  return std::string(out.begin(), out.end());
}

struct Sink : test::RecordingSink {
  bool handshaken = false;
};

// Feeds `wire` to the transport in reads cut by rng, pausing and resuming the
// user's reads at rng-chosen moments; ends with everything delivered.
void drive(net::TlsTransport* t, test::FakeTransport* inner, test::RecordingSink& sink,
           const std::string& wire, std::mt19937& rng) {
  size_t off = 0;
  for (int guard = 0; guard < 100000 && off < wire.size() && !inner->closed; ++guard) {
    if (rng() % 5 == 0) sink.pause_after = sink.got.size() + 1 + rng() % 3000;
    if (!inner->reading) {
      size_t before = sink.got.size();
      t->start_read();
      // Still not reading without progress and without a pending pause: the
      // transport failed or reported EOF.
      if (!inner->reading && sink.got.size() == before && sink.pause_after == 0) break;
      continue;
    }
    size_t n =
        std::min<size_t>(wire.size() - off, rng() % 4 == 0 ? 1 + rng() % 8 : 1 + rng() % 40000);
    inner->deliver(wire.substr(off, n));
    off += n;
  }
  sink.pause_after = 0;  // the user reads everything that is left
  t->start_read();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Pki& p = pki();
  std::mt19937 rng(static_cast<unsigned>(fuzz_hash(data, size)));
  test::RecordingSink sink;
  auto* inner = new test::FakeTransport;
  auto* t = new net::TlsTransport(inner, &sink, *p.server, tls::Role::Server);
  t->start_read();
  const bool records = data[0] & 1;
  std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (!records) {
    drive(t, inner, sink, input, rng);
    FUZZ_CHECK(t->handshake_done() || sink.got.empty());
  } else {
    tls::Engine client(*p.client, tls::Role::Client, "localhost");
    for (int i = 0; i < 20 && !t->handshake_done() && !inner->closed; ++i) {
      std::string c = take(client);
      if (!c.empty()) inner->deliver(c);
      if (!inner->written.empty()) {
        std::string w;
        w.swap(inner->written);
        client.feed_ciphertext(std::span(reinterpret_cast<const uint8_t*>(w.data()), w.size()));
        uint8_t buf[4096];
        while (client.read_plaintext(buf) > 0) {
        }
      }
    }
    FUZZ_CHECK(t->handshake_done());
    std::string wire;
    for (size_t i = 0; i < input.size();) {
      size_t n = 1 + (rng() % 3 == 0 ? rng() % 16384 : rng() % 200);
      std::string piece = input.substr(i, n);
      FUZZ_CHECK(client.write_plaintext(std::span(reinterpret_cast<const uint8_t*>(piece.data()),
                                                  piece.size())) == piece.size());
      wire += take(client);
      i += piece.size();
    }
    bool fin = rng() % 2;
    if (fin) {
      client.shutdown();
      wire += take(client);
    }
    drive(t, inner, sink, wire, rng);
    FUZZ_CHECK(sink.got == input);
    FUZZ_CHECK(sink.eofs == (fin ? 1 : 0));
  }
  t->close(true);
  inner->finish_close();  // t deletes inner; sink deletes t
  FUZZ_CHECK(sink.closes == 1);
  return 0;
}
