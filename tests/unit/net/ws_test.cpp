// MQTT over WebSocket: the Upgrade parser and answer, the frame decoder, and
// net::WsTransport over a fake inner transport (both roles). The frames the
// tests send are built by hand here (not by the code under test), masked with
// chosen keys, fragmented and split anywhere.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "fake_transport.hpp"
#include "net/ws_frame.hpp"
#include "net/ws_http.hpp"
#include "net/ws_transport.hpp"

using test::FakeTransport;
using test::RecordingSink;
using namespace net;

namespace {

// One frame as a client (masked) or server (unmasked) would send it.
std::string frame(uint8_t opcode, const std::string& payload, bool fin = true, bool mask = true,
                  uint32_t key = 0x37fa213d) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | opcode);
  const char m = mask ? static_cast<char>(0x80) : 0;
  const size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(m | static_cast<char>(n));
  } else if (n <= 0xFFFF) {
    f += static_cast<char>(m | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xFF);
  } else {
    f += static_cast<char>(m | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((uint64_t{n} >> (8 * i)) & 0xFF);
  }
  uint8_t k[4] = {static_cast<uint8_t>(key >> 24), static_cast<uint8_t>(key >> 16),
                  static_cast<uint8_t>(key >> 8), static_cast<uint8_t>(key)};
  if (mask) f.append(reinterpret_cast<const char*>(k), 4);
  for (size_t i = 0; i < n; ++i)
    f += static_cast<char>(mask ? static_cast<uint8_t>(payload[i]) ^ k[i % 4] : payload[i]);
  return f;
}

std::string upgrade(const std::string& path = "/mqtt", const std::string& proto = "mqtt",
                    const std::string& extra = "") {
  return "GET " + path +
         " HTTP/1.1\r\nHost: lb.example\r\nUpgrade: websocket\r\nConnection: keep-alive, "
         "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
         "13\r\n" +
         (proto.empty() ? "" : "Sec-WebSocket-Protocol: " + proto + "\r\n") + extra + "\r\n";
}

// A CONNECT (3.1.1, client id "dev-1"), a PINGREQ and a DISCONNECT.
const std::string kConnect(
    "\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05"
    "dev-1",
    19);
const std::string kPingreq("\xc0\x00", 2);

struct Decoded {
  std::string data;
  std::vector<ws::Event::Kind> kinds;
  uint16_t code = 0;
  ws::FrameError error = ws::FrameError::None;
};

Decoded decode_all(ws::FrameDecoder& d, const std::string& bytes, size_t step = 0) {
  Decoded out;
  size_t pos = 0;
  do {
    size_t n = step ? std::min(step, bytes.size() - pos) : bytes.size() - pos;
    std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(bytes.data()) + pos, n);
    pos += n;
    for (;;) {
      ws::Event ev = d.next(in);
      if (ev.kind == ws::Event::Kind::NeedMore) break;
      out.kinds.push_back(ev.kind);
      if (ev.kind == ws::Event::Kind::Data)
        out.data.append(reinterpret_cast<const char*>(ev.data), ev.len);
      if (ev.kind == ws::Event::Kind::Close || ev.kind == ws::Event::Kind::Error) {
        out.code = ev.code;
        out.error = ev.error;
      }
    }
  } while (pos < bytes.size());
  return out;
}

// Frames the transport wrote (after the 101), decoded as the peer would.
Decoded peer_view(const std::string& written, ws::Role peer) {
  ws::FrameDecoder d(peer);
  return decode_all(d, written);
}

struct Observer : WsObserver {
  std::vector<ws::Result> results;
  std::vector<ws::FrameError> errors;
  void on_ws_handshake(ws::Role, ws::Result r) override { results.push_back(r); }
  void on_ws_protocol_error(ws::Role, ws::FrameError e) override { errors.push_back(e); }
};

// A server-role WsTransport over a FakeTransport.
struct Server {
  Observer obs;
  RecordingSink sink;
  FakeTransport* inner = new FakeTransport;
  WsTransport* t;
  explicit Server(size_t max = 8192) {
    WsServerOptions o;
    o.path = "/mqtt";
    o.max_handshake_bytes = max;
    t = new WsTransport(inner, &sink, o, &obs);
    t->start_read();
  }
  ~Server() {
    t->close(false);
    inner->finish_close();  // deletes inner and, through the sink, t
  }
  void open() {
    REQUIRE(inner->deliver(upgrade()));
    REQUIRE(t->open());
    inner->written.clear();
  }
};

}  // namespace

TEST_CASE("ws: the RFC 6455 example key gives the RFC's accept value") {
  CHECK(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK(ws::valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK_FALSE(ws::valid_key("dGhlIHNhbXBsZSBub25jZQ"));
  CHECK_FALSE(ws::valid_key("dGhlIHNhbXBsZSBub25j*Q=="));
  CHECK(ws::valid_key(ws::new_key()));
}

TEST_CASE("ws: the Upgrade request parses the same whole or byte by byte, and keeps what follows") {
  const std::string req = upgrade() + "FRAMES";
  for (size_t step : {req.size(), size_t{1}, size_t{7}}) {
    ws::HeadParser p(ws::HeadParser::Kind::Request, 8192);
    size_t pos = 0, used = 0;
    ws::HeadParser::Status st = ws::HeadParser::Status::NeedMore;
    while (st == ws::HeadParser::Status::NeedMore && pos < req.size()) {
      size_t n = std::min(step, req.size() - pos);
      st = p.feed(reinterpret_cast<const uint8_t*>(req.data()) + pos, n, used);
      pos += used;
      if (used < n) break;
    }
    REQUIRE(st == ws::HeadParser::Status::Done);
    CHECK(req.substr(pos) == "FRAMES");
    const ws::Request& r = p.request();
    CHECK(r.method == "GET");
    CHECK(r.target == "/mqtt");
    CHECK(r.key == "dGhlIHNhbXBsZSBub25jZQ==");
    ws::Answer a = ws::decide(r, "/mqtt");
    CHECK(a.result == ws::Result::Ok);
    CHECK(a.subprotocol == "mqtt");
  }
}

TEST_CASE("ws: requests that are refused, and why") {
  auto answer = [](const std::string& req) {
    ws::HeadParser p(ws::HeadParser::Kind::Request, 8192);
    size_t used = 0;
    auto st = p.feed(reinterpret_cast<const uint8_t*>(req.data()), req.size(), used);
    if (st != ws::HeadParser::Status::Done) return ws::Answer{p.error(), 0, "", ""};
    return ws::decide(p.request(), "/mqtt");
  };
  CHECK(answer(upgrade("/other")).status == 404);
  CHECK(answer(upgrade("/mqtt?token=1")).result == ws::Result::Ok);  // the query is not the path
  CHECK(answer("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").status == 426);
  CHECK(answer(upgrade("/mqtt", "mqtt", "Sec-WebSocket-Version: 8\r\n")).status == 426);
  CHECK(answer(upgrade("/mqtt", "")).result == ws::Result::BadSubprotocol);
  CHECK(answer(upgrade("/mqtt", "wamp, graphql-ws")).result == ws::Result::BadSubprotocol);
  CHECK(answer(upgrade("/mqtt", "mqttv3.1")).subprotocol == "mqttv3.1");
  CHECK(answer(upgrade("/mqtt", "mqttv3.1, mqtt")).subprotocol == "mqtt");
  CHECK(answer("POST /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").status == 405);
  CHECK(answer("GET /mqtt HTTP/1.0\r\nHost: x\r\n\r\n").status == 400);
  CHECK(answer("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").result ==
        ws::Result::BadRequest);
  CHECK(answer("GET /mqtt HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd").result ==
        ws::Result::BadRequest);
  ws::HeadParser small(ws::HeadParser::Kind::Request, 100);
  std::string big = "GET /mqtt HTTP/1.1\r\nCookie: " + std::string(200, 'a') + "\r\n\r\n";
  size_t used = 0;
  CHECK(small.feed(reinterpret_cast<const uint8_t*>(big.data()), big.size(), used) ==
        ws::HeadParser::Status::Error);
  CHECK(small.error() == ws::Result::TooLarge);
  CHECK(used <= 100);
  // Error pages never echo the request.
  CHECK(ws::error_response(404, "x").find("/other") == std::string::npos);
}

TEST_CASE(
    "ws: fragmented, masked frames with a Ping in between decode to the stream, at any split") {
  const std::string msg = kConnect + kPingreq;
  std::string wire = frame(ws::kOpBinary, msg.substr(0, 5), false, true, 0x01020304) +
                     frame(ws::kOpPing, "hi", true, true, 0xdeadbeef) +
                     frame(ws::kOpContinuation, msg.substr(5, 9), false, true, 0) +
                     frame(ws::kOpContinuation, msg.substr(14), true, true, 0xffffffff) +
                     frame(ws::kOpBinary, "", true) + frame(ws::kOpBinary, std::string(70000, 'x'));
  for (size_t step : {size_t{0}, size_t{1}, size_t{3}, size_t{4097}}) {
    ws::FrameDecoder d(ws::Role::Server);
    Decoded out = decode_all(d, wire, step);
    CHECK(out.data == msg + std::string(70000, 'x'));
    CHECK(out.error == ws::FrameError::None);
    CHECK(std::count(out.kinds.begin(), out.kinds.end(), ws::Event::Kind::Ping) == 1);
    CHECK(d.idle());  // between frames: nothing held
  }
}

TEST_CASE("ws: the encoder's frames, masked and not, in any order, decode to their payload") {
  // wslay keeps a context's "masked" flag: a masked frame must not taint the next plain one.
  for (int round = 0; round < 2; ++round) {
    for (bool mask : {true, false, true, false, false}) {
      std::vector<uint8_t> out;
      std::string p = "hello " + std::string(mask ? 200 : 70000, 'z');
      ws::append_frame(out, ws::kOpBinary, reinterpret_cast<const uint8_t*>(p.data()), p.size(),
                       mask);
      std::string wire(out.begin(), out.end());
      if (!mask) CHECK(wire == frame(ws::kOpBinary, p, true, false));
      Decoded d = peer_view(wire, mask ? ws::Role::Server : ws::Role::Client);
      CHECK(d.data == p);
      CHECK(d.error == ws::FrameError::None);
    }
  }
}

TEST_CASE("ws: frames a server must refuse") {
  auto err = [](const std::string& wire, ws::Role r = ws::Role::Server) {
    ws::FrameDecoder d(r);
    return decode_all(d, wire, 1);
  };
  CHECK(err(frame(ws::kOpBinary, "abc", true, false)).error == ws::FrameError::Unmasked);
  CHECK(err(frame(ws::kOpBinary, "abc", true, true), ws::Role::Client).error ==
        ws::FrameError::Unmasked);
  Decoded text = err(frame(ws::kOpText, "abc"));
  CHECK(text.error == ws::FrameError::TextFrame);
  CHECK(text.code == ws::kCloseUnsupported);
  CHECK(err(frame(ws::kOpContinuation, "abc")).error == ws::FrameError::BadContinuation);
  CHECK(err(frame(ws::kOpBinary, "a", false) + frame(ws::kOpBinary, "b")).error ==
        ws::FrameError::BadContinuation);
  CHECK(err(frame(0x3, "a")).error == ws::FrameError::BadOpcode);
  std::string rsv = frame(ws::kOpBinary, "a");
  rsv[0] = static_cast<char>(rsv[0] | 0x40);
  CHECK(err(rsv).error == ws::FrameError::BadOpcode);
  CHECK(err(frame(ws::kOpPing, std::string(126, 'p'))).error == ws::FrameError::Malformed);
  CHECK(err(frame(ws::kOpPing, "p", false)).error == ws::FrameError::Malformed);
  CHECK(err(frame(ws::kOpClose, "x")).error == ws::FrameError::BadClose);
  CHECK(err(frame(ws::kOpClose, std::string("\x03\xe7", 2))).error == ws::FrameError::BadClose);
  Decoded close = err(frame(ws::kOpClose, std::string("\x03\xe8", 2)) + frame(ws::kOpBinary, "z"));
  CHECK(close.code == 1000);
  CHECK(close.data.empty());  // nothing after a Close
  // Non-minimal length: 5 bytes announced in the 16-bit form.
  CHECK(err(std::string("\x82\xfe\x00\x05\x00\x00\x00\x00hello", 13)).error ==
        ws::FrameError::Malformed);
}

TEST_CASE("ws transport: handshake, then a CONNECT split byte by byte across frames") {
  Server s;
  REQUIRE(s.inner->deliver(upgrade()));
  CHECK(s.inner->written.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
  CHECK(s.inner->written.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") !=
        std::string::npos);
  CHECK(s.inner->written.find("Sec-WebSocket-Protocol: mqtt\r\n") != std::string::npos);
  CHECK(s.obs.results == std::vector<ws::Result>{ws::Result::Ok});
  std::string wire;
  for (size_t i = 0; i < kConnect.size(); i += 4)
    wire += frame(i == 0 ? ws::kOpBinary : ws::kOpContinuation, kConnect.substr(i, 4),
                  i + 4 >= kConnect.size());
  for (char c : wire) REQUIRE(s.inner->deliver(std::string(1, c)));
  CHECK(s.sink.got == kConnect);
  CHECK_FALSE(s.t->holds_buffers());
  // Our answer: one unmasked binary frame.
  s.inner->written.clear();
  REQUIRE(s.t->write(reinterpret_cast<const uint8_t*>("\x20\x02\x00\x00"), 4) == 0);
  CHECK(s.inner->written == frame(ws::kOpBinary, std::string("\x20\x02\x00\x00", 4), true, false));
}

TEST_CASE("ws transport: request and frames in one read; a pause keeps the rest in order") {
  Server s;
  s.sink.pause_after = 3;
  std::string data(200000, '\0');
  std::mt19937 rng(7);
  for (auto& c : data) c = static_cast<char>(rng());
  std::string wire = upgrade();
  for (size_t i = 0; i < data.size(); i += 10000)
    wire += frame(ws::kOpBinary, data.substr(i, 10000));
  REQUIRE(s.inner->deliver(wire));
  REQUIRE(s.t->open());
  CHECK_FALSE(s.inner->reading);  // paused: the inner read is stopped
  CHECK(s.sink.got.size() < data.size());
  CHECK(s.sink.got == data.substr(0, s.sink.got.size()));
  s.t->start_read();  // the rest, from inside start_read
  CHECK(s.sink.got == data);
  CHECK(s.inner->reading);
  CHECK_FALSE(s.t->holds_buffers());
}

TEST_CASE(
    "ws transport: Ping gets a Pong; Close ends the stream after its bytes; ours on shutdown") {
  Server s;
  s.open();
  REQUIRE(s.inner->deliver(frame(ws::kOpBinary, kPingreq) + frame(ws::kOpPing, "abc") +
                           frame(ws::kOpClose, std::string("\x03\xe8", 2)) +
                           frame(ws::kOpBinary, "late")));
  CHECK(s.sink.got == kPingreq);
  CHECK(s.sink.eofs == 1);
  Decoded pong = peer_view(s.inner->written, ws::Role::Client);
  REQUIRE(pong.kinds.size() == 1);
  CHECK(pong.kinds[0] == ws::Event::Kind::Pong);
  s.inner->written.clear();
  s.t->shutdown();
  CHECK(s.inner->shut);
  Decoded close = peer_view(s.inner->written, ws::Role::Client);
  CHECK(close.code == 1000);
  // A refusal CONNACK written before, would go out before the Close: nothing after it.
  CHECK(s.t->write(reinterpret_cast<const uint8_t*>("x"), 1) != 0);
}

TEST_CASE("ws transport: EOF in the middle of a frame is an EOF after the bytes before it") {
  Server s;
  s.open();
  std::string f = frame(ws::kOpBinary, "abcdef");
  REQUIRE(s.inner->deliver(frame(ws::kOpBinary, "xy") + f.substr(0, 5)));
  s.inner->eof();
  CHECK(s.sink.got == "xy");
  CHECK(s.sink.eofs == 1);
}

TEST_CASE("ws transport: a bad frame sends Close 1002 and reports the failure") {
  Server s;
  s.open();
  REQUIRE(s.inner->deliver(frame(ws::kOpBinary, "ok") + frame(ws::kOpBinary, "bad", true, false)));
  CHECK(s.sink.got == "ok");
  CHECK(s.sink.last_error == WsTransport::kWsFailed);
  CHECK(peer_view(s.inner->written, ws::Role::Client).code == ws::kCloseProtocol);
  CHECK(s.inner->shut);
  CHECK(s.obs.errors == std::vector<ws::FrameError>{ws::FrameError::Unmasked});
}

TEST_CASE("ws transport: a refused handshake answers with the status, then half-closes") {
  struct Case {
    std::string req;
    int status;
    ws::Result result;
  };
  for (const Case& c :
       {Case{upgrade("/nope"), 404, ws::Result::NotFound},
        Case{"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", 426, ws::Result::UpgradeRequired},
        Case{"BLAH\r\n\r\n", 400, ws::Result::BadRequest},
        Case{upgrade("/mqtt", "", "X-Pad: " + std::string(300, 'p') + "\r\n"), 431,
             ws::Result::TooLarge}}) {
    Server s(260);
    REQUIRE(s.inner->deliver(c.req));
    CHECK(s.inner->written.rfind("HTTP/1.1 " + std::to_string(c.status) + " ", 0) == 0);
    CHECK(s.inner->shut);
    CHECK(s.sink.last_error == WsTransport::kWsFailed);
    CHECK(s.obs.results == std::vector<ws::Result>{c.result});
    CHECK_FALSE(s.t->open());
    s.inner->eof();  // lingering: the client's EOF reaches the user
    CHECK(s.sink.eofs == 1);
  }
}

TEST_CASE("ws transport: timeout and close during the handshake are counted once") {
  Server s;
  REQUIRE(s.inner->deliver("GET /mqtt HTTP/1.1\r\nHo"));
  s.t->count_timeout();
  s.inner->eof();
  CHECK(s.obs.results == std::vector<ws::Result>{ws::Result::Timeout});
  CHECK(s.sink.eofs == 1);
}

TEST_CASE("ws transport, client role: preamble, Upgrade, 101 check, masked frames") {
  Observer obs;
  RecordingSink sink;
  auto* inner = new FakeTransport;
  WsClientOptions o;
  o.host = "broker:8080";
  o.target = "/mqtt?x=1";
  o.protocol = "mqtt";
  o.headers = {{"X-Forwarded-For", "10.1.2.3"}};
  o.preamble = {'P', 'R', 'O', 'X', 'Y', '\r', '\n'};
  auto* t = new WsTransport(inner, &sink, o, &obs);
  inner->connected(0);
  CHECK(sink.connects == 0);  // not before the 101
  REQUIRE(inner->written.rfind("PROXY\r\nGET /mqtt?x=1 HTTP/1.1\r\nHost: broker:8080\r\n", 0) == 0);
  CHECK(inner->written.find("X-Forwarded-For: 10.1.2.3\r\n") != std::string::npos);
  const std::string k = "Sec-WebSocket-Key: ";
  size_t at = inner->written.find(k);
  REQUIRE(at != std::string::npos);
  std::string key = inner->written.substr(at + k.size(), 24);
  std::string resp =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
      "Upgrade\r\nSec-WebSocket-Accept: " +
      ws::accept_key(key) + "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
  // Split, and with the broker's first frame right behind it.
  REQUIRE(inner->deliver(resp.substr(0, 10)));
  REQUIRE(inner->deliver(resp.substr(10) +
                         frame(ws::kOpBinary, std::string("\x20\x02\x00\x00", 4), true, false)));
  CHECK(sink.connects == 1);
  CHECK(sink.connect_status == 0);
  CHECK(obs.results == std::vector<ws::Result>{ws::Result::Ok});
  t->start_read();
  CHECK(sink.got == std::string("\x20\x02\x00\x00", 4));
  inner->written.clear();
  REQUIRE(t->write(reinterpret_cast<const uint8_t*>(kConnect.data()), kConnect.size()) == 0);
  CHECK((static_cast<uint8_t>(inner->written[1]) & 0x80) == 0x80);  // masked
  CHECK(peer_view(inner->written, ws::Role::Server).data == kConnect);
  t->close(false);
  inner->finish_close();
  CHECK(sink.closes == 1);
}

TEST_CASE("ws transport, client role: a wrong answer fails the connect") {
  for (std::string resp : {std::string("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                           std::string("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                       "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"),
                           std::string("SSH-2.0-OpenSSH\r\n\r\n")}) {
    Observer obs;
    RecordingSink sink;
    auto* inner = new FakeTransport;
    WsClientOptions o;
    o.host = "b";
    o.target = "/mqtt";
    o.protocol = "mqtt";
    auto* t = new WsTransport(inner, &sink, o, &obs);
    inner->connected(0);
    REQUIRE(inner->deliver(resp));
    CHECK(sink.connects == 1);
    CHECK(sink.connect_status == WsTransport::kWsFailed);
    CHECK(obs.results == std::vector<ws::Result>{ws::Result::BadResponse});
    CHECK_FALSE(t->error_detail().empty());
    t->close(true);
    inner->finish_close();
  }
}
