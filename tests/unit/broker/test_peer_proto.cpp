// Peer protocol: every frame type round-trips, framing over arbitrary splits,
// and malformed bodies are refused (truncations, trailing bytes, bad values).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "broker/peer_proto.hpp"

namespace peer = broker::peer;

namespace {

template <typename T>
T round_trip(const T& v, peer::Type type) {
  std::vector<uint8_t> buf;
  peer::encode(buf, v);
  const peer::Frame f = peer::next_frame(buf, 1 << 20);
  REQUIRE(f.status == peer::Status::Done);
  CHECK(f.type == type);
  CHECK(f.size == buf.size());
  T back;
  REQUIRE(peer::decode(f.body, back));
  // Every strict prefix of the body is refused, and so is a trailing byte.
  for (size_t n = 0; n < f.body.size(); ++n) {
    T part;
    CHECK_FALSE(peer::decode(f.body.first(n), part));
  }
  std::vector<uint8_t> longer(f.body.begin(), f.body.end());
  longer.push_back(0);
  T extra;
  CHECK_FALSE(peer::decode(longer, extra));
  return back;
}

peer::WireMessage msg() {
  peer::WireMessage m;
  m.topic = "a/b";
  m.payload = std::string("\0bin\xff", 5);
  m.props.content_type = "text/plain";
  m.props.user_properties = {{"k", "v"}, {"k", "w"}};
  m.props.correlation_data = "cd";
  m.expiry_left_ms = 1500;
  m.seq = 0x0102030405060708ull;
  m.qos = 2;
  m.retain = true;
  return m;
}

}  // namespace

TEST_CASE("peer frames round-trip") {
  peer::Hello h;
  h.name = "b1";
  h.incarnation = 42;
  h.nonce.fill(7);
  CHECK(round_trip(h, peer::Type::Hello) == h);
  peer::Auth a;
  a.proof.fill(0xAB);
  CHECK(round_trip(a, peer::Type::Auth) == a);

  peer::Publish p;
  p.msg = msg();
  p.deliver = true;
  p.store = true;
  p.version = 99;
  p.groups = {{"a/+", "g1"}, {"a/#", "g2"}};
  CHECK(round_trip(p, peer::Type::Publish) == p);
  p.store = false;
  p.version = 0;
  p.groups.clear();
  p.msg.props = {};
  CHECK(round_trip(p, peer::Type::Publish) == p);

  peer::Claim c{7, "client-1", 123456789, true};
  CHECK(round_trip(c, peer::Type::Claim) == c);
  peer::ClaimReply r;
  r.id = 7;
  r.status = peer::ClaimReply::Held;
  r.ts = 5;
  r.subs = {{"a/#", 1, true, false, 2, 9}, {"$share/g/x", 2, false, true, 0, 0}};
  CHECK(round_trip(r, peer::Type::ClaimReply) == r);
  peer::Commit cm{7, false};
  CHECK(round_trip(cm, peer::Type::Commit) == cm);

  peer::SessionState s;
  s.claim = 7;
  s.found = true;
  s.expiry_s = 3600;
  s.ts = 77;
  s.next_pid = 300;
  s.v5 = true;
  peer::WireDelivery d;
  d.msg = msg();
  d.origin = "b2";
  d.sub_ids = {1, 2};
  d.pid = 12;
  d.qos = 1;
  d.state = 1;
  s.inflight.push_back(d);
  d.has_msg = false;
  d.msg = {};
  d.state = 3;
  s.inflight.push_back(d);
  d.has_msg = true;
  d.msg = msg();
  d.pid = 0;
  d.state = 0;
  s.queue.push_back(d);
  s.qos2_in = {5, 6};
  s.marks = {{"b1", 1, 10}, {"b3", 2, 0}};
  CHECK(round_trip(s, peer::Type::SessionState) == s);
  peer::SessionState gone;
  gone.claim = 8;
  CHECK(round_trip(gone, peer::Type::SessionState) == gone);

  peer::Sessions l;
  l.entries = {{"x", 1}, {"y", 2}};
  CHECK(round_trip(l, peer::Type::Sessions) == l);
}

TEST_CASE("peer framing: prefixes need more, bad lengths and types are errors") {
  std::vector<uint8_t> buf;
  peer::encode_route(buf, peer::Type::RouteAdd, "a/+");
  peer::encode_empty(buf, peer::Type::Ping);
  peer::encode_sync(buf, peer::Type::SyncAck, 5);
  const size_t first = 4 + 1 + 2 + 3;
  for (size_t n = 0; n < first; ++n)
    CHECK(peer::next_frame(std::span(buf).first(n), 1024).status == peer::Status::NeedMore);
  peer::Frame f = peer::next_frame(buf, 1024);
  REQUIRE(f.status == peer::Status::Done);
  std::string filter;
  CHECK(peer::decode_route(f.body, filter));
  CHECK(filter == "a/+");
  f = peer::next_frame(std::span(buf).subspan(first), 1024);
  CHECK(
      (f.status == peer::Status::Done && f.type == peer::Type::Ping && peer::decode_empty(f.body)));
  f = peer::next_frame(std::span(buf).subspan(first + 5), 1024);
  uint64_t token = 0;
  CHECK((f.status == peer::Status::Done && peer::decode_sync(f.body, token) && token == 5));

  CHECK(peer::next_frame(std::vector<uint8_t>{0, 0, 0, 0}, 1024).status == peer::Status::Error);
  CHECK(peer::next_frame(std::vector<uint8_t>{0, 0, 4, 1}, 1024).status == peer::Status::Error);
  CHECK(peer::next_frame(std::vector<uint8_t>{0, 0, 0, 9, 99}, 1024).status ==
        peer::Status::Error);  // unknown type, seen before the body
  CHECK(peer::next_frame(std::vector<uint8_t>{0, 0, 0, 9, 3}, 1024).status ==
        peer::Status::NeedMore);
}

TEST_CASE("peer decoders refuse bad values") {
  std::vector<uint8_t> buf;
  peer::Publish p;
  p.msg.topic = "t";
  p.msg.qos = 1;
  peer::encode(buf, p);
  auto body = [&]() { return std::span<const uint8_t>(buf).subspan(5); };
  peer::Publish out;
  CHECK(peer::decode(body(), out));
  buf[5] = 4;  // unknown flag bit
  CHECK_FALSE(peer::decode(body(), out));
  buf[5] = 1;
  buf[6] = 3;  // QoS 3
  CHECK_FALSE(peer::decode(body(), out));
  buf[6] = 1;
  buf[7] = 2;  // retain not 0/1
  peer::Publish out2;
  CHECK_FALSE(peer::decode(body(), out2));

  std::vector<uint8_t> c;
  peer::encode(c, peer::Claim{1, "", 0, false});  // empty client id
  peer::Claim cl;
  CHECK_FALSE(peer::decode(std::span<const uint8_t>(c).subspan(5), cl));
  // A list count larger than what follows is refused before anything is built.
  std::vector<uint8_t> s = {0, 0, 0, 1, 1, 0, 0, 0, 0,    0,    0,    0,
                            0, 0, 0, 0, 0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF};
  peer::SessionState st;
  CHECK_FALSE(peer::decode(s, st));
}
