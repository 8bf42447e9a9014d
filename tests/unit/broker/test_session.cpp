// Session queue policy, packet ids and the PUBLISH encoder, against the mqtt/
// decoder (so the bytes a subscriber receives are checked end to end).
#include <doctest/doctest.h>

#include "broker/session.hpp"
#include "mqtt/codec.hpp"

using broker::Delivery;
using broker::Session;

namespace {

Delivery d(uint8_t qos, std::string payload) {
  auto m = std::make_shared<broker::Message>();
  m->topic = "t";
  m->payload = std::move(payload);
  Delivery x;
  x.msg = m;
  x.qos = qos;
  return x;
}

}  // namespace

TEST_CASE("a full queue drops QoS 0 first, then refuses") {
  Session s;
  CHECK(s.enqueue(d(0, "a"), 3));
  CHECK(s.enqueue(d(1, "b"), 3));
  CHECK(s.enqueue(d(0, "c"), 3));
  CHECK_FALSE(s.enqueue(d(0, "x"), 3));  // full: a new QoS 0 is dropped
  CHECK(s.data().queue.size() == 3);
  CHECK_FALSE(s.enqueue(d(2, "e"), 3));  // full: the oldest QoS 0 ("a") makes room
  CHECK(s.data().queue.size() == 3);
  CHECK_FALSE(s.enqueue(d(1, "f"), 3));  // and then "c"
  CHECK_FALSE(s.enqueue(d(1, "g"), 3));  // no QoS 0 left: refused
  std::string order;
  while (!s.data().queue.empty()) order += s.pop_front().msg->payload;
  CHECK(order == "bef");
  CHECK(s.data().queued_qos0 == 0);
}

TEST_CASE("packet ids skip ids in flight and wrap past 65535") {
  Session s;
  s.next_pid = 65534;
  Delivery a = d(1, "a");
  a.pid = 1;
  s.data().inflight.push_back(a);
  CHECK(s.alloc_pid() == 65534);
  CHECK(s.alloc_pid() == 65535);
  CHECK(s.alloc_pid() == 2);  // 0 is never used, 1 is in flight
  s.erase_inflight(1);
  CHECK(s.find_inflight(1) == nullptr);
}

TEST_CASE("encode_publish round-trips through the decoder, 3.1.1 and 5.0") {
  broker::Message m;
  m.topic = "a/b";
  m.payload = "hello";
  m.props = std::make_unique<mqtt::Properties>();
  m.props->content_type = "text/plain";
  m.expiry_ms = 10'500;
  for (bool v5 : {false, true}) {
    std::vector<uint8_t> out;
    const uint32_t ids[] = {7, 9};
    const size_t off = broker::encode_publish(out, m, v5, 1, true, true, 0x1234, ids, 1'000);
    CHECK(out[off] == 0x12);
    CHECK(out[off + 1] == 0x34);
    auto fr = mqtt::peek_frame(out);
    REQUIRE(fr.status == mqtt::DecodeStatus::Ok);
    REQUIRE(fr.header.total_length() == out.size());
    mqtt::Publish p;
    auto r =
        mqtt::decode_publish(fr.header.first_byte, std::span(out).subspan(fr.header.header_length),
                             v5 ? mqtt::Version::V5 : mqtt::Version::V311, p);
    REQUIRE(r.ok);
    CHECK(p.topic == "a/b");
    CHECK(p.payload == "hello");
    CHECK(p.qos == 1);
    CHECK(p.retain);
    CHECK(p.dup);
    CHECK(p.packet_id == 0x1234);
    if (v5) {
      CHECK(p.properties.content_type == "text/plain");
      CHECK(p.properties.message_expiry_interval == 10u);  // 9.5 s left, rounded up
      CHECK(p.properties.subscription_identifiers == std::vector<uint32_t>{7, 9});
    } else {
      CHECK(p.properties.empty());
    }
  }
}
