// libFuzzer target (property): a client's bytes — usually a CONNECT and what
// follows — sent over MQTT over WebSocket in input-chosen ways: after the
// Upgrade request (pipelined with the frames or not), cut into binary and
// continuation frames of random sizes with random masks and Pings in
// between, the wire cut into random reads, the user pausing and resuming at
// random points. Through net::WsTransport (server role, over a fake inner
// transport) the user receives exactly the bytes sent, a Pong answers every
// Ping, and the CONNECT peeks to the same ConnectInfo as the raw bytes.
#include <random>
#include <string>
#include <vector>

#include "../unit/net/fake_transport.hpp"
#include "fuzz_check.hpp"
#include "mqtt/connect.hpp"
#include "net/ws_frame.hpp"
#include "net/ws_transport.hpp"

namespace {

void put_frame(std::string& w, uint8_t op, const uint8_t* p, size_t n, bool fin,
               std::mt19937_64& rng) {
  w += static_cast<char>((fin ? 0x80 : 0) | op);
  if (n < 126) {
    w += static_cast<char>(0x80 | n);
  } else if (n <= 0xFFFF) {
    w += static_cast<char>(0x80 | 126);
    w += static_cast<char>(n >> 8);
    w += static_cast<char>(n & 0xFF);
  } else {
    w += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) w += static_cast<char>((uint64_t{n} >> (8 * i)) & 0xFF);
  }
  uint8_t key[4];
  for (auto& k : key) k = static_cast<uint8_t>(rng());
  w.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < n; ++i) w += static_cast<char>(p[i] ^ key[i % 4]);
}

// Pauses after a random amount of delivered bytes (then the test resumes).
struct Sink : test::RecordingSink {
  std::mt19937_64* rng = nullptr;
  void on_read(net::Transport* t, const uint8_t* d, size_t n) override {
    got.append(reinterpret_cast<const char*>(d), n);
    if ((*rng)() % 3 == 0) t->stop_read();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::mt19937_64 rng(fuzz_hash(data, size));
  std::string wire =
      "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Protocol: mqtt\r\n\r\n";
  const size_t head = wire.size();
  int pings = 0;
  bool open = false;
  for (size_t i = 0; i < size || !open;) {
    size_t left = size - i;
    size_t n = std::min<size_t>(left, rng() % 4 == 0 ? rng() % 5 : rng() % 700);
    bool fin = i + n >= size || rng() % 2 == 0;
    put_frame(wire, open ? 0x0 : 0x2, data + i, n, fin, rng);
    open = !fin;
    i += n;
    if (rng() % 5 == 0) {
      uint8_t p[3] = {1, 2, 3};
      put_frame(wire, 0x9, p, rng() % 4, true, rng);
      ++pings;
    }
    if (i >= size && !open) break;
  }
  Sink sink;
  sink.rng = &rng;
  auto* inner = new test::FakeTransport;
  net::WsServerOptions o;
  auto* t = new net::WsTransport(inner, &sink, o, nullptr);
  t->start_read();
  size_t pos = 0;
  const bool pipelined = rng() % 2;
  for (int guard = 0; pos < wire.size() && guard < 1'000'000; ++guard) {
    if (!inner->reading) {  // the user paused: resume (held bytes come first)
      t->start_read();
      continue;
    }
    size_t n = 1 + rng() % 2000;
    if (!pipelined && pos < head) n = std::min(n, head - pos);
    n = std::min(n, wire.size() - pos);
    FUZZ_CHECK(inner->deliver(wire.substr(pos, n)));
    pos += n;
  }
  for (int guard = 0; guard < 100000 && sink.got.size() < size; ++guard) t->start_read();
  FUZZ_CHECK(t->open());
  FUZZ_CHECK(sink.got == std::string(reinterpret_cast<const char*>(data), size));
  FUZZ_CHECK(sink.last_error == 0 && sink.eofs == 0);
  // One Pong per Ping: the written bytes after the 101 decode to exactly that.
  std::string out = inner->written.substr(inner->written.find("\r\n\r\n") + 4);
  net::ws::FrameDecoder peer(net::ws::Role::Client);
  std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(out.data()), out.size());
  int pongs = 0;
  for (net::ws::Event ev; (ev = peer.next(in)).kind != net::ws::Event::Kind::NeedMore;) {
    FUZZ_CHECK(ev.kind == net::ws::Event::Kind::Pong);
    ++pongs;
  }
  FUZZ_CHECK(pongs == pings);
  std::span<const uint8_t> raw(data, size);
  std::span<const uint8_t> got(reinterpret_cast<const uint8_t*>(sink.got.data()), sink.got.size());
  mqtt::ConnectResult a = mqtt::parse_connect(raw, mqtt::kMaxMaxConnectBytes);
  mqtt::ConnectResult b = mqtt::parse_connect(got, mqtt::kMaxMaxConnectBytes);
  FUZZ_CHECK(a.status == b.status && a.error == b.error);
  if (a.status == mqtt::ParseStatus::Done)
    FUZZ_CHECK(a.info.client_id == b.info.client_id &&
               a.info.packet_length == b.info.packet_length && a.info.version == b.info.version &&
               a.info.keep_alive == b.info.keep_alive && a.info.username == b.info.username &&
               a.info.properties == b.info.properties);
  t->close(false);
  inner->finish_close();
  return 0;
}
