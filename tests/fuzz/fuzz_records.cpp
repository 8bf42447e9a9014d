// libFuzzer target: the TLS 1.3 record layer mqttlb takes over from OpenSSL
// (tls/records.hpp), against a hostile client that holds the keys.
//
// The input is a program for the client: records of any content type,
// length and padding (valid or not), its KeyUpdates, raw bytes, flipped
// bits. Its wire bytes go to the server Records whole, and again cut into
// input-chosen reads. Properties:
//  - the same data, end (closed / failed) and error, whatever the cut;
//  - no forged plaintext: what the server delivers is a prefix of the data
//    the client sealed as application data;
//  - a program of valid records only (data of at most 2^14 bytes, any
//    padding within the limit, KeyUpdates) is delivered whole, no failure;
//  - whatever the server seals (its answers, alerts, data) opens cleanly
//    on the client's side until the server's first alert.
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "tls/records.hpp"

namespace {

using tls::Records;

struct Reader {
  const uint8_t* d;
  size_t n;
  size_t pos = 0;
  uint8_t u8() { return pos < n ? d[pos++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() << 8 | u8()); }
  bool done() const { return pos >= n; }
};

const uint8_t kClientSecret[48] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
const uint8_t kServerSecret[48] = {42, 43, 44, 45, 46, 47, 48, 49, 50};

struct Program {
  tls::Aead aead = tls::Aead::Aes128GcmSha256;
  std::vector<uint8_t> wire;
  std::string sealed_data;  // the client's application data, in order
  bool valid = true;        // only records a correct peer may send
};

size_t hash_len(tls::Aead a) {
  return a == tls::Aead::Aes256GcmSha384 ? 48 : 32;
}

bool init(Records& r, tls::Aead a, bool server) {
  std::span<const uint8_t> c(kClientSecret, hash_len(a)), s(kServerSecret, hash_len(a));
  return server ? r.init(a, {c, 0}, {s, 0}) : r.init(a, {s, 0}, {c, 0});
}

Program build(Reader& in) {
  Program p;
  p.aead = static_cast<tls::Aead>(in.u8() % 3);
  Records client;
  FUZZ_CHECK(init(client, p.aead, false));
  for (int ops = 0; !in.done() && ops < 64; ++ops) {
    uint8_t op = in.u8();
    switch (op % 8) {
      default: {  // a data record: length, padding, content from the input
        size_t len = in.u16() % (Records::kMaxPlain + 1);
        size_t pad = in.u8();
        if (op & 0x80) pad = pad * 64 % (Records::kMaxPlain + 2);
        std::string body;
        for (size_t i = 0; i < len && !in.done(); ++i) body.push_back(static_cast<char>(in.u8()));
        if (op & 0x40) body.resize(len, 'z');  // long records without long inputs
        if (body.size() + 1 + pad > Records::kMaxCiphertext - Records::kTag) break;
        if (body.size() + 1 + pad > Records::kMaxPlain + 1) p.valid = false;
        FUZZ_CHECK(client.seal(Records::kTypeData,
                               {reinterpret_cast<const uint8_t*>(body.data()), body.size()}, p.wire,
                               pad));
        p.sealed_data += body;
        break;
      }
      case 4: {  // any content type with any bytes
        uint8_t type = in.u8();
        std::vector<uint8_t> body(in.u8() % 16);
        for (auto& b : body) b = in.u8();
        FUZZ_CHECK(client.seal(type, body, p.wire, in.u8() % 4));
        // The content type is the last non-zero byte of body + type (§5.4):
        // type 0 with a body ending in 23 is application data.
        body.push_back(type);
        while (!body.empty() && body.back() == 0) body.pop_back();
        if (!body.empty() && body.back() == Records::kTypeData)
          p.sealed_data.append(body.begin(), body.end() - 1);
        else
          p.valid = false;
        break;
      }
      case 5:
        FUZZ_CHECK(client.send_key_update(op & 0x10, p.wire));
        break;
      case 6: {  // raw bytes
        size_t k = in.u8() % 32;
        for (size_t i = 0; i < k; ++i) p.wire.push_back(in.u8());
        p.valid = p.valid && k == 0;
        break;
      }
      case 7:
        if (!p.wire.empty()) {
          p.wire[in.u16() % p.wire.size()] ^= static_cast<uint8_t>(1u << (op >> 5));
          p.valid = false;
        }
        break;
    }
  }
  return p;
}

struct Outcome {
  std::string data;
  std::vector<uint8_t> answer;  // what the server sealed
  bool failed = false, closed = false;
  std::string error;
};

Outcome run(const Program& p, unsigned long long cuts) {
  Records server;
  FUZZ_CHECK(init(server, p.aead, true));
  Outcome o;
  std::vector<uint8_t> buf;
  size_t pos = 0;
  while (pos < p.wire.size() && !o.failed && !o.closed) {
    size_t n = cuts ? 1 + cuts % 700 : p.wire.size();
    cuts = cuts * 6364136223846793005ull + 1442695040888963407ull;
    n = std::min(n, p.wire.size() - pos);
    buf.insert(buf.end(), p.wire.begin() + pos, p.wire.begin() + pos + n);
    pos += n;
    size_t off = 0;
    for (;;) {
      Records::Read r = server.open(std::span<uint8_t>(buf).subspan(off), o.answer);
      if (r.kind == Records::Read::Kind::NeedMore) break;
      if (r.kind == Records::Read::Kind::Failed) {
        o.failed = true;
        o.error = server.error();
        break;
      }
      FUZZ_CHECK(r.consumed > 0 && off + r.consumed <= buf.size());
      if (r.kind == Records::Read::Kind::Data) {
        FUZZ_CHECK(r.length > 0 && r.length <= Records::kMaxPlain);
        FUZZ_CHECK(r.offset + r.length <= r.consumed);
        o.data.append(reinterpret_cast<const char*>(buf.data() + off + r.offset), r.length);
      }
      off += r.consumed;
      if (r.kind == Records::Read::Kind::Closed) {
        o.closed = true;
        break;
      }
    }
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(off));
    FUZZ_CHECK(buf.size() <= Records::kHeader + Records::kMaxCiphertext || o.failed);
  }
  // Sticky: a failed or closed record layer gives nothing more.
  std::vector<uint8_t> more(p.wire), sink;
  if (o.failed) FUZZ_CHECK(server.open(more, sink).kind == Records::Read::Kind::Failed);
  if (!o.failed) {  // the server still writes; its data follows any KeyUpdate answer
    const uint8_t hello[5] = {'h', 'e', 'l', 'l', 'o'};
    FUZZ_CHECK(server.seal_data(hello, o.answer));
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  Program p = build(in);
  Outcome whole = run(p, 0);
  Outcome cut = run(p, fuzz_hash(data, size) | 1);
  FUZZ_CHECK(whole.data == cut.data && whole.failed == cut.failed && whole.closed == cut.closed &&
             whole.error == cut.error);
  FUZZ_CHECK(p.sealed_data.compare(0, whole.data.size(), whole.data) == 0);
  if (p.valid) {
    FUZZ_CHECK(!whole.failed);
    if (!whole.closed) FUZZ_CHECK(whole.data == p.sealed_data);
  }
  // The client opens what the server sealed. It cannot follow the server's
  // reads (its KeyUpdates moved the client's own write keys only), so it
  // checks the answer of a server that failed before any KeyUpdate of ours:
  // every record opens, the last is the alert or our data.
  Records client;
  FUZZ_CHECK(init(client, p.aead, false));
  std::vector<uint8_t> sink;
  std::span<uint8_t> ans(whole.answer);
  while (!ans.empty()) {
    Records::Read r = client.open(ans, sink);
    if (r.kind == Records::Read::Kind::Failed) {
      // The server's fatal alert, received: no other failure is allowed.
      FUZZ_CHECK(client.peer_alert() >= 0);
      break;
    }
    FUZZ_CHECK(r.kind != Records::Read::Kind::NeedMore);
    ans = ans.subspan(r.consumed);
  }
  return 0;
}
