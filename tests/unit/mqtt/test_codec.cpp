// The MQTT packet codec (mqtt/codec.cpp): round trips for every packet type and
// version, byte-exact encodings checked against the spec's layouts, every decoder
// rejection with a valid and a violating case, and a mutation test showing that
// whatever the decoders accept re-encodes to a stable canonical form.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/codec.hpp"

using namespace mqtt;

namespace {

using Bytes = std::vector<uint8_t>;
constexpr std::array<Version, 3> kVersions = {Version::V31, Version::V311, Version::V5};

Bytes B(std::initializer_list<int> v) {
  Bytes out;
  for (int b : v) out.push_back(static_cast<uint8_t>(b));
  return out;
}
Bytes operator+(Bytes a, std::string_view s) {
  a.insert(a.end(), s.begin(), s.end());
  return a;
}
Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Wire {
  uint8_t first = 0;
  std::span<const uint8_t> body;
};

// Splits one packet with the framer; the buffer must hold exactly one packet,
// which also proves the encoder's Remaining Length is right.
Wire frame(const Bytes& w) {
  FrameResult fr = peek_frame(w);
  REQUIRE(fr.status == DecodeStatus::Ok);
  REQUIRE(fr.header.total_length() == w.size());
  return {fr.header.first_byte, std::span<const uint8_t>(w).subspan(fr.header.header_length)};
}

template <class T, class Dec>
Result decode_wire(const Bytes& w, Version v, Dec dec, T& out) {
  Wire f = frame(w);
  return dec(f.first, f.body, v, out);
}
template <class T, class Dec>
Result decode_wire(const Bytes& w, Version v, Dec dec) {
  T out;
  return decode_wire(w, v, dec, out);
}

template <class T, class Enc, class Dec>
T round_trip(const T& in, Version v, Enc enc, Dec dec) {
  Bytes w;
  enc(in, v, w);
  T out;
  Result r = decode_wire(w, v, dec, out);
  INFO(std::string(r.what));
  REQUIRE(r.ok);
  return out;
}

Result auth_dec(uint8_t f, std::span<const uint8_t> b, Version, Auth& out) {
  return decode_auth(f, b, out);
}
void auth_enc(const Auth& a, Version, Bytes& out) {
  encode_auth(a, out);
}

// Checks `r` failed with reason `why`.
void check_fail(const Result& r, Reason why) {
  INFO(std::string(r.what));
  CHECK_FALSE(r.ok);
  CHECK(static_cast<int>(r.reason) == static_cast<int>(why));
}
void check_ok(const Result& r) {
  INFO(std::string(r.what));
  CHECK(r.ok);
}

// ---- sample property sets: together they use every property identifier ----

Properties user_props() {
  Properties p;
  p.user_properties = {{"region", "eu"}, {"region", "us"}, {"", ""}};
  return p;
}
Properties connect_props() {
  Properties p = user_props();
  p.session_expiry_interval = 3600;
  p.authentication_method = "SCRAM-SHA-1";
  p.authentication_data = std::string("\x00\x01\xFE", 3);
  p.request_problem_information = 0;
  p.request_response_information = 1;
  p.receive_maximum = 20;
  p.topic_alias_maximum = 10;
  p.maximum_packet_size = 1 << 20;
  return p;
}
Properties will_props() {
  Properties p = user_props();
  p.payload_format_indicator = 1;
  p.message_expiry_interval = 60;
  p.content_type = "text/plain";
  p.response_topic = "reply/to";
  p.correlation_data = std::string("\x00\xFF", 2);
  p.will_delay_interval = 30;
  return p;
}
Properties connack_props() {
  Properties p = user_props();
  p.session_expiry_interval = 0xFFFFFFFF;
  p.assigned_client_identifier = "auto-1234";
  p.server_keep_alive = 120;
  p.authentication_method = "SCRAM-SHA-1";
  p.authentication_data = "server-first";
  p.response_information = "resp/base";
  p.server_reference = "other:1883";
  p.reason_string = "welcome";
  p.receive_maximum = 65535;
  p.topic_alias_maximum = 0;
  p.maximum_qos = 1;
  p.retain_available = 0;
  p.maximum_packet_size = 268435460;
  p.wildcard_subscription_available = 1;
  p.subscription_identifier_available = 0;
  p.shared_subscription_available = 1;
  return p;
}
Properties publish_props() {
  Properties p = user_props();
  p.payload_format_indicator = 0;
  p.message_expiry_interval = 0;
  p.content_type = "application/json";
  p.response_topic = "reply/x";
  p.correlation_data = "corr";
  p.subscription_identifiers = {1, 127, 128, 16383, 16384, 268435455};  // 1..4-byte varints
  p.topic_alias = 65535;
  return p;
}
Properties reason_props() {
  Properties p = user_props();
  p.reason_string = "because";
  return p;
}
Properties subscribe_props() {
  Properties p = user_props();
  p.subscription_identifiers = {42};
  return p;
}
Properties disconnect_props() {
  Properties p = reason_props();
  p.session_expiry_interval = 0;
  p.server_reference = "b.example:8883";
  return p;
}
Properties auth_props() {
  Properties p = reason_props();
  p.authentication_method = "SCRAM-SHA-1";
  p.authentication_data = std::string("\x00", 1);
  return p;
}

Properties only_v5(const Properties& p, Version v) {
  return v == Version::V5 ? p : Properties{};
}

}  // namespace

TEST_CASE("the sample property sets used by the round trips cover every MQTT 5 property") {
  const Properties sets[] = {connect_props(),    will_props(),   connack_props(),
                             publish_props(),    reason_props(), subscribe_props(),
                             disconnect_props(), auth_props()};
  const auto has = [](const auto& field) {
    if constexpr (requires { field.has_value(); }) {
      return field.has_value();
    } else {
      return !field.empty();
    }
  };
#define COVERED(f)                                      \
  do {                                                  \
    bool found = false;                                 \
    for (const Properties& p : sets) found |= has(p.f); \
    CHECK_MESSAGE(found, #f " is not in any sample");   \
  } while (0)
  COVERED(payload_format_indicator);
  COVERED(message_expiry_interval);
  COVERED(content_type);
  COVERED(response_topic);
  COVERED(correlation_data);
  COVERED(subscription_identifiers);
  COVERED(session_expiry_interval);
  COVERED(assigned_client_identifier);
  COVERED(server_keep_alive);
  COVERED(authentication_method);
  COVERED(authentication_data);
  COVERED(request_problem_information);
  COVERED(will_delay_interval);
  COVERED(request_response_information);
  COVERED(response_information);
  COVERED(server_reference);
  COVERED(reason_string);
  COVERED(receive_maximum);
  COVERED(topic_alias_maximum);
  COVERED(topic_alias);
  COVERED(maximum_qos);
  COVERED(retain_available);
  COVERED(user_properties);
  COVERED(maximum_packet_size);
  COVERED(wildcard_subscription_available);
  COVERED(subscription_identifier_available);
  COVERED(shared_subscription_available);
#undef COVERED
}

// ======================= byte-exact encodings =======================

TEST_CASE("CONNECT bytes: protocol name and level per version") {
  ConnectInfo c;
  c.client_id = "c1";
  c.clean_start = true;
  c.keep_alive = 60;
  Bytes w;
  c.version = Version::V311;
  encode_connect(c, w);
  CHECK(w == B({0x10, 14, 0, 4}) + "MQTT" + B({4, 0x02, 0, 60, 0, 2}) + "c1");
  w.clear();
  c.version = Version::V31;
  encode_connect(c, w);
  CHECK(w == B({0x10, 16, 0, 6}) + "MQIsdp" + B({3, 0x02, 0, 60, 0, 2}) + "c1");
  w.clear();
  c.version = Version::V5;  // empty property block
  encode_connect(c, w);
  CHECK(w == B({0x10, 15, 0, 4}) + "MQTT" + B({5, 0x02, 0, 60, 0, 0, 2}) + "c1");
  w.clear();
  // Flags: username 0x80, password 0x40, will retain 0x20, will QoS 1 0x08, will 0x04.
  c.version = Version::V311;
  c.clean_start = false;
  c.username = "u";
  c.password = "p";
  c.will = WillMessage{1, true, "w", "x", {}};
  encode_connect(c, w);
  CHECK(w == B({0x10, 26, 0, 4}) + "MQTT" + B({4, 0xEC, 0, 60, 0, 2}) + "c1" + B({0, 1}) + "w" +
                 B({0, 1}) + "x" + B({0, 1}) + "u" + B({0, 1}) + "p");
}

TEST_CASE("CONNACK bytes") {
  Bytes w;
  encode_connack({true, 0, {}}, Version::V311, w);
  CHECK(w == B({0x20, 0x02, 0x01, 0x00}));
  w.clear();
  encode_connack({false, 0x05, {}}, Version::V311, w);
  CHECK(w == B({0x20, 0x02, 0x00, 0x05}));
  w.clear();
  encode_connack({true, 0, {}}, Version::V31, w);  // 3.1 has no Session Present
  CHECK(w == B({0x20, 0x02, 0x00, 0x00}));
  w.clear();
  Connack c5{false, 0x00, {}};
  c5.properties.receive_maximum = 10;
  encode_connack(c5, Version::V5, w);
  CHECK(w == B({0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x0A}));
  w.clear();
  encode_connack({false, 0x87, {}}, Version::V5, w);
  CHECK(w == B({0x20, 0x03, 0x00, 0x87, 0x00}));
}

TEST_CASE("PUBLISH bytes: QoS 1 carries a packet id, QoS 0 does not") {
  Publish p;
  p.qos = 1;
  p.topic = "a/b";
  p.packet_id = 10;
  p.payload = "hi";
  Bytes w;
  encode_publish(p, Version::V311, w);
  CHECK(w == B({0x32, 9, 0, 3}) + "a/b" + B({0, 10}) + "hi");
  w.clear();
  encode_publish(p, Version::V5, w);
  CHECK(w == B({0x32, 10, 0, 3}) + "a/b" + B({0, 10, 0}) + "hi");
  w.clear();
  p.qos = 0;
  p.retain = true;
  encode_publish(p, Version::V311, w);
  CHECK(w == B({0x31, 7, 0, 3}) + "a/b" + "hi");
  w.clear();
  p.qos = 2;
  p.dup = true;
  p.retain = false;
  encode_publish(p, Version::V311, w);
  CHECK(w == B({0x3C, 9, 0, 3}) + "a/b" + B({0, 10}) + "hi");
}

TEST_CASE("PUBLISH bytes: large payload uses a 3-byte Remaining Length") {
  Publish p;
  p.topic = "t";
  p.payload.assign(300000, 'x');
  Bytes w;
  encode_publish(p, Version::V311, w);
  const uint32_t rem = 3 + 300000;  // 0x493E3 -> E3 A7 12
  CHECK(w.size() == 4 + rem);
  CHECK(Bytes(w.begin(), w.begin() + 4) == B({0x30, 0xE3, 0xA7, 0x12}));
  Publish out = round_trip(p, Version::V311, encode_publish, decode_publish);
  CHECK(out.payload == p.payload);
}

TEST_CASE("SUBSCRIBE bytes: flags 0010 and subscription options") {
  Subscribe s;
  s.packet_id = 1;
  s.subscriptions = {{"a/b", 1, false, false, 0}};
  Bytes w;
  encode_subscribe(s, Version::V311, w);
  CHECK(w == B({0x82, 8, 0, 1, 0, 3}) + "a/b" + B({0x01}));
  w.clear();
  // 5.0 options: QoS 2 | No Local 0x04 | Retain As Published 0x08 | Retain Handling 2 << 4.
  s.subscriptions = {{"a/b", 2, true, true, 2}};
  encode_subscribe(s, Version::V5, w);
  CHECK(w == B({0x82, 9, 0, 1, 0, 0, 3}) + "a/b" + B({0x2E}));
  w.clear();
  encode_subscribe(s, Version::V311, w);  // 5.0-only options are not sent before 5.0
  CHECK(w == B({0x82, 8, 0, 1, 0, 3}) + "a/b" + B({0x02}));
}

TEST_CASE("SUBACK, UNSUBSCRIBE, UNSUBACK bytes") {
  Bytes w;
  encode_suback({7, {}, {0, 1, 0x80}}, Version::V311, w);
  CHECK(w == B({0x90, 5, 0, 7, 0, 1, 0x80}));
  w.clear();
  encode_suback({7, {}, {2}}, Version::V5, w);
  CHECK(w == B({0x90, 4, 0, 7, 0, 2}));
  w.clear();
  encode_unsubscribe({8, {}, {"a", "b/#"}}, Version::V311, w);
  CHECK(w == B({0xA2, 10, 0, 8, 0, 1}) + "a" + B({0, 3}) + "b/#");
  w.clear();
  encode_unsuback({8, {}, {0x00, 0x11}}, Version::V311, w);  // codes exist only in 5.0
  CHECK(w == B({0xB0, 2, 0, 8}));
  w.clear();
  encode_unsuback({8, {}, {0x00, 0x11}}, Version::V5, w);
  CHECK(w == B({0xB0, 5, 0, 8, 0, 0x00, 0x11}));
}

TEST_CASE("PUBACK/PUBREC/PUBREL/PUBCOMP bytes: PUBREL flags, 5.0 short forms") {
  Bytes w;
  encode_pub_response({PacketType::Pubrel, 0x1234, 0, {}}, Version::V311, w);
  CHECK(w == B({0x62, 2, 0x12, 0x34}));
  w.clear();
  encode_pub_response({PacketType::Pubrel, 0x1234, 0, {}}, Version::V5, w);
  CHECK(w == B({0x62, 2, 0x12, 0x34}));  // Success and no properties: omitted
  w.clear();
  encode_pub_response({PacketType::Pubrel, 0x1234, 0x92, {}}, Version::V5, w);
  CHECK(w == B({0x62, 3, 0x12, 0x34, 0x92}));
  w.clear();
  PubResponse ack{PacketType::Puback, 5, 0x10, {}};
  ack.properties.reason_string = "no";
  encode_pub_response(ack, Version::V5, w);
  CHECK(w == B({0x40, 9, 0, 5, 0x10, 5, 0x1F, 0, 2}) + "no");
  w.clear();
  encode_pub_response({PacketType::Pubrec, 5, 0x80, {}}, Version::V311, w);  // no reason before 5.0
  CHECK(w == B({0x50, 2, 0, 5}));
  w.clear();
  encode_pub_response({PacketType::Pubcomp, 5, 0, {}}, Version::V31, w);
  CHECK(w == B({0x70, 2, 0, 5}));
}

TEST_CASE("PINGREQ, PINGRESP, DISCONNECT, AUTH bytes") {
  Bytes w;
  encode_pingreq(w);
  CHECK(w == B({0xC0, 0}));
  w.clear();
  encode_pingresp(w);
  CHECK(w == B({0xD0, 0}));
  w.clear();
  encode_disconnect({}, Version::V311, w);
  CHECK(w == B({0xE0, 0}));
  w.clear();
  encode_disconnect({0x8B, reason_props()}, Version::V311, w);  // ignored before 5.0
  CHECK(w == B({0xE0, 0}));
  w.clear();
  encode_disconnect({}, Version::V5, w);
  CHECK(w == B({0xE0, 0}));
  w.clear();
  encode_disconnect({0x8B, {}}, Version::V5, w);
  CHECK(w == B({0xE0, 1, 0x8B}));
  w.clear();
  // Server moved, with a Server Reference (3.14.2.2.5).
  Disconnect moved{0x9D, {}};
  moved.properties.server_reference = "b:1883";
  encode_disconnect(moved, Version::V5, w);
  CHECK(w == B({0xE0, 11, 0x9D, 9, 0x1C, 0, 6}) + "b:1883");
  w.clear();
  encode_auth({}, w);
  CHECK(w == B({0xF0, 0}));
  w.clear();
  encode_auth({0x18, {}}, w);
  CHECK(w == B({0xF0, 2, 0x18, 0}));
}

TEST_CASE("encoders append to the buffer") {
  Bytes w;
  encode_pingreq(w);
  encode_publish({0, false, false, "t", 0, {}, "x"}, Version::V311, w);
  REQUIRE(w.size() == 2 + 6);
  CHECK(Bytes(w.begin(), w.begin() + 2) == B({0xC0, 0}));
  CHECK(Bytes(w.begin() + 2, w.end()) == B({0x30, 4, 0, 1, 't', 'x'}));
}

// ======================= round trips =======================

TEST_CASE("round trip CONNECT for every version (parsed by parse_connect)") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    ConnectInfo c;
    c.version = v;
    c.clean_start = true;
    c.keep_alive = 0xFFFF;
    c.client_id = "client-\xC3\xA9";
    c.username = "user";
    c.password = std::string("p\x00w", 3);
    c.will =
        WillMessage{2, true, "will/topic", std::string("\x00\x01", 2), only_v5(will_props(), v)};
    c.properties = only_v5(connect_props(), v);
    Bytes w;
    encode_connect(c, w);
    ConnectResult r = parse_connect(w, kMaxMaxConnectBytes);
    INFO(to_string(r.error));
    REQUIRE(r.status == ParseStatus::Done);
    CHECK(r.info.version == v);
    CHECK(r.info.protocol_level == static_cast<uint8_t>(v));
    CHECK(r.info.clean_start);
    CHECK(r.info.keep_alive == 0xFFFF);
    CHECK(r.info.client_id == c.client_id);
    CHECK(r.info.username == c.username);
    CHECK(r.info.password == c.password);
    REQUIRE(r.info.will.has_value());
    CHECK(r.info.will->qos == 2);
    CHECK(r.info.will->retain);
    CHECK(r.info.will->topic == "will/topic");
    CHECK(r.info.will->payload == c.will->payload);
    CHECK(r.info.will->properties == c.will->properties);
    CHECK(r.info.properties == c.properties);
    CHECK(r.info.packet_length == w.size());
  }
}

TEST_CASE("round trip CONNACK") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    const uint8_t refused = v == Version::V5 ? 0x87 : 0x05;
    for (Connack in :
         {Connack{true, 0, connack_props()}, Connack{false, refused, reason_props()}}) {
      in.properties = only_v5(in.properties, v);
      Connack out = round_trip(in, v, encode_connack, decode_connack);
      CHECK(out.session_present == (in.session_present && v != Version::V31));
      CHECK(out.code == in.code);
      CHECK(out.properties == in.properties);
    }
  }
}

TEST_CASE("round trip PUBLISH: every QoS, flags, binary payloads, properties") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    for (uint8_t qos = 0; qos <= 2; ++qos) {
      for (bool flag : {false, true}) {
        CAPTURE(int{qos});
        CAPTURE(flag);
        Publish in;
        in.qos = qos;
        in.retain = flag;
        in.dup = flag && qos > 0;
        in.topic = flag ? "sport/tennis/\xE2\x82\xAC" : "/";
        in.packet_id = qos > 0 ? (flag ? 65535 : 1) : 0;
        in.payload = flag ? std::string("\x00\xFF\x00", 3) : "";
        in.properties = only_v5(flag ? publish_props() : Properties{}, v);
        Publish out = round_trip(in, v, encode_publish, decode_publish);
        CHECK(out.qos == in.qos);
        CHECK(out.retain == in.retain);
        CHECK(out.dup == in.dup);
        CHECK(out.topic == in.topic);
        CHECK(out.packet_id == in.packet_id);
        CHECK(out.properties == in.properties);
        CHECK(out.payload == in.payload);
      }
    }
  }
  // 5.0: empty topic with a Topic Alias.
  Publish aliased;
  aliased.properties.topic_alias = 3;
  aliased.payload = "p";
  Publish out = round_trip(aliased, Version::V5, encode_publish, decode_publish);
  CHECK(out.topic.empty());
  CHECK(out.properties.topic_alias == 3);
  CHECK(out.payload == "p");
}

TEST_CASE("round trip PUBACK/PUBREC/PUBREL/PUBCOMP") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    for (PacketType t :
         {PacketType::Puback, PacketType::Pubrec, PacketType::Pubrel, PacketType::Pubcomp}) {
      CAPTURE(static_cast<int>(t));
      const uint8_t fail = t <= PacketType::Pubrec ? 0x97 : 0x92;
      for (PubResponse in :
           {PubResponse{t, 1, 0, {}}, PubResponse{t, 0xBEEF, fail, {}},
            PubResponse{t, 300, 0, reason_props()}, PubResponse{t, 301, fail, reason_props()}}) {
        if (v != Version::V5) {
          in.reason = 0;
          in.properties = {};
        }
        PubResponse out = round_trip(in, v, encode_pub_response, decode_pub_response);
        CHECK(out.type == t);
        CHECK(out.packet_id == in.packet_id);
        CHECK(out.reason == in.reason);
        CHECK(out.properties == in.properties);
      }
    }
  }
}

TEST_CASE("round trip SUBSCRIBE and SUBACK") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    Subscribe in;
    in.packet_id = 77;
    in.properties = only_v5(subscribe_props(), v);
    in.subscriptions = {{"sport/tennis/+", 0, false, false, 0},
                        {"#", 1, false, false, 0},
                        {"$share/g/a/#", 2, false, false, 0},
                        {"\xC3\xA9/x", 2, false, false, 0}};
    if (v == Version::V5) {
      in.subscriptions[0].no_local = true;
      in.subscriptions[1].retain_as_published = true;
      in.subscriptions[1].retain_handling = 1;
      in.subscriptions[2].retain_handling = 2;
    }
    Subscribe out = round_trip(in, v, encode_subscribe, decode_subscribe);
    CHECK(out.packet_id == 77);
    CHECK(out.properties == in.properties);
    REQUIRE(out.subscriptions.size() == in.subscriptions.size());
    for (size_t i = 0; i < in.subscriptions.size(); ++i) {
      CAPTURE(i);
      CHECK(out.subscriptions[i].filter == in.subscriptions[i].filter);
      CHECK(out.subscriptions[i].qos == in.subscriptions[i].qos);
      CHECK(out.subscriptions[i].no_local == in.subscriptions[i].no_local);
      CHECK(out.subscriptions[i].retain_as_published == in.subscriptions[i].retain_as_published);
      CHECK(out.subscriptions[i].retain_handling == in.subscriptions[i].retain_handling);
    }

    Suback sin{77, only_v5(reason_props(), v), {0, 1, 2, 0x80}};
    if (v == Version::V5) sin.codes.push_back(0xA2);
    Suback sout = round_trip(sin, v, encode_suback, decode_suback);
    CHECK(sout.packet_id == 77);
    CHECK(sout.properties == sin.properties);
    CHECK(sout.codes == sin.codes);
  }
}

TEST_CASE("round trip UNSUBSCRIBE and UNSUBACK") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    Unsubscribe in{9, only_v5(user_props(), v), {"a/+", "#", "$SYS/x"}};
    Unsubscribe out = round_trip(in, v, encode_unsubscribe, decode_unsubscribe);
    CHECK(out.packet_id == 9);
    CHECK(out.properties == in.properties);
    CHECK(out.filters == in.filters);

    Unsuback uin{9, only_v5(reason_props(), v), {}};
    if (v == Version::V5) uin.codes = {0x00, 0x11, 0x87};
    Unsuback uout = round_trip(uin, v, encode_unsuback, decode_unsuback);
    CHECK(uout.packet_id == 9);
    CHECK(uout.properties == uin.properties);
    CHECK(uout.codes == uin.codes);
  }
}

TEST_CASE("round trip PINGREQ, PINGRESP, DISCONNECT, AUTH") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    Bytes w;
    encode_pingreq(w);
    Wire f = frame(w);
    check_ok(decode_empty(f.first, f.body));
    w.clear();
    encode_pingresp(w);
    f = frame(w);
    check_ok(decode_empty(f.first, f.body));

    for (Disconnect in :
         {Disconnect{}, Disconnect{0x04, {}}, Disconnect{0x9C, disconnect_props()}}) {
      if (v != Version::V5) in = {};
      Disconnect out = round_trip(in, v, encode_disconnect, decode_disconnect);
      CHECK(out.reason == in.reason);
      CHECK(out.properties == in.properties);
    }
  }
  for (Auth in : {Auth{}, Auth{0x18, auth_props()}, Auth{0x19, {}}}) {
    Auth out = round_trip(in, Version::V5, auth_enc, auth_dec);
    CHECK(out.reason == in.reason);
    CHECK(out.properties == in.properties);
  }
}

TEST_CASE("decoders overwrite a reused output struct") {
  Publish p;
  p.properties.content_type = "stale";
  p.packet_id = 9;
  check_ok(decode_wire(B({0x30, 4, 0, 1, 't', 'x'}), Version::V311, decode_publish, p));
  CHECK(p.packet_id == 0);
  CHECK_FALSE(p.properties.content_type.has_value());
  CHECK(p.payload == "x");
}

// ======================= decoder rejections =======================
// Each case: a valid packet that passes, then the same packet with one violation.

TEST_CASE("reject: fixed header flags other than the required ones [MQTT-2.1.3-1]") {
  const Version v = Version::V311;
  check_ok(decode_wire<Connack>(B({0x20, 2, 0, 0}), v, decode_connack));
  check_fail(decode_wire<Connack>(B({0x21, 2, 0, 0}), v, decode_connack), Reason::MalformedPacket);
  for (int type : {4, 5, 7}) {
    CAPTURE(type);
    check_ok(decode_wire<PubResponse>(B({type << 4, 2, 0, 1}), v, decode_pub_response));
    check_fail(decode_wire<PubResponse>(B({type << 4 | 2, 2, 0, 1}), v, decode_pub_response),
               Reason::MalformedPacket);
  }
  // PUBREL, SUBSCRIBE, UNSUBSCRIBE require 0010 [MQTT-3.6.1-1, 3.8.1-1, 3.10.1-1].
  check_ok(decode_wire<PubResponse>(B({0x62, 2, 0, 1}), v, decode_pub_response));
  check_fail(decode_wire<PubResponse>(B({0x60, 2, 0, 1}), v, decode_pub_response),
             Reason::MalformedPacket);
  const Bytes sub_body = B({0, 1, 0, 1, 'a', 0});
  check_ok(decode_wire<Subscribe>(B({0x82, 6}) + sub_body, v, decode_subscribe));
  check_fail(decode_wire<Subscribe>(B({0x80, 6}) + sub_body, v, decode_subscribe),
             Reason::MalformedPacket);
  check_fail(decode_wire<Subscribe>(B({0x83, 6}) + sub_body, v, decode_subscribe),
             Reason::MalformedPacket);
  check_ok(decode_wire<Suback>(B({0x90, 3, 0, 1, 0}), v, decode_suback));
  check_fail(decode_wire<Suback>(B({0x92, 3, 0, 1, 0}), v, decode_suback), Reason::MalformedPacket);
  const Bytes unsub_body = B({0, 1, 0, 1, 'a'});
  check_ok(decode_wire<Unsubscribe>(B({0xA2, 5}) + unsub_body, v, decode_unsubscribe));
  check_fail(decode_wire<Unsubscribe>(B({0xA0, 5}) + unsub_body, v, decode_unsubscribe),
             Reason::MalformedPacket);
  check_ok(decode_wire<Unsuback>(B({0xB0, 2, 0, 1}), v, decode_unsuback));
  check_fail(decode_wire<Unsuback>(B({0xB8, 2, 0, 1}), v, decode_unsuback),
             Reason::MalformedPacket);
  check_ok(decode_wire<Disconnect>(B({0xE0, 0}), v, decode_disconnect));
  check_fail(decode_wire<Disconnect>(B({0xE1, 0}), v, decode_disconnect), Reason::MalformedPacket);
  check_ok(decode_wire<Auth>(B({0xF0, 0}), Version::V5, auth_dec));
  check_fail(decode_wire<Auth>(B({0xF4, 0}), Version::V5, auth_dec), Reason::MalformedPacket);
  for (int first : {0xC0, 0xD0}) {
    CAPTURE(first);
    Bytes ok = B({first, 0});
    Bytes bad = B({first | 1, 0});
    check_ok(decode_empty(frame(ok).first, frame(ok).body));
    check_fail(decode_empty(frame(bad).first, frame(bad).body), Reason::MalformedPacket);
  }
  // A decoder handed another packet type rejects it.
  check_fail(decode_wire<Connack>(B({0x40, 2, 0, 0}), v, decode_connack), Reason::MalformedPacket);
  check_fail(decode_wire<PubResponse>(B({0x30, 2, 0, 1}), v, decode_pub_response),
             Reason::MalformedPacket);
  check_fail(decode_wire<Publish>(B({0x40, 3, 0, 1, 't'}), v, decode_publish),
             Reason::MalformedPacket);
}

TEST_CASE("reject: PUBLISH QoS 3 [MQTT-3.3.1-4] and DUP on QoS 0 [MQTT-3.3.1-2]") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    const Bytes props = v == Version::V5 ? B({0}) : Bytes{};
    const Bytes q1 = B({0, 1, 't', 0, 1}) + props;
    const uint8_t rem = static_cast<uint8_t>(q1.size());
    check_ok(decode_wire<Publish>(B({0x32, rem}) + q1, v, decode_publish));
    check_ok(decode_wire<Publish>(B({0x3A, rem}) + q1, v, decode_publish));  // DUP on QoS 1
    check_fail(decode_wire<Publish>(B({0x36, rem}) + q1, v, decode_publish),
               Reason::MalformedPacket);
    const Bytes q0 = B({0, 1, 't'}) + props;
    const uint8_t rem0 = static_cast<uint8_t>(q0.size());
    check_ok(decode_wire<Publish>(B({0x30, rem0}) + q0, v, decode_publish));
    check_fail(decode_wire<Publish>(B({0x38, rem0}) + q0, v, decode_publish),
               Reason::MalformedPacket);
  }
}

TEST_CASE("reject: packet identifier 0 [MQTT-2.3.1-1]") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    const bool v5 = v == Version::V5;
    const Bytes pr = v5 ? B({0}) : Bytes{};  // empty property block in 5.0
    const auto pid = [](int id) { return B({id >> 8, id & 0xFF}); };
    const auto len = [](const Bytes& b) { return B({static_cast<int>(b.size())}); };
    for (int id : {0x0100, 0}) {
      CAPTURE(id);
      const bool ok = id != 0;
      Bytes b = B({0, 1, 't'}) + pid(id) + pr;
      Result r = decode_wire<Publish>(B({0x32}) + len(b) + b, v, decode_publish);
      ok ? check_ok(r) : check_fail(r, Reason::ProtocolError);
      b = pid(id);
      r = decode_wire<PubResponse>(B({0x40}) + len(b) + b, v, decode_pub_response);
      ok ? check_ok(r) : check_fail(r, Reason::ProtocolError);
      b = pid(id) + pr + B({0, 1, 'a', 1});
      r = decode_wire<Subscribe>(B({0x82}) + len(b) + b, v, decode_subscribe);
      ok ? check_ok(r) : check_fail(r, Reason::ProtocolError);
      b = pid(id) + pr + B({1});
      r = decode_wire<Suback>(B({0x90}) + len(b) + b, v, decode_suback);
      ok ? check_ok(r) : check_fail(r, Reason::ProtocolError);
      b = pid(id) + pr + B({0, 1, 'a'});
      r = decode_wire<Unsubscribe>(B({0xA2}) + len(b) + b, v, decode_unsubscribe);
      ok ? check_ok(r) : check_fail(r, Reason::ProtocolError);
      b = pid(id) + (v5 ? B({0, 0}) : Bytes{});
      r = decode_wire<Unsuback>(B({0xB0}) + len(b) + b, v, decode_unsuback);
      ok ? check_ok(r) : check_fail(r, Reason::ProtocolError);
    }
  }
  // QoS 0 PUBLISH has no packet identifier: the two bytes are payload.
  Publish p;
  check_ok(decode_wire(B({0x30, 5, 0, 1, 't', 0, 0}), Version::V311, decode_publish, p));
  CHECK(p.payload == std::string("\0\0", 2));
}

TEST_CASE("reject: PUBLISH topic with wildcards or invalid UTF-8") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    const Bytes pr = v == Version::V5 ? B({0}) : Bytes{};
    const auto pub = [&](std::string_view topic) {
      Bytes b = B({0, static_cast<int>(topic.size())}) + topic + pr + "payload";
      return decode_wire<Publish>(B({0x30, static_cast<int>(b.size())}) + b, v, decode_publish);
    };
    check_ok(pub("sport/tennis"));
    check_ok(pub("$SYS/x"));
    check_fail(pub("sport/+"), Reason::TopicNameInvalid);  // [MQTT-3.3.2-2]
    check_fail(pub("sport/#"), Reason::TopicNameInvalid);
    check_fail(pub("a\xC0\x80"), Reason::MalformedPacket);  // overlong NUL [MQTT-1.5.4-1]
    check_fail(pub(std::string_view("a\0b", 3)), Reason::MalformedPacket);  // [MQTT-1.5.4-2]
    check_fail(pub("\xED\xBF\xBF"), Reason::MalformedPacket);               // surrogate
  }
}

TEST_CASE("reject: empty PUBLISH topic unless 5.0 with a Topic Alias") {
  // 5.0 with Topic Alias 1: property block 03 23 00 01.
  check_ok(
      decode_wire<Publish>(B({0x30, 7, 0, 0, 3, 0x23, 0, 1, 'x'}), Version::V5, decode_publish));
  check_fail(decode_wire<Publish>(B({0x30, 4, 0, 0, 0, 'x'}), Version::V5, decode_publish),
             Reason::ProtocolError);
  check_fail(decode_wire<Publish>(B({0x30, 3, 0, 0, 'x'}), Version::V311, decode_publish),
             Reason::TopicNameInvalid);
  // Topic Alias 0 is not permitted [MQTT-3.3.2-8].
  CHECK_FALSE(
      decode_wire<Publish>(B({0x30, 7, 0, 0, 3, 0x23, 0, 0, 'x'}), Version::V5, decode_publish).ok);
}

TEST_CASE("reject: SUBSCRIBE without subscriptions [MQTT-3.8.3-3]") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    const Bytes pr = v == Version::V5 ? B({0}) : Bytes{};
    Bytes b = B({0, 1}) + pr + B({0, 1, 'a', 0});
    check_ok(
        decode_wire<Subscribe>(B({0x82, static_cast<int>(b.size())}) + b, v, decode_subscribe));
    b = B({0, 1}) + pr;
    check_fail(
        decode_wire<Subscribe>(B({0x82, static_cast<int>(b.size())}) + b, v, decode_subscribe),
        Reason::ProtocolError);
  }
}

TEST_CASE("reject: subscription options: reserved bits, QoS 3, Retain Handling 3") {
  const auto sub5 = [](int opts, std::string_view filter = "a") {
    Bytes b = B({0, 1, 0, 0, static_cast<int>(filter.size())}) + filter + B({opts});
    return decode_wire<Subscribe>(B({0x82, static_cast<int>(b.size())}) + b, Version::V5,
                                  decode_subscribe);
  };
  const auto sub3 = [](int opts) {
    return decode_wire<Subscribe>(B({0x82, 6, 0, 1, 0, 1, 'a', opts}), Version::V311,
                                  decode_subscribe);
  };
  check_ok(sub5(0x2E));                             // every 5.0 option set legally
  check_fail(sub5(0x40), Reason::MalformedPacket);  // reserved [MQTT-3.8.3-5]
  check_fail(sub5(0x80), Reason::MalformedPacket);
  check_fail(sub5(0x03), Reason::MalformedPacket);  // QoS 3
  check_fail(sub5(0x30), Reason::ProtocolError);    // Retain Handling 3
  check_ok(sub3(0x02));
  check_fail(sub3(0x04), Reason::MalformedPacket);  // 3.1.1: upper 6 bits reserved
  check_fail(sub3(0x03), Reason::MalformedPacket);  // QoS 3 [MQTT-3-8.3-4]
  // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
  check_ok(sub5(0x04, "x/y"));
  check_ok(sub5(0x00, "$share/g/x"));
  check_fail(sub5(0x04, "$share/g/x"), Reason::ProtocolError);
}

TEST_CASE("reject: invalid topic filters in SUBSCRIBE and UNSUBSCRIBE") {
  for (Version v : kVersions) {
    CAPTURE(static_cast<int>(v));
    const Bytes pr = v == Version::V5 ? B({0}) : Bytes{};
    const auto sub = [&](std::string_view f) {
      Bytes b = B({0, 1}) + pr + B({0, static_cast<int>(f.size())}) + f + B({1});
      return decode_wire<Subscribe>(B({0x82, static_cast<int>(b.size())}) + b, v, decode_subscribe);
    };
    const auto unsub = [&](std::string_view f) {
      Bytes b = B({0, 1}) + pr + B({0, static_cast<int>(f.size())}) + f;
      return decode_wire<Unsubscribe>(B({0xA2, static_cast<int>(b.size())}) + b, v,
                                      decode_unsubscribe);
    };
    for (const char* f : {"sport/+/x", "sport/#", "#"}) {
      CAPTURE(f);
      check_ok(sub(f));
      check_ok(unsub(f));
    }
    for (const char* f : {"sport/tennis#", "a/#/b", "a+", ""}) {
      CAPTURE(f);
      check_fail(sub(f), Reason::TopicFilterInvalid);
      check_fail(unsub(f), Reason::TopicFilterInvalid);
    }
    check_fail(sub("\xFF"), Reason::MalformedPacket);
    check_fail(unsub("\xFF"), Reason::MalformedPacket);
    // UNSUBSCRIBE needs at least one filter [MQTT-3.10.3-2].
    const Bytes empty = B({0, 1}) + pr;
    check_fail(decode_wire<Unsubscribe>(B({0xA2, static_cast<int>(empty.size())}) + empty, v,
                                        decode_unsubscribe),
               Reason::ProtocolError);
  }
}

TEST_CASE("reject: properties not allowed in the packet") {
  // Session Expiry Interval (0x11) is fine in DISCONNECT, not in PUBLISH or PUBACK.
  check_ok(decode_wire<Disconnect>(B({0xE0, 7, 0, 5, 0x11, 0, 0, 0, 1}), Version::V5,
                                   decode_disconnect));
  check_fail(decode_wire<Publish>(B({0x30, 9, 0, 1, 't', 5, 0x11, 0, 0, 0, 1}), Version::V5,
                                  decode_publish),
             Reason::ProtocolError);
  check_fail(decode_wire<PubResponse>(B({0x40, 9, 0, 1, 0, 5, 0x11, 0, 0, 0, 1}), Version::V5,
                                      decode_pub_response),
             Reason::ProtocolError);
  // Subscription Identifier: one in SUBSCRIBE is fine, two are not.
  check_ok(decode_wire<Subscribe>(B({0x82, 9, 0, 1, 2, 0x0B, 5, 0, 1, 'a', 0}), Version::V5,
                                  decode_subscribe));
  CHECK_FALSE(decode_wire<Subscribe>(B({0x82, 11, 0, 1, 4, 0x0B, 5, 0x0B, 6, 0, 1, 'a', 0}),
                                     Version::V5, decode_subscribe)
                  .ok);
  // Server Reference in CONNACK ok, in AUTH not.
  check_ok(
      decode_wire<Connack>(B({0x20, 7, 0, 0x9C, 4, 0x1C, 0, 1, 'h'}), Version::V5, decode_connack));
  check_fail(decode_wire<Auth>(B({0xF0, 6, 0x18, 4, 0x1C, 0, 1, 'h'}), Version::V5, auth_dec),
             Reason::ProtocolError);
}

TEST_CASE("reject: strings and blocks that run past the packet") {
  const Version v = Version::V311;
  check_ok(decode_wire<Publish>(B({0x30, 5, 0, 3, 'a', '/', 'b'}), v, decode_publish));
  check_fail(decode_wire<Publish>(B({0x30, 5, 0, 4, 'a', '/', 'b'}), v, decode_publish),
             Reason::MalformedPacket);
  check_fail(decode_wire<Publish>(B({0x30, 1, 0}), v, decode_publish), Reason::MalformedPacket);
  check_fail(decode_wire<Publish>(B({0x32, 4, 0, 1, 't', 0}), v, decode_publish),
             Reason::MalformedPacket);  // packet id cut short
  check_fail(decode_wire<Subscribe>(B({0x82, 5, 0, 1, 0, 1, 'a'}), v, decode_subscribe),
             Reason::MalformedPacket);  // options byte missing
  check_fail(decode_wire<Subscribe>(B({0x82, 6, 0, 1, 0, 5, 'a', 0}), v, decode_subscribe),
             Reason::MalformedPacket);
  check_fail(decode_wire<Unsubscribe>(B({0xA2, 5, 0, 1, 0, 2, 'a'}), v, decode_unsubscribe),
             Reason::MalformedPacket);
  check_fail(decode_wire<Connack>(B({0x20, 1, 0}), v, decode_connack), Reason::MalformedPacket);
  check_fail(decode_wire<PubResponse>(B({0x40, 1, 0}), v, decode_pub_response),
             Reason::MalformedPacket);
  // 5.0 property length larger than what is left.
  check_ok(decode_wire<Publish>(B({0x30, 8, 0, 1, 't', 3, 0x23, 0, 1, 'x'}), Version::V5,
                                decode_publish));
  check_fail(
      decode_wire<Publish>(B({0x30, 7, 0, 1, 't', 4, 0x23, 0, 1}), Version::V5, decode_publish),
      Reason::MalformedPacket);
  check_fail(decode_wire<Connack>(B({0x20, 2, 0, 0}), Version::V5, decode_connack),
             Reason::MalformedPacket);  // 5.0 CONNACK needs its property length
}

TEST_CASE("reject: bytes left unread") {
  check_ok(decode_wire<Connack>(B({0x20, 2, 0, 0}), Version::V311, decode_connack));
  check_fail(decode_wire<Connack>(B({0x20, 3, 0, 0, 0}), Version::V311, decode_connack),
             Reason::MalformedPacket);
  check_fail(decode_wire<Connack>(B({0x20, 4, 0, 0, 0, 0}), Version::V5, decode_connack),
             Reason::MalformedPacket);
  check_fail(decode_wire<PubResponse>(B({0x40, 3, 0, 1, 0}), Version::V311, decode_pub_response),
             Reason::MalformedPacket);
  check_fail(
      decode_wire<PubResponse>(B({0x40, 5, 0, 1, 0, 0, 7}), Version::V5, decode_pub_response),
      Reason::MalformedPacket);
  check_fail(decode_wire<Unsuback>(B({0xB0, 3, 0, 1, 0}), Version::V311, decode_unsuback),
             Reason::MalformedPacket);
  check_fail(decode_wire<Disconnect>(B({0xE0, 1, 0}), Version::V311, decode_disconnect),
             Reason::MalformedPacket);
  check_fail(decode_wire<Disconnect>(B({0xE0, 3, 0, 0, 0}), Version::V5, decode_disconnect),
             Reason::MalformedPacket);
  check_fail(decode_wire<Auth>(B({0xF0, 3, 0x18, 0, 0}), Version::V5, auth_dec),
             Reason::MalformedPacket);
  Bytes ping = B({0xC0, 1, 0});
  check_fail(decode_empty(frame(ping).first, frame(ping).body), Reason::MalformedPacket);
}

TEST_CASE("5.0 short forms: PUBACK family length 2/3/4+, DISCONNECT and AUTH length 0/1") {
  const Version v = Version::V5;
  PubResponse r;
  check_ok(decode_wire(B({0x50, 2, 0, 9}), v, decode_pub_response, r));
  CHECK(r.type == PacketType::Pubrec);
  CHECK(r.reason == 0);
  check_ok(decode_wire(B({0x50, 3, 0, 9, 0x10}), v, decode_pub_response, r));
  CHECK(r.reason == 0x10);
  CHECK(r.properties.empty());
  check_ok(decode_wire(B({0x50, 4, 0, 9, 0x10, 0}), v, decode_pub_response, r));
  CHECK(r.reason == 0x10);
  check_ok(decode_wire(B({0x50, 8, 0, 9, 0x80, 4, 0x1F, 0, 1, 'e'}), v, decode_pub_response, r));
  CHECK(r.reason == 0x80);
  CHECK(r.properties.reason_string == "e");

  Disconnect d;
  d.reason = 0x8B;
  check_ok(decode_wire(B({0xE0, 0}), v, decode_disconnect, d));
  CHECK(d.reason == 0);
  check_ok(decode_wire(B({0xE0, 1, 0x8E}), v, decode_disconnect, d));
  CHECK(d.reason == 0x8E);
  Auth a;
  check_ok(decode_wire(B({0xF0, 0}), v, auth_dec, a));
  CHECK(a.reason == 0);
  check_ok(decode_wire(B({0xF0, 1, 0x19}), v, auth_dec, a));
  CHECK(a.reason == 0x19);
}

TEST_CASE("reject: reason and return codes not defined for the packet") {
  const Version v5 = Version::V5;
  const Version v3 = Version::V311;
  // CONNACK
  check_ok(decode_wire<Connack>(B({0x20, 2, 0, 5}), v3, decode_connack));
  check_fail(decode_wire<Connack>(B({0x20, 2, 0, 6}), v3, decode_connack), Reason::ProtocolError);
  check_ok(decode_wire<Connack>(B({0x20, 3, 0, 0x87, 0}), v5, decode_connack));
  check_fail(decode_wire<Connack>(B({0x20, 3, 0, 0x01, 0}), v5, decode_connack),
             Reason::ProtocolError);
  // PUBACK/PUBREC vs PUBREL/PUBCOMP
  check_ok(decode_wire<PubResponse>(B({0x40, 3, 0, 1, 0x10}), v5, decode_pub_response));
  check_fail(decode_wire<PubResponse>(B({0x40, 3, 0, 1, 0x92}), v5, decode_pub_response),
             Reason::ProtocolError);
  check_ok(decode_wire<PubResponse>(B({0x62, 3, 0, 1, 0x92}), v5, decode_pub_response));
  check_fail(decode_wire<PubResponse>(B({0x62, 3, 0, 1, 0x10}), v5, decode_pub_response),
             Reason::ProtocolError);
  check_fail(decode_wire<PubResponse>(B({0x70, 3, 0, 1, 0x80}), v5, decode_pub_response),
             Reason::ProtocolError);
  // SUBACK [MQTT-3.9.3-2] (3.1.1) and 5.0 table
  check_ok(decode_wire<Suback>(B({0x90, 3, 0, 1, 0x80}), v3, decode_suback));
  check_fail(decode_wire<Suback>(B({0x90, 3, 0, 1, 0x03}), v3, decode_suback),
             Reason::ProtocolError);
  check_fail(decode_wire<Suback>(B({0x90, 3, 0, 1, 0x8F}), v3, decode_suback),
             Reason::ProtocolError);
  check_ok(decode_wire<Suback>(B({0x90, 4, 0, 1, 0, 0x8F}), v5, decode_suback));
  check_fail(decode_wire<Suback>(B({0x90, 4, 0, 1, 0, 0x03}), v5, decode_suback),
             Reason::ProtocolError);
  check_fail(decode_wire<Suback>(B({0x90, 2, 0, 1}), v3, decode_suback), Reason::ProtocolError);
  // UNSUBACK 5.0
  check_ok(decode_wire<Unsuback>(B({0xB0, 4, 0, 1, 0, 0x11}), v5, decode_unsuback));
  check_fail(decode_wire<Unsuback>(B({0xB0, 4, 0, 1, 0, 0x01}), v5, decode_unsuback),
             Reason::ProtocolError);
  check_fail(decode_wire<Unsuback>(B({0xB0, 3, 0, 1, 0}), v5, decode_unsuback),
             Reason::ProtocolError);
  // DISCONNECT, AUTH
  check_ok(decode_wire<Disconnect>(B({0xE0, 1, 0x9D}), v5, decode_disconnect));
  check_fail(decode_wire<Disconnect>(B({0xE0, 1, 0x01}), v5, decode_disconnect),
             Reason::ProtocolError);
  check_ok(decode_wire<Auth>(B({0xF0, 1, 0x18}), v5, auth_dec));
  check_fail(decode_wire<Auth>(B({0xF0, 1, 0x00 + 0x01}), v5, auth_dec), Reason::ProtocolError);
}

TEST_CASE("reject: CONNACK reserved flags and session present on refusal") {
  for (Version v : {Version::V311, Version::V5}) {
    CAPTURE(static_cast<int>(v));
    const Bytes pr = v == Version::V5 ? B({0}) : Bytes{};
    const int rem = 2 + static_cast<int>(pr.size());
    const int refuse = v == Version::V5 ? 0x87 : 0x05;
    check_ok(decode_wire<Connack>(B({0x20, rem, 0x01, 0}) + pr, v, decode_connack));
    check_fail(decode_wire<Connack>(B({0x20, rem, 0x02, 0}) + pr, v, decode_connack),
               Reason::MalformedPacket);  // [MQTT-3.2.2-1]
    check_ok(decode_wire<Connack>(B({0x20, rem, 0x00, refuse}) + pr, v, decode_connack));
    check_fail(decode_wire<Connack>(B({0x20, rem, 0x01, refuse}) + pr, v, decode_connack),
               Reason::ProtocolError);  // [MQTT-3.2.2-4] / [MQTT-3.2.2-6]
  }
}

// ======================= mutation: accepted input has a canonical form =======================

namespace {

using Canon = std::function<bool(uint8_t, std::span<const uint8_t>, Bytes&)>;

// Decodes with `dec`; when accepted, re-encodes with `enc` into `out`.
template <class T, class Dec, class Enc>
Canon canon(Version v, Dec dec, Enc enc) {
  return [=](uint8_t first, std::span<const uint8_t> body, Bytes& out) {
    T x;
    if (!dec(first, body, v, x).ok) return false;
    enc(x, v, out);
    return true;
  };
}

struct Sample {
  Bytes wire;
  Canon canon;
};

std::vector<Sample> samples() {
  std::vector<Sample> s;
  for (Version v : kVersions) {
    const auto add = [&](auto value, auto enc, auto dec) {
      using T = decltype(value);
      Bytes w;
      enc(value, v, w);
      s.push_back({w, canon<T>(v, dec, enc)});
    };
    add(Connack{true, 0, only_v5(connack_props(), v)}, encode_connack, decode_connack);
    add(Publish{1, true, true, "a/b/c", 12, only_v5(publish_props(), v), "payload"}, encode_publish,
        decode_publish);
    add(Publish{0, false, false, "t", 0, {}, ""}, encode_publish, decode_publish);
    add(PubResponse{PacketType::Pubrel, 3, 0, only_v5(reason_props(), v)}, encode_pub_response,
        decode_pub_response);
    add(Subscribe{4,
                  only_v5(subscribe_props(), v),
                  {{"a/+", 1, false, false, 0}, {"#", 2, false, false, 0}}},
        encode_subscribe, decode_subscribe);
    add(Suback{4, only_v5(reason_props(), v), {0, 1, 2}}, encode_suback, decode_suback);
    add(Unsubscribe{5, only_v5(user_props(), v), {"a/+", "b"}}, encode_unsubscribe,
        decode_unsubscribe);
    add(Unsuback{5, only_v5(reason_props(), v),
                 v == Version::V5 ? std::vector<uint8_t>{0, 0x11} : std::vector<uint8_t>{}},
        encode_unsuback, decode_unsuback);
    add(Disconnect{v == Version::V5 ? uint8_t{0x9D} : uint8_t{0}, only_v5(disconnect_props(), v)},
        encode_disconnect, decode_disconnect);
  }
  Bytes w;
  encode_auth({0x18, auth_props()}, w);
  s.push_back({w, canon<Auth>(Version::V5, auth_dec, auth_enc)});
  return s;
}

}  // namespace

TEST_CASE("mutated packets: never read out of bounds; what is accepted re-encodes stably") {
  std::mt19937 rng(20240601);  // fixed seed: reproducible
  size_t accepted = 0;
  size_t rejected = 0;
  for (const Sample& s : samples()) {
    Wire f = frame(s.wire);
    Bytes canonical;
    REQUIRE(s.canon(f.first, f.body, canonical));  // the unmutated sample is valid
    CHECK(canonical == s.wire);                    // and already canonical
    for (int i = 0; i < 400; ++i) {
      Bytes body(f.body.begin(), f.body.end());
      uint8_t first = f.first;
      switch (rng() % 4) {
        case 0:  // overwrite 1-3 bytes
          for (unsigned k = 0, n = 1 + rng() % 3; k < n && !body.empty(); ++k)
            body[rng() % body.size()] = static_cast<uint8_t>(rng());
          break;
        case 1:  // truncate
          body.resize(body.empty() ? 0 : rng() % body.size());
          break;
        case 2:  // append garbage
          for (unsigned k = 0, n = 1 + rng() % 4; k < n; ++k)
            body.push_back(static_cast<uint8_t>(rng()));
          break;
        default:  // other flags, same type
          first = static_cast<uint8_t>((first & 0xF0) | (rng() & 0x0F));
          break;
      }
      // Decode from an exact-size heap buffer so ASan sees any overread.
      std::vector<uint8_t> exact(body);
      Bytes once;
      if (!s.canon(first, std::span<const uint8_t>(exact.data(), exact.size()), once)) {
        ++rejected;
        continue;
      }
      ++accepted;
      Wire g = frame(once);
      Bytes twice;
      REQUIRE(s.canon(g.first, g.body, twice));
      CHECK(twice == once);
    }
  }
  // The mutations reach both outcomes, so both paths above were exercised.
  CHECK(accepted > 100);
  CHECK(rejected > 100);
}
