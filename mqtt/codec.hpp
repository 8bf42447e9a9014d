// Encoders and decoders for every MQTT control packet (3.1, 3.1.1, 5.0).
// Pure: bytes in, structs out, and back. Encoders append one complete packet
// (fixed header included) to `out`. Decoders take the fixed header's first byte
// and the packet body (the Remaining Length bytes after the fixed header) and
// never read outside it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mqtt/connect.hpp"
#include "mqtt/frame.hpp"
#include "mqtt/types.hpp"

namespace mqtt {

// Outcome of a decode. On failure `reason` is the MQTT 5 reason code a server
// would send in DISCONNECT (MalformedPacket, ProtocolError, TopicNameInvalid, ...)
// and `what` a short static description for logs.
struct Result {
  bool ok = true;
  Reason reason = Reason::Success;
  const char* what = "";
  static Result success() { return {}; }
  static Result fail(Reason r, const char* w) { return {false, r, w}; }
};

struct Connack {
  bool session_present = false;
  uint8_t code = 0;  // ConnackCode3 before 5.0, Reason in 5.0
  Properties properties;
};

struct Publish {
  uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::string topic;  // may be empty in 5.0 when a Topic Alias is used
  uint16_t packet_id = 0;  // only when qos > 0
  Properties properties;
  std::string payload;  // binary
};

// PUBACK, PUBREC, PUBREL, PUBCOMP.
struct PubResponse {
  PacketType type = PacketType::Puback;
  uint16_t packet_id = 0;
  uint8_t reason = 0;  // 5.0 only
  Properties properties;
};

struct Subscription {
  std::string filter;
  uint8_t qos = 0;
  bool no_local = false;             // 5.0
  bool retain_as_published = false;  // 5.0
  uint8_t retain_handling = 0;       // 5.0: 0, 1, 2
};

struct Subscribe {
  uint16_t packet_id = 0;
  Properties properties;
  std::vector<Subscription> subscriptions;
};

struct Suback {
  uint16_t packet_id = 0;
  Properties properties;
  std::vector<uint8_t> codes;  // granted QoS or failure (0x80 / 5.0 reasons)
};

struct Unsubscribe {
  uint16_t packet_id = 0;
  Properties properties;
  std::vector<std::string> filters;
};

struct Unsuback {
  uint16_t packet_id = 0;
  Properties properties;
  std::vector<uint8_t> codes;  // 5.0 only; empty before 5.0
};

struct Disconnect {
  uint8_t reason = 0;  // 5.0 only
  Properties properties;
};

struct Auth {
  uint8_t reason = 0;
  Properties properties;
};

// ---- properties ----
// Decodes a property block (length varint + properties) at in[pos], advancing
// pos. Rejects ids not allowed in `ctx`, duplicates (except User Property and,
// in PUBLISH, Subscription Identifier), values out of range.
Result decode_properties(std::span<const uint8_t> in, size_t& pos, PropContext ctx,
                         Properties& out);
// Appends the property block (length varint + properties) for `p`.
void append_properties(std::vector<uint8_t>& out, const Properties& p);
// Size in bytes of the encoded properties, without the length varint.
size_t properties_size(const Properties& p);

// ---- encoders ----
void encode_connect(const ConnectInfo& c, std::vector<uint8_t>& out);
void encode_connack(const Connack& c, Version v, std::vector<uint8_t>& out);
void encode_publish(const Publish& p, Version v, std::vector<uint8_t>& out);
void encode_pub_response(const PubResponse& r, Version v, std::vector<uint8_t>& out);
void encode_subscribe(const Subscribe& s, Version v, std::vector<uint8_t>& out);
void encode_suback(const Suback& s, Version v, std::vector<uint8_t>& out);
void encode_unsubscribe(const Unsubscribe& u, Version v, std::vector<uint8_t>& out);
void encode_unsuback(const Unsuback& u, Version v, std::vector<uint8_t>& out);
void encode_pingreq(std::vector<uint8_t>& out);
void encode_pingresp(std::vector<uint8_t>& out);
// Before 5.0 DISCONNECT has no body; reason/properties are ignored.
void encode_disconnect(const Disconnect& d, Version v, std::vector<uint8_t>& out);
void encode_auth(const Auth& a, std::vector<uint8_t>& out);

// ---- decoders ----
// `first_byte` is the fixed header's first byte; `body` exactly the Remaining
// Length bytes. Each checks the fixed-header flags its packet requires
// [MQTT-2.1.3-1], field lengths, and leaves nothing unread.
Result decode_connack(uint8_t first_byte, std::span<const uint8_t> body, Version v, Connack& out);
Result decode_publish(uint8_t first_byte, std::span<const uint8_t> body, Version v, Publish& out);
Result decode_pub_response(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                           PubResponse& out);
Result decode_subscribe(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                        Subscribe& out);
Result decode_suback(uint8_t first_byte, std::span<const uint8_t> body, Version v, Suback& out);
Result decode_unsubscribe(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                          Unsubscribe& out);
Result decode_unsuback(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                       Unsuback& out);
// PINGREQ / PINGRESP: flags 0 and empty body.
Result decode_empty(uint8_t first_byte, std::span<const uint8_t> body);
Result decode_disconnect(uint8_t first_byte, std::span<const uint8_t> body, Version v,
                         Disconnect& out);
Result decode_auth(uint8_t first_byte, std::span<const uint8_t> body, Auth& out);

// ---- topics ----
// Topic Name: non-empty, valid UTF-8, no '+' or '#' [MQTT-4.7.3-1, 4.7.1-1].
bool valid_topic_name(std::string_view t);
// Topic Filter: non-empty, '#' only last and alone in its level, '+' alone in
// its level [MQTT-4.7.1-2/3].
bool valid_topic_filter(std::string_view f);
// Whether `filter` matches `topic`; topics starting with '$' are not matched by
// a filter starting with a wildcard [MQTT-4.7.2-1].
bool topic_matches(std::string_view filter, std::string_view topic);

}  // namespace mqtt
