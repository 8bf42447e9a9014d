// The CONNECT parser against the normative rules of MQTT 3.1, 3.1.1 and 5.0.
// Each rule has a valid and a violating case. Packets are built byte by byte
// here (not with encode_connect) so the tests do not share a bug with the
// encoder. The last cases check split invariance: parsing a buffer whole or
// as growing prefixes in random chunk sizes gives the same result.
#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mqtt/connect.hpp"
#include "mqtt/frame.hpp"

using mqtt::ConnectError;
using mqtt::ConnectResult;
using mqtt::ParseStatus;
using mqtt::Version;
using Bytes = std::vector<uint8_t>;

namespace {

// ---------- building packets ----------

struct W {
  Bytes b;
  W& u8(uint8_t v) {
    b.push_back(v);
    return *this;
  }
  W& u16(uint16_t v) {
    b.push_back(uint8_t(v >> 8));
    b.push_back(uint8_t(v));
    return *this;
  }
  W& u32(uint32_t v) {
    u16(uint16_t(v >> 16));
    return u16(uint16_t(v));
  }
  W& var(uint32_t v) {
    mqtt::append_varint(b, v);
    return *this;
  }
  W& raw(const Bytes& r) {
    b.insert(b.end(), r.begin(), r.end());
    return *this;
  }
  W& raw(std::string_view s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  W& str(std::string_view s) {
    u16(uint16_t(s.size()));
    return raw(s);
  }
  W& str(const Bytes& s) {
    u16(uint16_t(s.size()));
    return raw(s);
  }
};

// MQTT 5 property helpers: each returns the bytes of one property.
Bytes p8(uint8_t id, uint8_t v) {
  return W().u8(id).u8(v).b;
}
Bytes p16(uint8_t id, uint16_t v) {
  return W().u8(id).u16(v).b;
}
Bytes p32(uint8_t id, uint32_t v) {
  return W().u8(id).u32(v).b;
}
Bytes pstr(uint8_t id, std::string_view s) {
  return W().u8(id).str(s).b;
}
Bytes ppair(uint8_t id, std::string_view k, std::string_view v) {
  return W().u8(id).str(k).str(v).b;
}
Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes frame(const Bytes& body, uint8_t first = 0x10) {
  W w;
  w.u8(first).var(uint32_t(body.size())).raw(body);
  return w.b;
}

// A CONNECT described field by field; build() derives the flags from the
// fields, then applies flags_xor so a test can contradict them.
struct Conn {
  std::string name = "MQTT";
  uint8_t level = 4;
  bool clean = true;
  uint16_t keep_alive = 60;
  Bytes client_id = bytes_of("dev-1");
  Bytes props;  // MQTT 5 CONNECT properties (without the length), level 5 only
  bool will = false;
  uint8_t will_qos = 0;
  bool will_retain = false;
  Bytes will_props;  // level 5 only
  Bytes will_topic = bytes_of("status/dev-1");
  Bytes will_payload = bytes_of("offline");
  std::optional<Bytes> username;
  std::optional<Bytes> password;
  uint8_t flags_xor = 0;
  Bytes trailing;  // extra bytes inside the packet after the last field

  static Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

  uint8_t flags() const {
    uint8_t f = 0;
    if (username) f |= 0x80;
    if (password) f |= 0x40;
    if (will_retain) f |= 0x20;
    f |= uint8_t((will_qos & 3) << 3);
    if (will) f |= 0x04;
    if (clean) f |= 0x02;
    return f ^ flags_xor;
  }
  Bytes body() const {
    W w;
    w.str(name).u8(level).u8(flags()).u16(keep_alive);
    if (level == 5) w.var(uint32_t(props.size())).raw(props);
    w.str(client_id);
    if (will) {
      if (level == 5) w.var(uint32_t(will_props.size())).raw(will_props);
      w.str(will_topic).str(will_payload);
    }
    if (username) w.str(*username);
    if (password) w.str(*password);
    w.raw(trailing);
    return w.b;
  }
  Bytes build() const { return frame(body()); }
};

Conn v31() {
  Conn c;
  c.name = "MQIsdp";
  c.level = 3;
  return c;
}
Conn v311() {
  return Conn();
}
Conn v5() {
  Conn c;
  c.level = 5;
  return c;
}

std::string str_of(const Bytes& b) {
  return std::string(b.begin(), b.end());
}

// ---------- parsing and comparing ----------

ConnectResult parse(const Bytes& in, size_t max = mqtt::kDefaultMaxConnectBytes) {
  return mqtt::parse_connect(std::span<const uint8_t>(in.data(), in.size()), max);
}

std::string describe(const ConnectResult& r) {
  std::ostringstream o;
  o << "status=" << int(r.status) << " error=" << mqtt::to_string(r.error)
    << " level=" << int(r.info.protocol_level) << " version=" << int(r.info.version)
    << " clean=" << r.info.clean_start << " ka=" << r.info.keep_alive << " id='" << r.info.client_id
    << "' user=" << (r.info.username ? "'" + *r.info.username + "'" : "-")
    << " pass=" << (r.info.password ? std::to_string(r.info.password->size()) : "-")
    << " len=" << r.info.packet_length;
  if (r.info.will) {
    o << " will{q" << int(r.info.will->qos) << " r" << r.info.will->retain << " '"
      << r.info.will->topic << "' " << r.info.will->payload.size() << "B}";
  }
  return o.str();
}

bool same(const ConnectResult& a, const ConnectResult& b) {
  const auto &x = a.info, &y = b.info;
  bool wills = x.will.has_value() == y.will.has_value();
  if (wills && x.will) {
    wills = x.will->qos == y.will->qos && x.will->retain == y.will->retain &&
            x.will->topic == y.will->topic && x.will->payload == y.will->payload &&
            x.will->properties == y.will->properties;
  }
  return a.status == b.status && a.error == b.error && x.version == y.version &&
         x.protocol_level == y.protocol_level && x.clean_start == y.clean_start &&
         x.keep_alive == y.keep_alive && x.client_id == y.client_id && x.username == y.username &&
         x.password == y.password && wills && x.properties == y.properties &&
         x.packet_length == y.packet_length;
}

// Feeds growing prefixes (chunk sizes from `rng`, at most max_chunk) and
// returns the first result that is not NeedMore, or the last NeedMore.
ConnectResult parse_incrementally(const Bytes& in, std::mt19937& rng, size_t max_chunk,
                                  size_t max = mqtt::kDefaultMaxConnectBytes) {
  ConnectResult r;
  size_t have = 0;
  do {
    have += 1 + rng() % max_chunk;
    if (have > in.size()) have = in.size();
    r = mqtt::parse_connect(std::span<const uint8_t>(in.data(), have), max);
  } while (r.status == ParseStatus::NeedMore && have < in.size());
  return r;
}

// Whole-buffer vs incremental parse over several chunkings.
void check_split_invariant(const Bytes& in, std::mt19937& rng,
                           size_t max = mqtt::kDefaultMaxConnectBytes) {
  ConnectResult whole = parse(in, max);
  for (size_t max_chunk : {size_t{1}, size_t{2}, size_t{7}, size_t{64}}) {
    ConnectResult inc = parse_incrementally(in, rng, max_chunk, max);
    INFO("whole:       ", describe(whole));
    INFO("incremental: ", describe(inc), " (max chunk ", max_chunk, ")");
    REQUIRE(same(whole, inc));
  }
}

ConnectResult expect_done(const Bytes& in) {
  ConnectResult r = parse(in);
  INFO(describe(r));
  REQUIRE(r.status == ParseStatus::Done);
  CHECK(r.error == ConnectError::None);
  CHECK(r.info.packet_length == in.size());
  // Every proper prefix of a valid CONNECT needs more bytes.
  for (size_t n = 0; n < in.size(); ++n) {
    auto p = mqtt::parse_connect(std::span<const uint8_t>(in.data(), n));
    if (p.status != ParseStatus::NeedMore) {
      INFO("prefix ", n, " of ", in.size(), ": ", describe(p));
      REQUIRE(p.status == ParseStatus::NeedMore);
    }
  }
  std::mt19937 rng(uint32_t(in.size()));
  check_split_invariant(in, rng);
  return r;
}

ConnectResult expect_error(const Bytes& in, ConnectError e,
                           size_t max = mqtt::kDefaultMaxConnectBytes) {
  ConnectResult r = parse(in, max);
  INFO(describe(r));
  REQUIRE(r.status == ParseStatus::Error);
  CHECK(std::string(mqtt::to_string(r.error)) == std::string(mqtt::to_string(e)));
  std::mt19937 rng(uint32_t(in.size()) + 1);
  check_split_invariant(in, rng, max);
  return r;
}

}  // namespace

// ======================= valid CONNECTs, one per version =======================

TEST_CASE("MQTT 3.1 CONNECT (MQIsdp, level 3)") {
  Conn c = v31();
  c.client_id = Conn::bytes_of("sensor-17");
  c.keep_alive = 30;
  auto r = expect_done(c.build());
  CHECK(r.info.version == Version::V31);
  CHECK(r.info.protocol_level == 3);
  CHECK(r.info.client_id == "sensor-17");
  CHECK(r.info.clean_start);
  CHECK(r.info.keep_alive == 30);
  CHECK_FALSE(r.info.username);
  CHECK_FALSE(r.info.password);
  CHECK_FALSE(r.info.will);
}

TEST_CASE("MQTT 3.1.1 CONNECT with will, username and password") {
  Conn c = v311();
  c.clean = false;
  c.keep_alive = 0;
  c.will = true;
  c.will_qos = 1;
  c.will_retain = true;
  c.will_payload = {0x00, 0xFF, 0x10};  // binary payload
  c.username = Conn::bytes_of("alice");
  c.password = Bytes{0xFF, 0x00, 0xFE};  // binary password, not UTF-8
  auto r = expect_done(c.build());
  CHECK(r.info.version == Version::V311);
  CHECK(r.info.protocol_level == 4);
  CHECK(r.info.client_id == "dev-1");
  CHECK_FALSE(r.info.clean_start);
  CHECK(r.info.keep_alive == 0);
  REQUIRE(r.info.will);
  CHECK(r.info.will->qos == 1);
  CHECK(r.info.will->retain);
  CHECK(r.info.will->topic == "status/dev-1");
  CHECK(r.info.will->payload == std::string("\x00\xFF\x10", 3));
  CHECK(r.info.username == std::optional<std::string>("alice"));
  CHECK(r.info.password == std::optional<std::string>(std::string("\xFF\x00\xFE", 3)));
}

TEST_CASE("MQTT 5.0 CONNECT with properties and will properties") {
  namespace P = mqtt::prop;
  Conn c = v5();
  c.keep_alive = 65535;
  c.props = cat({p32(P::SessionExpiryInterval, 3600), p16(P::ReceiveMaximum, 20),
                 p32(P::MaximumPacketSize, 1 << 20), p16(P::TopicAliasMaximum, 10),
                 p8(P::RequestResponseInformation, 1), p8(P::RequestProblemInformation, 0),
                 ppair(P::UserProperty, "site", "berlin"), ppair(P::UserProperty, "site", "paris"),
                 pstr(P::AuthenticationMethod, "SCRAM-SHA-1"),
                 pstr(P::AuthenticationData, std::string("\x01\x02\x00", 3))});
  c.will = true;
  c.will_qos = 2;
  c.will_props =
      cat({p32(P::WillDelayInterval, 5), p8(P::PayloadFormatIndicator, 1),
           p32(P::MessageExpiryInterval, 60), pstr(P::ContentType, "text/plain"),
           pstr(P::ResponseTopic, "replies/dev-1"),
           pstr(P::CorrelationData, std::string("\xAB\x00", 2)), ppair(P::UserProperty, "k", "v")});
  c.username = Conn::bytes_of("bob");
  auto r = expect_done(c.build());
  CHECK(r.info.version == Version::V5);
  CHECK(r.info.protocol_level == 5);
  CHECK(r.info.keep_alive == 65535);
  const auto& p = r.info.properties;
  CHECK(p.session_expiry_interval == std::optional<uint32_t>(3600));
  CHECK(p.receive_maximum == std::optional<uint16_t>(20));
  CHECK(p.maximum_packet_size == std::optional<uint32_t>(1 << 20));
  CHECK(p.topic_alias_maximum == std::optional<uint16_t>(10));
  CHECK(p.request_response_information == std::optional<uint8_t>(1));
  CHECK(p.request_problem_information == std::optional<uint8_t>(0));
  // User Property may repeat; order is kept [MQTT-3.1.2.3.2? user property].
  REQUIRE(p.user_properties.size() == 2);
  CHECK(p.user_properties[0] == std::pair<std::string, std::string>("site", "berlin"));
  CHECK(p.user_properties[1] == std::pair<std::string, std::string>("site", "paris"));
  CHECK(p.authentication_method == std::optional<std::string>("SCRAM-SHA-1"));
  CHECK(p.authentication_data == std::optional<std::string>(std::string("\x01\x02\x00", 3)));
  REQUIRE(r.info.will);
  CHECK(r.info.will->qos == 2);
  CHECK_FALSE(r.info.will->retain);
  const auto& wp = r.info.will->properties;
  CHECK(wp.will_delay_interval == std::optional<uint32_t>(5));
  CHECK(wp.payload_format_indicator == std::optional<uint8_t>(1));
  CHECK(wp.message_expiry_interval == std::optional<uint32_t>(60));
  CHECK(wp.content_type == std::optional<std::string>("text/plain"));
  CHECK(wp.response_topic == std::optional<std::string>("replies/dev-1"));
  CHECK(wp.correlation_data == std::optional<std::string>(std::string("\xAB\x00", 2)));
  REQUIRE(wp.user_properties.size() == 1);
  CHECK(r.info.username == std::optional<std::string>("bob"));
  CHECK_FALSE(r.info.password);
}

TEST_CASE("MQTT 5.0 CONNECT with empty property blocks") {
  Conn c = v5();
  c.will = true;
  auto r = expect_done(c.build());
  CHECK(r.info.properties.empty());
  REQUIRE(r.info.will);
  CHECK(r.info.will->properties.empty());
}

// ======================= fixed header =======================

TEST_CASE("fixed header: flags nibble must be 0 [MQTT-2.1.3-1]") {
  expect_done(frame(v311().body(), 0x10));
  for (uint8_t f : {0x11, 0x12, 0x18, 0x1F}) {
    CAPTURE(int(f));
    expect_error(frame(v311().body(), f), ConnectError::BadFixedHeaderFlags);
  }
}

TEST_CASE("fixed header: not a CONNECT at all") {
  // An HTTP request, a TLS ClientHello and other MQTT packets on an MQTT port.
  std::string http = "GET / HTTP/1.1\r\nHost: broker\r\n\r\n";
  expect_error(Bytes(http.begin(), http.end()), ConnectError::NotConnect);
  expect_error(Bytes{'G'}, ConnectError::NotConnect);
  Bytes hello = {0x16, 0x03, 0x01, 0x00, 0x2F, 0x01, 0x00, 0x00, 0x2B, 0x03, 0x03};
  hello.resize(52, 0x00);
  expect_error(hello, ConnectError::NotConnect);
  expect_error(Bytes{0xC0, 0x00}, ConnectError::NotConnect);              // PINGREQ
  expect_error(Bytes{0x20, 0x02, 0x00, 0x00}, ConnectError::NotConnect);  // CONNACK
  expect_error(Bytes{0x00, 0x00}, ConnectError::NotConnect);              // reserved type 0
  // Valid counterpart and the empty buffer.
  expect_done(v311().build());
  CHECK(parse(Bytes{}).status == ParseStatus::NeedMore);
  CHECK(parse(Bytes{0x10}).status == ParseStatus::NeedMore);
}

TEST_CASE("fixed header: malformed Remaining Length [MQTT-1.5.5]") {
  expect_error(Bytes{0x10, 0xFF, 0xFF, 0xFF, 0xFF}, ConnectError::MalformedLength,
               mqtt::kMaxMaxConnectBytes);
  CHECK(parse(Bytes{0x10, 0x80, 0x80}).status == ParseStatus::NeedMore);
}

// ======================= protocol name and level =======================

TEST_CASE("protocol name/level pairing [MQTT-3.1.2-1, 3.1.2-2]") {
  struct Case {
    const char* name;
    uint8_t level;
  };
  for (Case ok : {Case{"MQIsdp", 3}, Case{"MQTT", 4}, Case{"MQTT", 5}}) {
    CAPTURE(ok.name);
    CAPTURE(int(ok.level));
    Conn c;
    c.name = ok.name;
    c.level = ok.level;
    auto r = expect_done(c.build());
    CHECK(r.info.protocol_level == ok.level);
    CHECK(int(r.info.version) == ok.level);
  }
  for (Case bad : {Case{"MQTT", 3}, Case{"MQIsdp", 4}, Case{"MQIsdp", 5}, Case{"mqtt", 4},
                   Case{"MQTX", 4}, Case{"MQTTT", 4}, Case{"", 4}, Case{"HTTP", 4}}) {
    CAPTURE(bad.name);
    CAPTURE(int(bad.level));
    Conn c;
    c.name = bad.name;
    c.level = bad.level;
    expect_error(c.build(), ConnectError::BadProtocolName);
  }
}

TEST_CASE("unknown protocol level is UnsupportedLevel with the level reported") {
  for (uint8_t level : {6, 7, 0x85, 255}) {
    CAPTURE(int(level));
    Conn c;
    c.level = level;
    auto r = expect_error(c.build(), ConnectError::UnsupportedLevel);
    CHECK(r.info.protocol_level == level);
  }
}

// ======================= connect flags =======================

TEST_CASE("reserved connect flag must be 0 [MQTT-3.1.2-3]") {
  for (Conn c : {v311(), v5()}) {
    CAPTURE(int(c.level));
    expect_done(c.build());
    c.flags_xor = 0x01;
    expect_error(c.build(), ConnectError::ReservedFlag);
  }
}

TEST_CASE("will flag, QoS and retain must agree [MQTT-3.1.2-11..15]") {
  for (Conn base : {v31(), v311(), v5()}) {
    CAPTURE(int(base.level));
    for (uint8_t q : {0, 1, 2}) {
      for (bool retain : {false, true}) {
        Conn ok = base;
        ok.will = true;
        ok.will_qos = q;
        ok.will_retain = retain;
        auto r = expect_done(ok.build());
        REQUIRE(r.info.will);
        CHECK(r.info.will->qos == q);
        CHECK(r.info.will->retain == retain);
      }
    }
    Conn q3 = base;  // will QoS 3 [MQTT-3.1.2-14]
    q3.will = true;
    q3.will_qos = 3;
    expect_error(q3.build(), ConnectError::WillQos);
    for (uint8_t q : {1, 2, 3}) {  // QoS without will flag [MQTT-3.1.2-11/13]
      Conn c = base;
      c.flags_xor = uint8_t(q << 3);
      expect_error(c.build(), ConnectError::WillQos);
    }
    Conn rt = base;  // retain without will flag [MQTT-3.1.2-15]
    rt.flags_xor = 0x20;
    expect_error(rt.build(), ConnectError::WillRetain);
  }
}

TEST_CASE("username and password flags vs fields [MQTT-3.1.2-18..22]") {
  for (Conn base : {v31(), v311(), v5()}) {
    CAPTURE(int(base.level));
    Conn up = base;
    up.username = Conn::bytes_of("u");
    up.password = Conn::bytes_of("p");
    auto r = expect_done(up.build());
    CHECK(r.info.username == std::optional<std::string>("u"));
    CHECK(r.info.password == std::optional<std::string>("p"));

    Conn u = base;  // username alone
    u.username = Conn::bytes_of("");
    r = expect_done(u.build());
    CHECK(r.info.username == std::optional<std::string>(""));
    CHECK_FALSE(r.info.password);

    Conn pw = base;  // password alone: illegal before 5.0 [MQTT-3.1.2-22]
    pw.password = Conn::bytes_of("secret");
    if (base.level == 5) {
      r = expect_done(pw.build());
      CHECK_FALSE(r.info.username);
      CHECK(r.info.password == std::optional<std::string>("secret"));
    } else {
      expect_error(pw.build(), ConnectError::PasswordWithoutUsername);
    }

    Conn uflag = base;  // flag set, field missing
    uflag.flags_xor = 0x80;
    expect_error(uflag.build(), ConnectError::Truncated);
    Conn ufield = base;  // field present, flag clear
    ufield.username = Conn::bytes_of("u");
    ufield.flags_xor = 0x80;
    expect_error(ufield.build(), ConnectError::TrailingBytes);
    Conn pflag = up;  // password flag set, field missing
    pflag.password.reset();
    pflag.flags_xor = 0x40;
    expect_error(pflag.build(), ConnectError::Truncated);
    Conn pfield = up;  // password present, flag clear
    pfield.flags_xor = 0x40;
    expect_error(pfield.build(), ConnectError::TrailingBytes);
  }
}

// ======================= exact field lengths =======================

TEST_CASE("a field running past the packet end is Truncated") {
  // Remaining Length too short for the variable header.
  expect_error(frame({}), ConnectError::Truncated);
  expect_error(frame(W().u16(4).raw("MQT").b), ConnectError::Truncated);
  expect_error(frame(W().str("MQTT").u8(4).u8(0x02).u8(0).b), ConnectError::Truncated);
  for (Conn c : {v31(), v311(), v5()}) {
    CAPTURE(int(c.level));
    c.will = true;
    c.username = Conn::bytes_of("user");
    c.password = Conn::bytes_of("pw");
    Bytes body = c.body();
    expect_done(frame(body));
    // Cutting the body anywhere after the protocol name is Truncated: the
    // packet's own length says where it ends.
    // In 5.0 a cut right before a property length may be reported as a bad
    // property block instead.
    size_t props_at = 10, will_props_at = 10 + 1 + 2 + c.client_id.size();
    for (size_t cut = 8; cut < body.size(); ++cut) {
      CAPTURE(cut);
      Bytes cut_pkt = frame(Bytes(body.begin(), body.begin() + long(cut)));
      if (c.level == 5 && (cut == props_at || cut == will_props_at)) {
        auto r = parse(cut_pkt);
        INFO(describe(r));
        REQUIRE(r.status == ParseStatus::Error);
        CHECK((r.error == ConnectError::Truncated || r.error == ConnectError::BadProperty));
        continue;
      }
      expect_error(cut_pkt, ConnectError::Truncated);
    }
  }
  // A string length pointing past the end, with bytes after the packet in the buffer.
  Bytes body = W().str("MQTT").u8(4).u8(0x02).u16(60).u16(10).raw("abc").b;
  Bytes buf = frame(body);
  buf.insert(buf.end(), 20, 'x');
  expect_error(buf, ConnectError::Truncated);
}

TEST_CASE("bytes left after the last field are TrailingBytes") {
  for (Conn c : {v31(), v311(), v5()}) {
    CAPTURE(int(c.level));
    expect_done(c.build());
    c.trailing = {0x00};
    expect_error(c.build(), ConnectError::TrailingBytes);
    c.trailing = {0x00, 0x01, 'x'};
    expect_error(c.build(), ConnectError::TrailingBytes);
  }
}

TEST_CASE("bytes after the CONNECT are not part of it") {
  for (Conn c : {v31(), v311(), v5()}) {
    CAPTURE(int(c.level));
    c.username = Conn::bytes_of("u");
    Bytes pkt = c.build();
    auto alone = parse(pkt);
    REQUIRE(alone.status == ParseStatus::Done);
    // A PUBLISH, a malformed header, garbage: none changes the result.
    for (Bytes after : {Bytes{0x30, 0x03, 0x00, 0x01, 't'}, Bytes{0x00, 0xFF, 0xFF, 0xFF, 0xFF},
                        Bytes(3000, 0xEE)}) {
      Bytes buf = pkt;
      buf.insert(buf.end(), after.begin(), after.end());
      auto r = parse(buf);
      INFO(describe(r));
      CHECK(same(r, alone));
      CHECK(r.info.packet_length == pkt.size());
      std::mt19937 rng(5);
      check_split_invariant(buf, rng);
    }
  }
}

// ======================= UTF-8 =======================

namespace {

const std::vector<Bytes> kBadUtf8 = {
    {0x00},                    // U+0000 [MQTT-1.5.4-2]
    {'a', 0x00, 'b'},          //
    {0xC0, 0x80},              // overlong U+0000
    {0xC1, 0xBF},              // overlong
    {0xE0, 0x80, 0xAF},        // overlong '/'
    {0xF0, 0x80, 0x80, 0xAF},  // overlong
    {0xED, 0xA0, 0x80},        // surrogate U+D800 [MQTT-1.5.4-1]
    {0xED, 0xBF, 0xBF},        // surrogate U+DFFF
    {0xC3, 0x28},              // invalid continuation
    {0x80},                    // lone continuation
    {'a', 0xE2, 0x82},         // truncated sequence
    {0xF4, 0x90, 0x80, 0x80},  // above U+10FFFF
    {0xF5, 0x80, 0x80, 0x80},  //
    {0xFF},                    //
};

const std::vector<Bytes> kGoodUtf8 = {
    {},
    {'a', 'b', 'c'},
    {0xC3, 0xA9},              // é
    {0xE2, 0x82, 0xAC},        // €
    {0xF0, 0x9D, 0x84, 0x9E},  // 𝄞
    {0xED, 0x9F, 0xBF},        // U+D7FF, just below the surrogates
    {0xEE, 0x80, 0x80},        // U+E000, just above
    {0xF4, 0x8F, 0xBF, 0xBF},  // U+10FFFF
    {0x01, 0x7F},              // control characters are allowed (SHOULD NOT only)
    {0xEF, 0xBB, 0xBF, 'x'},   // BOM is not stripped, and valid [MQTT-1.5.4-3]
};

}  // namespace

TEST_CASE("valid_mqtt_utf8") {
  for (const auto& g : kGoodUtf8) {
    CAPTURE(str_of(g));
    CHECK(mqtt::valid_mqtt_utf8(std::span<const uint8_t>(g)));
  }
  for (const auto& b : kBadUtf8) {
    CAPTURE(str_of(b));
    CHECK_FALSE(mqtt::valid_mqtt_utf8(std::span<const uint8_t>(b)));
  }
  CHECK(mqtt::valid_mqtt_utf8(std::string("h\xC3\xA9llo")));
  CHECK_FALSE(mqtt::valid_mqtt_utf8(std::string("h\xC3llo")));
}

TEST_CASE("client id, will topic and username must be valid UTF-8 [MQTT-1.5.4-1/2]") {
  for (Conn base : {v31(), v311(), v5()}) {
    CAPTURE(int(base.level));
    base.will = true;
    base.username = Conn::bytes_of("u");
    for (const auto& g : kGoodUtf8) {
      if (g.empty()) continue;  // empty ids have their own rules below
      CAPTURE(str_of(g));
      Conn a = base, b = base, c = base;
      a.client_id = g;
      b.will_topic = g;
      c.username = g;
      auto r = expect_done(a.build());
      CHECK(r.info.client_id == str_of(g));
      r = expect_done(b.build());
      CHECK(r.info.will->topic == str_of(g));
      r = expect_done(c.build());
      CHECK(r.info.username == std::optional<std::string>(str_of(g)));
    }
    for (const auto& bad : kBadUtf8) {
      CAPTURE(str_of(bad));
      Conn a = base, b = base, c = base;
      a.client_id = bad;
      b.will_topic = bad;
      c.username = bad;
      expect_error(a.build(), ConnectError::InvalidUtf8);
      expect_error(b.build(), ConnectError::InvalidUtf8);
      expect_error(c.build(), ConnectError::InvalidUtf8);
    }
  }
}

TEST_CASE("password and will payload are binary, not UTF-8") {
  for (Conn c : {v311(), v5()}) {
    c.will = true;
    c.username = Conn::bytes_of("u");
    for (const auto& bad : kBadUtf8) {
      c.password = bad;
      c.will_payload = bad;
      auto r = expect_done(c.build());
      CHECK(r.info.password == std::optional<std::string>(str_of(bad)));
      CHECK(r.info.will->payload == str_of(bad));
    }
  }
}

// ======================= client identifier rules =======================

TEST_CASE("MQTT 3.1: client id must not be empty; long ids are left to the broker") {
  // MQTT 3.1 section 3.1 says 1..23 characters, with CONNACK 2 (identifier
  // rejected) as the answer. An empty id cannot identify a 3.1 session; a
  // longer one is accepted as Mosquitto does, so the backend decides.
  Conn c = v31();
  c.client_id = Conn::bytes_of("a");
  expect_done(c.build());
  c.client_id = Bytes(23, 'z');
  CHECK(expect_done(c.build()).info.client_id == std::string(23, 'z'));
  c.client_id = Bytes(24, 'z');
  CHECK(expect_done(c.build()).info.client_id == std::string(24, 'z'));
  c.client_id = {};
  expect_error(c.build(), ConnectError::ClientIdRejected);
  c.clean = false;
  expect_error(c.build(), ConnectError::ClientIdRejected);
}

TEST_CASE("MQTT 3.1.1 and 5.0: long client ids are the server's choice, not malformed") {
  for (Conn c : {v311(), v5()}) {
    c.client_id = Bytes(200, 'q');
    CHECK(expect_done(c.build()).info.client_id.size() == 200);
  }
}

TEST_CASE("MQTT 3.1.1: empty client id needs clean session [MQTT-3.1.3-7]") {
  Conn c = v311();
  c.client_id = {};
  c.clean = true;
  auto r = expect_done(c.build());
  CHECK(r.info.client_id.empty());
  c.clean = false;
  expect_error(c.build(), ConnectError::EmptyClientIdNeedsClean);
}

TEST_CASE("MQTT 5.0: empty client id is allowed with or without clean start") {
  Conn c = v5();
  c.client_id = {};
  for (bool clean : {true, false}) {
    c.clean = clean;
    auto r = expect_done(c.build());
    CHECK(r.info.client_id.empty());
    CHECK(r.info.clean_start == clean);
  }
}

// ======================= MQTT 5 properties =======================

TEST_CASE("MQTT 5 CONNECT properties: only the allowed identifiers [MQTT-2.2.2-?]") {
  namespace P = mqtt::prop;
  Conn c = v5();
  // Valid ids: see the full CONNECT above. Ids from other packets, and unknown ids:
  for (Bytes bad :
       {p8(P::PayloadFormatIndicator, 1), p32(P::MessageExpiryInterval, 1),
        pstr(P::ContentType, "t"), p32(P::WillDelayInterval, 1),
        pstr(P::AssignedClientIdentifier, "x"), p16(P::ServerKeepAlive, 1),
        pstr(P::ReasonString, "r"), p8(P::MaximumQos, 1), p16(P::TopicAlias, 1),
        W().u8(P::SubscriptionIdentifier).var(1).b, p8(0x00, 0), p8(0x05, 0), p8(0x7F, 0)}) {
    CAPTURE(int(bad[0]));
    c.props = bad;
    expect_error(c.build(), ConnectError::BadProperty);
  }
}

TEST_CASE("MQTT 5 CONNECT properties: no duplicates except User Property") {
  namespace P = mqtt::prop;
  Conn c = v5();
  c.props = cat({ppair(P::UserProperty, "a", "1"), ppair(P::UserProperty, "a", "1")});
  CHECK(expect_done(c.build()).info.properties.user_properties.size() == 2);
  for (Bytes one : {p32(P::SessionExpiryInterval, 10), p16(P::ReceiveMaximum, 5),
                    p32(P::MaximumPacketSize, 100), p16(P::TopicAliasMaximum, 3),
                    p8(P::RequestResponseInformation, 0), p8(P::RequestProblemInformation, 1),
                    pstr(P::AuthenticationMethod, "m")}) {
    CAPTURE(int(one[0]));
    c.props = one;
    expect_done(c.build());
    c.props = cat({one, ppair(P::UserProperty, "k", "v"), one});
    expect_error(c.build(), ConnectError::DuplicateProperty);
  }
}

TEST_CASE("MQTT 5 CONNECT property values") {
  namespace P = mqtt::prop;
  Conn c = v5();
  struct Case {
    Bytes ok, bad;
  };
  for (const Case& k :
       {Case{p16(P::ReceiveMaximum, 1), p16(P::ReceiveMaximum, 0)},
        Case{p32(P::MaximumPacketSize, 1), p32(P::MaximumPacketSize, 0)},
        Case{p8(P::RequestProblemInformation, 1), p8(P::RequestProblemInformation, 2)},
        Case{p8(P::RequestResponseInformation, 1), p8(P::RequestResponseInformation, 2)}}) {
    CAPTURE(int(k.ok[0]));
    c.props = k.ok;
    expect_done(c.build());
    c.props = k.bad;
    expect_error(c.build(), ConnectError::BadPropertyValue);
  }
  // Topic Alias Maximum 0 and Session Expiry 0 are legal.
  c.props = cat({p16(P::TopicAliasMaximum, 0), p32(P::SessionExpiryInterval, 0)});
  expect_done(c.build());
}

TEST_CASE("MQTT 5: Authentication Data needs Authentication Method") {
  namespace P = mqtt::prop;
  Conn c = v5();
  c.props = cat({pstr(P::AuthenticationData, "xyz"), pstr(P::AuthenticationMethod, "m")});
  auto r = expect_done(c.build());
  CHECK(r.info.properties.authentication_data == std::optional<std::string>("xyz"));
  c.props = pstr(P::AuthenticationData, "xyz");
  expect_error(c.build(), ConnectError::AuthDataWithoutMethod);
}

TEST_CASE("MQTT 5: property block length must fit the packet") {
  namespace P = mqtt::prop;
  Conn c = v5();
  c.props = p32(P::SessionExpiryInterval, 1);
  Bytes good = c.body();
  expect_done(frame(good));
  // Property length 5 -> 200: runs past the packet end.
  Bytes bad = good;
  bad[10] = 200;
  REQUIRE(good[10] == 5);
  auto r = parse(frame(bad));
  INFO(describe(r));
  REQUIRE(r.status == ParseStatus::Error);
  CHECK((r.error == ConnectError::BadProperty || r.error == ConnectError::Truncated));
  // A property value cut by the block length (block says 3, value needs 4).
  bad = good;
  bad[10] = 3;
  r = parse(frame(bad));
  INFO(describe(r));
  REQUIRE(r.status == ParseStatus::Error);
  CHECK((r.error == ConnectError::BadProperty || r.error == ConnectError::Truncated));
}

TEST_CASE("MQTT 5 will properties") {
  namespace P = mqtt::prop;
  Conn c = v5();
  c.will = true;
  c.will_props = cat({ppair(P::UserProperty, "a", "b"), ppair(P::UserProperty, "a", "c"),
                      p32(P::WillDelayInterval, 0)});
  auto r = expect_done(c.build());
  CHECK(r.info.will->properties.user_properties.size() == 2);
  CHECK(r.info.will->properties.will_delay_interval == std::optional<uint32_t>(0));
  CHECK(r.info.properties.empty());  // will properties do not leak into CONNECT's
  // Not allowed in a will:
  for (Bytes bad : {p32(P::SessionExpiryInterval, 1), p16(P::ReceiveMaximum, 1),
                    pstr(P::AuthenticationMethod, "m"), p16(P::TopicAlias, 1), p8(0x7F, 0)}) {
    CAPTURE(int(bad[0]));
    c.will_props = bad;
    expect_error(c.build(), ConnectError::BadProperty);
  }
  c.will_props = cat({p32(P::WillDelayInterval, 1), p32(P::WillDelayInterval, 2)});
  expect_error(c.build(), ConnectError::DuplicateProperty);
  c.will_props = cat({pstr(P::ContentType, "a"), pstr(P::ContentType, "b")});
  expect_error(c.build(), ConnectError::DuplicateProperty);
  c.will_props = p8(P::PayloadFormatIndicator, 2);
  expect_error(c.build(), ConnectError::BadPropertyValue);
  c.will_props = p8(P::PayloadFormatIndicator, 0);
  expect_done(c.build());
}

TEST_CASE("MQTT 5 string properties must be valid UTF-8") {
  namespace P = mqtt::prop;
  Conn c = v5();
  c.props = ppair(P::UserProperty, "k", "v\xC3\xA9");
  expect_done(c.build());
  for (Bytes bad : {ppair(P::UserProperty, "k", std::string("\xED\xA0\x80")),
                    pstr(P::AuthenticationMethod, std::string("a\0b", 3))}) {
    c.props = bad;
    auto r = parse(c.build());
    INFO(describe(r));
    REQUIRE(r.status == ParseStatus::Error);
    CHECK((r.error == ConnectError::InvalidUtf8 || r.error == ConnectError::BadPropertyValue));
  }
}

// ======================= size cap =======================

TEST_CASE("max_bytes: TooLarge as soon as the header announces more") {
  for (size_t cap : {mqtt::kDefaultMaxConnectBytes, mqtt::kMaxMaxConnectBytes}) {
    CAPTURE(cap);
    // A valid CONNECT of exactly `cap` bytes: bulk in User Properties (a string
    // holds at most 65535 bytes), the last few bytes in the password.
    Conn c = v5();
    c.username = Conn::bytes_of("u");
    c.password = Bytes();
    for (int i = 0; i < 100 && c.build().size() + 40000 < cap; ++i) {
      c.props = cat({c.props, ppair(mqtt::prop::UserProperty, "k", std::string(30000, 'v'))});
    }
    // The fixed header grows with the length; search the password size.
    size_t pw = cap - c.build().size();
    for (int i = 0; i < 8 && c.build().size() != cap; ++i) {
      c.password = Bytes(pw, 'p');
      size_t sz = c.build().size();
      if (sz > cap) pw -= sz - cap;
      if (sz < cap) pw += cap - sz;
    }
    c.password = Bytes(pw, 'p');
    Bytes exact = c.build();
    REQUIRE(exact.size() == cap);
    auto r = parse(exact, cap);
    INFO(describe(r));
    REQUIRE(r.status == ParseStatus::Done);
    CHECK(r.info.packet_length == cap);

    // One byte more: rejected from the fixed header alone.
    c.password = Bytes(pw + 1, 'p');
    Bytes over = c.build();
    REQUIRE(over.size() == cap + 1);
    auto h = mqtt::peek_frame(std::span<const uint8_t>(over));
    REQUIRE(h.status == mqtt::DecodeStatus::Ok);
    Bytes header(over.begin(), over.begin() + h.header.header_length);
    expect_error(header, ConnectError::TooLarge, cap);
    expect_error(over, ConnectError::TooLarge, cap);
    // And the exact-size packet's header alone just needs more.
    Bytes exact_header(exact.begin(), exact.begin() + h.header.header_length);
    CHECK(parse(exact_header, cap).status == ParseStatus::NeedMore);
  }
  // The default cap is 64 KiB.
  Bytes big = {0x10};
  mqtt::append_varint(big, uint32_t(mqtt::kDefaultMaxConnectBytes));  // total > 64 KiB
  CHECK(parse(big).error == ConnectError::TooLarge);
  CHECK(mqtt::parse_connect(std::span<const uint8_t>(big)).error == ConnectError::TooLarge);
  // The maximum Remaining Length is TooLarge for any allowed cap, not a wrap-around.
  Bytes huge = {0x10, 0xFF, 0xFF, 0xFF, 0x7F};
  CHECK(parse(huge, mqtt::kMaxMaxConnectBytes).error == ConnectError::TooLarge);
}

// ======================= error names =======================

TEST_CASE("every ConnectError has a distinct name for logs") {
  std::vector<std::string> names;
  for (int e = 0; e <= int(ConnectError::AuthDataWithoutMethod); ++e) {
    const char* s = mqtt::to_string(ConnectError(e));
    REQUIRE(s != nullptr);
    std::string n(s);
    CAPTURE(e);
    CHECK_FALSE(n.empty());
    for (const auto& other : names) CHECK(other != n);
    names.push_back(n);
  }
}

// ======================= split invariance =======================

TEST_CASE("split invariance: whole vs random chunks, valid and mutated inputs") {
  namespace P = mqtt::prop;
  std::vector<Bytes> seeds;
  for (Conn c : {v31(), v311(), v5()}) {
    seeds.push_back(c.build());
    c.will = true;
    c.will_qos = 1;
    c.username = Conn::bytes_of("user");
    c.password = Conn::bytes_of("pass");
    if (c.level == 5) {
      c.props = cat({p32(P::SessionExpiryInterval, 60), ppair(P::UserProperty, "a", "b"),
                     pstr(P::AuthenticationMethod, "m"), pstr(P::AuthenticationData, "d")});
      c.will_props = cat({p32(P::WillDelayInterval, 3), pstr(P::ContentType, "c")});
    }
    seeds.push_back(c.build());
    c.client_id = Bytes(300, 'l');                 // two-byte Remaining Length
    if (c.level != 3) seeds.push_back(c.build());  // 3.1 caps ids at 23 bytes
  }
  std::mt19937 rng(424242);
  int done = 0, errors = 0, needmore = 0;
  for (const auto& s : seeds) check_split_invariant(s, rng);
  for (int i = 0; i < 3000; ++i) {
    Bytes m = seeds[rng() % seeds.size()];
    int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % m.size();
      switch (rng() % 4) {
        case 0:
          m[at] = uint8_t(rng());
          break;  // replace
        case 1:
          m[at] ^= uint8_t(1u << (rng() % 8));
          break;  // flip a bit
        case 2:
          m.resize(at + 1);
          break;  // truncate
        case 3:
          m.insert(m.begin() + long(at), uint8_t(rng()));
          break;  // insert
      }
    }
    if (rng() % 4 == 0) m.push_back(0xC0);  // sometimes a byte after the packet
    auto whole = parse(m);
    done += whole.status == ParseStatus::Done;
    errors += whole.status == ParseStatus::Error;
    needmore += whole.status == ParseStatus::NeedMore;
    if (whole.status == ParseStatus::Done) CHECK(whole.info.packet_length <= m.size());
    check_split_invariant(m, rng);
  }
  MESSAGE("mutants: done=", done, " error=", errors, " needmore=", needmore);
  // The mutants must exercise all three outcomes, or this test proves little.
  CHECK(done > 0);
  CHECK(errors > 0);
  CHECK(needmore > 0);
}

// ======================= rewrite_client_id (tls.identity "rewrite") =======================
// The expected packet is the same Conn built with the new id: everything but
// the id (and the Remaining Length) must come out as the client sent it.

TEST_CASE("rewrite_client_id: 3.1, 3.1.1 and 5.0 with will, credentials and properties") {
  namespace P = mqtt::prop;
  Conn c31 = v31(), c311 = v311(), c5 = v5();
  c311.will = c5.will = true;
  c311.username = c5.username = Conn::bytes_of("alice");
  c311.password = c5.password = Bytes{0xFF, 0x00};
  c5.props = cat({p32(P::SessionExpiryInterval, 60), ppair(P::UserProperty, "k", "v")});
  c5.will_props = p32(P::WillDelayInterval, 5);
  for (Conn c : {c31, c311, c5}) {
    CAPTURE(int(c.level));
    Bytes in = c.build();
    const Bytes tail = {0xC0, 0x00};  // a PINGREQ pipelined after the CONNECT
    Bytes with_tail = cat({in, tail});
    auto r = mqtt::parse_connect(with_tail);
    REQUIRE(r.status == ParseStatus::Done);
    REQUIRE(r.info.packet_length == in.size());
    for (std::string id :
         {std::string("urn:dev:device-7"), std::string(""), std::string("\xc3\xa9t\xc3\xa9")}) {
      Conn want = c;
      want.client_id = Conn::bytes_of(id);
      Bytes out = mqtt::rewrite_client_id(with_tail, r.info, id);
      CHECK(out == cat({want.build(), tail}));
    }
  }
}

TEST_CASE("rewrite_client_id: the Remaining Length grows and shrinks across a varint boundary") {
  Conn c = v311();
  c.client_id = Conn::bytes_of("x");
  c.username = Bytes(100, 'u');  // body just under 128 bytes
  Bytes in = c.build();
  REQUIRE(in.size() - 2 < 128);
  auto r = expect_done(in);
  Conn want = c;
  want.client_id = Bytes(40, 'i');  // now over 127: a 2-byte Remaining Length
  Bytes out = mqtt::rewrite_client_id(in, r.info, std::string(40, 'i'));
  CHECK(out == want.build());
  CHECK((out[1] & 0x80) != 0);
  auto back = expect_done(out);
  CHECK(mqtt::rewrite_client_id(out, back.info, "x") == in);
}

TEST_CASE("rewrite_client_id: an id over 65,535 bytes does not fit") {
  Conn c = v5();
  Bytes in = c.build();
  auto r = expect_done(in);
  CHECK(mqtt::rewrite_client_id(in, r.info, std::string(65536, 'a')).empty());
  CHECK(mqtt::rewrite_client_id(in, r.info, std::string(65535, 'a')).size() ==
        in.size() - 5 + 65535 + 2);
}
