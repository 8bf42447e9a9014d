// Encoders and decoders for every MQTT control packet (3.1, 3.1.1, 5.0), except
// the CONNECT parser (connect.cpp) and property blocks (properties.cpp).
//
// Encoder preconditions (asserted in debug builds, not checked in release):
// every string/binary field is at most 65,535 bytes and the packet's Remaining
// Length is at most kMaxRemainingLength. Encoders otherwise write what they are
// given (packet id 0, empty filter lists, ...) so tests can build invalid packets.
//
// Decoders never read outside `body`, never throw on bad input, and report the
// first violation found. Spec clauses: [MQTT-x.y.z-n] are MQTT 5.0 numbers unless
// marked 3.1.1.
#include "mqtt/codec.hpp"

#include <cassert>
#include <string_view>

namespace mqtt {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t kFirstConnect = 0x10;
constexpr uint8_t kFirstConnack = 0x20;
constexpr uint8_t kFirstSubscribe = 0x82;  // flags 0010 [MQTT-3.8.1-1]
constexpr uint8_t kFirstSuback = 0x90;
constexpr uint8_t kFirstUnsubscribe = 0xA2;  // flags 0010 [MQTT-3.10.1-1]
constexpr uint8_t kFirstUnsuback = 0xB0;
constexpr uint8_t kFirstPingreq = 0xC0;
constexpr uint8_t kFirstPingresp = 0xD0;
constexpr uint8_t kFirstDisconnect = 0xE0;
constexpr uint8_t kFirstAuth = 0xF0;

bool is_v5(Version v) {
  return v == Version::V5;
}

// ---- encoding helpers ----

size_t str_size(std::string_view s) {
  return 2 + s.size();
}

// Property block: length varint + properties.
size_t prop_block_size(const Properties& p) {
  const size_t n = properties_size(p);
  assert(n <= kMaxRemainingLength);
  return varint_size(static_cast<uint32_t>(n)) + n;
}

void put_u16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v & 0xFF));
}

void put_raw(Bytes& out, std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
}

// UTF-8 string or binary data: two-byte length, then the bytes.
void put_str(Bytes& out, std::string_view s) {
  assert(s.size() <= 0xFFFF);
  put_u16(out, static_cast<uint16_t>(s.size()));
  put_raw(out, s);
}

// Fixed header; reserves room for the whole packet.
void put_header(Bytes& out, uint8_t first_byte, size_t remaining) {
  assert(remaining <= kMaxRemainingLength);
  out.reserve(out.size() + 5 + remaining);
  out.push_back(first_byte);
  append_varint(out, static_cast<uint32_t>(remaining));
}

// ---- decoding helpers ----

Result malformed(const char* what) {
  return Result::fail(Reason::MalformedPacket, what);
}
Result protocol_error(const char* what) {
  return Result::fail(Reason::ProtocolError, what);
}

// Bounds-checked cursor over one packet body.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  size_t left() const { return in_.size() - pos_; }
  bool u8(uint8_t& v) {
    if (left() < 1) return false;
    v = in_[pos_++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (left() < 2) return false;
    v = static_cast<uint16_t>(in_[pos_] << 8 | in_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  // Two-byte length prefix, then exactly that many bytes [MQTT-1.5.4, 1.5.6].
  bool str(std::string& s) {
    uint16_t n = 0;
    if (!u16(n) || left() < n) return false;
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  void rest(std::string& s) {
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), left());
    pos_ = in_.size();
  }
  Result props(PropContext ctx, Properties& p) { return decode_properties(in_, pos_, ctx, p); }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

// Reads a packet identifier, which must be non-zero [MQTT-2.2.1-3] (3.1.1: [MQTT-2.3.1-1]).
Result read_packet_id(Reader& r, uint16_t& id) {
  if (!r.u16(id)) return malformed("packet identifier missing");
  if (id == 0) return protocol_error("packet identifier 0");
  return Result::success();
}

template <size_t N>
bool one_of(uint8_t code, const uint8_t (&allowed)[N]) {
  for (uint8_t a : allowed)
    if (a == code) return true;
  return false;
}

// MQTT 5 reason codes allowed per packet (sections 3.2.2.2, 3.4.2.1, 3.5.2.1,
// 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1).
constexpr uint8_t kConnackReasons[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                       0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                       0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
constexpr uint8_t kPubackReasons[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
constexpr uint8_t kPubrelReasons[] = {0x00, 0x92};
constexpr uint8_t kSubackReasons[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                      0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
constexpr uint8_t kSuback3Codes[] = {0x00, 0x01, 0x02, 0x80};
constexpr uint8_t kUnsubackReasons[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
constexpr uint8_t kDisconnectReasons[] = {
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
    0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
constexpr uint8_t kAuthReasons[] = {0x00, 0x18, 0x19};

// Topic Filter in SUBSCRIBE/UNSUBSCRIBE: UTF-8 [MQTT-1.5.4-1] then syntax [MQTT-4.7.1-1..3].
// Like mosquitto, an invalid filter fails the whole packet rather than one SUBACK entry.
Result check_filter(const std::string& f) {
  if (!valid_mqtt_utf8(f)) return malformed("topic filter not valid UTF-8");
  if (!valid_topic_filter(f))
    return Result::fail(Reason::TopicFilterInvalid, "invalid topic filter");
  return Result::success();
}

bool is_shared(std::string_view f) {
  return f.starts_with("$share/");
}

}  // namespace

// ======================= encoders =======================

void encode_connect(const ConnectInfo& c, Bytes& out) {
  const bool v5 = is_v5(c.version);
  const std::string_view name = c.version == Version::V31 ? "MQIsdp" : "MQTT";
  uint8_t flags = 0;  // [MQTT-3.1.2-3]: bit 0 stays 0
  if (c.clean_start) flags |= 0x02;
  if (c.will) {
    flags |= 0x04 | static_cast<uint8_t>((c.will->qos & 3) << 3);
    if (c.will->retain) flags |= 0x20;
  }
  if (c.password) flags |= 0x40;
  if (c.username) flags |= 0x80;

  size_t rem = str_size(name) + 1 + 1 + 2 + str_size(c.client_id);
  if (v5) rem += prop_block_size(c.properties);
  if (c.will) {
    if (v5) rem += prop_block_size(c.will->properties);
    rem += str_size(c.will->topic) + str_size(c.will->payload);
  }
  if (c.username) rem += str_size(*c.username);
  if (c.password) rem += str_size(*c.password);

  put_header(out, kFirstConnect, rem);
  put_str(out, name);
  out.push_back(static_cast<uint8_t>(c.version));
  out.push_back(flags);
  put_u16(out, c.keep_alive);
  if (v5) append_properties(out, c.properties);
  put_str(out, c.client_id);
  if (c.will) {
    if (v5) append_properties(out, c.will->properties);
    put_str(out, c.will->topic);
    put_str(out, c.will->payload);
  }
  if (c.username) put_str(out, *c.username);
  if (c.password) put_str(out, *c.password);
}

void encode_connack(const Connack& c, Version v, Bytes& out) {
  const size_t rem = 2 + (is_v5(v) ? prop_block_size(c.properties) : 0);
  put_header(out, kFirstConnack, rem);
  // 3.1: the first byte is reserved (always 0); later versions: Session Present.
  out.push_back(v != Version::V31 && c.session_present ? 1 : 0);
  out.push_back(c.code);
  if (is_v5(v)) append_properties(out, c.properties);
}

void encode_publish(const Publish& p, Version v, Bytes& out) {
  assert(p.qos <= 2);
  const uint8_t qos = p.qos & 3;
  size_t rem = str_size(p.topic) + (qos > 0 ? 2 : 0) + p.payload.size();
  if (is_v5(v)) rem += prop_block_size(p.properties);
  uint8_t first = static_cast<uint8_t>(0x30 | qos << 1);
  if (p.dup) first |= 0x08;
  if (p.retain) first |= 0x01;
  put_header(out, first, rem);
  put_str(out, p.topic);
  if (qos > 0) put_u16(out, p.packet_id);  // [MQTT-2.2.1-2]: absent for QoS 0
  if (is_v5(v)) append_properties(out, p.properties);
  put_raw(out, p.payload);
}

void encode_pub_response(const PubResponse& r, Version v, Bytes& out) {
  const auto type = static_cast<uint8_t>(r.type);
  assert(type >= 4 && type <= 7);
  // 5.0: reason code and properties are omitted when not needed (3.4.2.1): remaining
  // length 2 for Success without properties, 3 for another reason without properties.
  const bool with_reason = is_v5(v) && (r.reason != 0 || !r.properties.empty());
  const bool with_props = is_v5(v) && !r.properties.empty();
  const size_t rem = 2 + (with_reason ? 1 : 0) + (with_props ? prop_block_size(r.properties) : 0);
  // PUBREL carries flags 0010 [MQTT-3.6.1-1].
  put_header(out, static_cast<uint8_t>(type << 4 | (r.type == PacketType::Pubrel ? 0x02 : 0)), rem);
  put_u16(out, r.packet_id);
  if (with_reason) out.push_back(r.reason);
  if (with_props) append_properties(out, r.properties);
}

void encode_subscribe(const Subscribe& s, Version v, Bytes& out) {
  size_t rem = 2 + (is_v5(v) ? prop_block_size(s.properties) : 0);
  for (const auto& sub : s.subscriptions) rem += str_size(sub.filter) + 1;
  put_header(out, kFirstSubscribe, rem);
  put_u16(out, s.packet_id);
  if (is_v5(v)) append_properties(out, s.properties);
  for (const auto& sub : s.subscriptions) {
    put_str(out, sub.filter);
    uint8_t opts = sub.qos & 3;
    if (is_v5(v)) {  // subscription options (3.8.3.1); reserved bits 6-7 stay 0
      if (sub.no_local) opts |= 0x04;
      if (sub.retain_as_published) opts |= 0x08;
      opts |= static_cast<uint8_t>((sub.retain_handling & 3) << 4);
    }
    out.push_back(opts);
  }
}

void encode_suback(const Suback& s, Version v, Bytes& out) {
  const size_t rem = 2 + (is_v5(v) ? prop_block_size(s.properties) : 0) + s.codes.size();
  put_header(out, kFirstSuback, rem);
  put_u16(out, s.packet_id);
  if (is_v5(v)) append_properties(out, s.properties);
  out.insert(out.end(), s.codes.begin(), s.codes.end());
}

void encode_unsubscribe(const Unsubscribe& u, Version v, Bytes& out) {
  size_t rem = 2 + (is_v5(v) ? prop_block_size(u.properties) : 0);
  for (const auto& f : u.filters) rem += str_size(f);
  put_header(out, kFirstUnsubscribe, rem);
  put_u16(out, u.packet_id);
  if (is_v5(v)) append_properties(out, u.properties);
  for (const auto& f : u.filters) put_str(out, f);
}

void encode_unsuback(const Unsuback& u, Version v, Bytes& out) {
  // Before 5.0 UNSUBACK is just the packet identifier; codes are ignored.
  const size_t rem = 2 + (is_v5(v) ? prop_block_size(u.properties) + u.codes.size() : 0);
  put_header(out, kFirstUnsuback, rem);
  put_u16(out, u.packet_id);
  if (is_v5(v)) {
    append_properties(out, u.properties);
    out.insert(out.end(), u.codes.begin(), u.codes.end());
  }
}

void encode_pingreq(Bytes& out) {
  put_header(out, kFirstPingreq, 0);
}
void encode_pingresp(Bytes& out) {
  put_header(out, kFirstPingresp, 0);
}

void encode_disconnect(const Disconnect& d, Version v, Bytes& out) {
  // 5.0 (3.14.2): remaining length 0 for Normal disconnection without properties,
  // 1 for another reason without properties.
  const bool with_reason = is_v5(v) && (d.reason != 0 || !d.properties.empty());
  const bool with_props = is_v5(v) && !d.properties.empty();
  const size_t rem = (with_reason ? 1 : 0) + (with_props ? prop_block_size(d.properties) : 0);
  put_header(out, kFirstDisconnect, rem);
  if (with_reason) out.push_back(d.reason);
  if (with_props) append_properties(out, d.properties);
}

void encode_auth(const Auth& a, Bytes& out) {
  // Remaining length 0 for Success without properties [3.15.2.1]; otherwise the
  // reason code and a property block (possibly empty) are both written.
  const bool full = a.reason != 0 || !a.properties.empty();
  put_header(out, kFirstAuth, full ? 1 + prop_block_size(a.properties) : 0);
  if (full) {
    out.push_back(a.reason);
    append_properties(out, a.properties);
  }
}

// ======================= decoders =======================

Result decode_connack(uint8_t first_byte, std::span<const uint8_t> body, Version v, Connack& out) {
  out = Connack{};
  if (first_byte != kFirstConnack) return malformed("CONNACK fixed header flags not 0");
  Reader r(body);
  uint8_t ack = 0;
  if (!r.u8(ack) || !r.u8(out.code)) return malformed("CONNACK too short");
  if (v != Version::V31) {  // 3.1: the byte is reserved and unused
    if (ack & 0xFE) return malformed("CONNACK reserved flag set");  // [MQTT-3.2.2-1]
    out.session_present = (ack & 1) != 0;
  }
  if (is_v5(v)) {
    if (!one_of(out.code, kConnackReasons)) return protocol_error("CONNACK reason code invalid");
    if (Result res = r.props(PropContext::Connack, out.properties); !res.ok) return res;
  } else if (out.code > static_cast<uint8_t>(ConnackCode3::NotAuthorized)) {
    return protocol_error("CONNACK return code reserved");  // 3.1.1 section 3.2.2.3
  }
  // A refused connection never has a session [MQTT-3.2.2-6] (3.1.1: [MQTT-3.2.2-4]).
  if (out.code != 0 && out.session_present) return protocol_error("session present on refusal");
  if (r.left() != 0) return malformed("CONNACK trailing bytes");
  return Result::success();
}

Result decode_publish(uint8_t first_byte, std::span<const uint8_t> body, Version v, Publish& out) {
  out = Publish{};
  if ((first_byte >> 4) != static_cast<uint8_t>(PacketType::Publish))
    return malformed("not a PUBLISH");
  out.dup = (first_byte & 0x08) != 0;
  out.qos = (first_byte >> 1) & 3;
  out.retain = (first_byte & 0x01) != 0;
  if (out.qos == 3) return malformed("PUBLISH QoS 3");                        // [MQTT-3.3.1-4]
  if (out.dup && out.qos == 0) return malformed("PUBLISH DUP set on QoS 0");  // [MQTT-3.3.1-2]
  Reader r(body);
  if (!r.str(out.topic)) return malformed("PUBLISH topic truncated");
  if (!valid_mqtt_utf8(out.topic)) return malformed("PUBLISH topic not valid UTF-8");
  if (out.topic.find_first_of("+#") != std::string::npos)  // [MQTT-3.3.2-2]
    return Result::fail(Reason::TopicNameInvalid, "wildcard in PUBLISH topic");
  if (out.qos > 0) {  // [MQTT-2.2.1-2]: only QoS 1 and 2 carry a packet identifier
    if (Result res = read_packet_id(r, out.packet_id); !res.ok) return res;
  }
  if (is_v5(v)) {
    // decode_properties rejects Topic Alias 0 [MQTT-3.3.2-8].
    if (Result res = r.props(PropContext::Publish, out.properties); !res.ok) return res;
    // An empty topic needs a Topic Alias (3.3.2.1); the broker resolves the alias.
    if (out.topic.empty() && !out.properties.topic_alias)
      return protocol_error("empty PUBLISH topic without Topic Alias");
  } else if (out.topic.empty()) {
    return Result::fail(Reason::TopicNameInvalid, "empty PUBLISH topic");  // 3.1.1 [MQTT-4.7.3-1]
  }
  r.rest(out.payload);
  return Result::success();
}

Result decode_pub_response(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                           PubResponse& out) {
  out = PubResponse{};
  const uint8_t type = first_byte >> 4;
  if (type < 4 || type > 7) return malformed("not a PUBACK/PUBREC/PUBREL/PUBCOMP");
  out.type = static_cast<PacketType>(type);
  const bool pubrel = out.type == PacketType::Pubrel;
  if ((first_byte & 0x0F) != (pubrel ? 0x02 : 0x00))  // [MQTT-2.1.3-1], [MQTT-3.6.1-1]
    return malformed(pubrel ? "PUBREL flags not 0010" : "PUBACK/PUBREC/PUBCOMP flags not 0");
  Reader r(body);
  if (Result res = read_packet_id(r, out.packet_id); !res.ok) return res;
  if (is_v5(v)) {
    // Remaining length 2: Success, no properties; 3: no properties (3.4.2.1).
    if (r.left() > 0) {
      r.u8(out.reason);
      const bool ok =
          type <= 5 ? one_of(out.reason, kPubackReasons) : one_of(out.reason, kPubrelReasons);
      if (!ok) return protocol_error("PUBACK/PUBREC/PUBREL/PUBCOMP reason code invalid");
    }
    if (r.left() > 0) {
      if (Result res = r.props(PropContext::PubResponse, out.properties); !res.ok) return res;
    }
  }
  if (r.left() != 0) return malformed("PUBACK/PUBREC/PUBREL/PUBCOMP trailing bytes");
  return Result::success();
}

Result decode_subscribe(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                        Subscribe& out) {
  out = Subscribe{};
  if (first_byte != kFirstSubscribe) return malformed("SUBSCRIBE flags not 0010");
  Reader r(body);
  if (Result res = read_packet_id(r, out.packet_id); !res.ok) return res;
  if (is_v5(v)) {
    // decode_properties rejects Subscription Identifier 0 or given twice (3.8.2.1.2).
    if (Result res = r.props(PropContext::Subscribe, out.properties); !res.ok) return res;
  }
  while (r.left() > 0) {
    Subscription s;
    uint8_t opts = 0;
    if (!r.str(s.filter)) return malformed("SUBSCRIBE topic filter truncated");
    if (!r.u8(opts)) return malformed("SUBSCRIBE options missing");
    if (Result res = check_filter(s.filter); !res.ok) return res;
    s.qos = opts & 3;
    if (s.qos == 3) return malformed("SUBSCRIBE QoS 3");  // [MQTT-3.8.3-4] 3.1.1, 3.8.3.1
    if (is_v5(v)) {
      if (opts & 0xC0) return malformed("SUBSCRIBE reserved option bits set");  // [MQTT-3.8.3-5]
      s.no_local = (opts & 0x04) != 0;
      s.retain_as_published = (opts & 0x08) != 0;
      s.retain_handling = (opts >> 4) & 3;
      if (s.retain_handling == 3) return protocol_error("SUBSCRIBE Retain Handling 3");
      if (s.no_local && is_shared(s.filter))  // [MQTT-3.8.3-4]
        return protocol_error("No Local on a shared subscription");
    } else if (opts & 0xFC) {
      return malformed("SUBSCRIBE reserved option bits set");  // 3.1.1 [MQTT-3-8.3-4]
    }
    out.subscriptions.push_back(std::move(s));
  }
  if (out.subscriptions.empty())
    return protocol_error("SUBSCRIBE without subscriptions");  // [MQTT-3.8.3-3]
  return Result::success();
}

Result decode_suback(uint8_t first_byte, std::span<const uint8_t> body, Version v, Suback& out) {
  out = Suback{};
  if (first_byte != kFirstSuback) return malformed("SUBACK flags not 0");
  Reader r(body);
  if (Result res = read_packet_id(r, out.packet_id); !res.ok) return res;
  if (is_v5(v)) {
    if (Result res = r.props(PropContext::Suback, out.properties); !res.ok) return res;
  }
  std::string codes;
  r.rest(codes);
  if (codes.empty()) return protocol_error("SUBACK without return codes");  // 3.9.3
  for (char c : codes) {
    const auto code = static_cast<uint8_t>(c);
    if (!(is_v5(v) ? one_of(code, kSubackReasons) : one_of(code, kSuback3Codes)))
      return protocol_error("SUBACK return code invalid");  // 3.1.1 [MQTT-3.9.3-2]
    out.codes.push_back(code);
  }
  return Result::success();
}

Result decode_unsubscribe(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                          Unsubscribe& out) {
  out = Unsubscribe{};
  if (first_byte != kFirstUnsubscribe) return malformed("UNSUBSCRIBE flags not 0010");
  Reader r(body);
  if (Result res = read_packet_id(r, out.packet_id); !res.ok) return res;
  if (is_v5(v)) {
    if (Result res = r.props(PropContext::Unsubscribe, out.properties); !res.ok) return res;
  }
  while (r.left() > 0) {
    std::string f;
    if (!r.str(f)) return malformed("UNSUBSCRIBE topic filter truncated");
    if (Result res = check_filter(f); !res.ok) return res;
    out.filters.push_back(std::move(f));
  }
  if (out.filters.empty())
    return protocol_error("UNSUBSCRIBE without topic filters");  // [MQTT-3.10.3-2]
  return Result::success();
}

Result decode_unsuback(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                       Unsuback& out) {
  out = Unsuback{};
  if (first_byte != kFirstUnsuback) return malformed("UNSUBACK flags not 0");
  Reader r(body);
  if (Result res = read_packet_id(r, out.packet_id); !res.ok) return res;
  if (!is_v5(v)) {
    if (r.left() != 0) return malformed("UNSUBACK trailing bytes");  // 3.1.1: 3.11.1
    return Result::success();
  }
  if (Result res = r.props(PropContext::Unsuback, out.properties); !res.ok) return res;
  std::string codes;
  r.rest(codes);
  if (codes.empty()) return protocol_error("UNSUBACK without reason codes");  // 3.11.3
  for (char c : codes) {
    const auto code = static_cast<uint8_t>(c);
    if (!one_of(code, kUnsubackReasons)) return protocol_error("UNSUBACK reason code invalid");
    out.codes.push_back(code);
  }
  return Result::success();
}

Result decode_empty(uint8_t first_byte, std::span<const uint8_t> body) {
  if (first_byte != kFirstPingreq && first_byte != kFirstPingresp)
    return malformed("PINGREQ/PINGRESP flags not 0");
  if (!body.empty()) return malformed("PINGREQ/PINGRESP with a body");
  return Result::success();
}

Result decode_disconnect(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                         Disconnect& out) {
  out = Disconnect{};
  if (first_byte != kFirstDisconnect) return malformed("DISCONNECT flags not 0");
  Reader r(body);
  // 5.0: remaining length 0 means Normal disconnection, 1 means no properties (3.14.2).
  if (is_v5(v) && r.left() > 0) {
    r.u8(out.reason);
    if (!one_of(out.reason, kDisconnectReasons))
      return protocol_error("DISCONNECT reason code invalid");
    if (r.left() > 0) {
      if (Result res = r.props(PropContext::Disconnect, out.properties); !res.ok) return res;
    }
  }
  if (r.left() != 0) return malformed("DISCONNECT trailing bytes");
  return Result::success();
}

Result decode_auth(uint8_t first_byte, std::span<const uint8_t> body, Auth& out) {
  out = Auth{};
  if (first_byte != kFirstAuth) return malformed("AUTH flags not 0");
  Reader r(body);
  // Remaining length 0 means Success without properties (3.15.2.1); like DISCONNECT,
  // a lone reason code is accepted.
  if (r.left() > 0) {
    r.u8(out.reason);
    if (!one_of(out.reason, kAuthReasons)) return protocol_error("AUTH reason code invalid");
    if (r.left() > 0) {
      if (Result res = r.props(PropContext::Auth, out.properties); !res.ok) return res;
    }
  }
  if (r.left() != 0) return malformed("AUTH trailing bytes");
  return Result::success();
}

}  // namespace mqtt
