// The CONNECT parser (MQTT 3.1 section 3.1, 3.1.1 section 3.1, 5.0 section 3.1).
// Checks are done in wire order, so the first violation in the byte stream is
// the one reported, whatever the segmentation (split invariance).
#include "mqtt/connect.hpp"

#include <algorithm>
#include <string_view>

#include "mqtt/frame.hpp"
#include "mqtt/props_internal.hpp"
#include "mqtt/wire.hpp"

namespace mqtt {

const char* to_string(ConnectError e) {
  switch (e) {
    case ConnectError::None:
      return "none";
    case ConnectError::NotConnect:
      return "not-connect";
    case ConnectError::BadFixedHeaderFlags:
      return "bad-fixed-header-flags";
    case ConnectError::MalformedLength:
      return "malformed-length";
    case ConnectError::TooLarge:
      return "too-large";
    case ConnectError::BadProtocolName:
      return "bad-protocol-name";
    case ConnectError::UnsupportedLevel:
      return "unsupported-protocol-level";
    case ConnectError::ReservedFlag:
      return "reserved-flag";
    case ConnectError::WillQos:
      return "will-qos";
    case ConnectError::WillRetain:
      return "will-retain";
    case ConnectError::PasswordWithoutUsername:
      return "password-without-username";
    case ConnectError::Truncated:
      return "truncated";
    case ConnectError::TrailingBytes:
      return "trailing-bytes";
    case ConnectError::InvalidUtf8:
      return "invalid-utf8";
    case ConnectError::ClientIdRejected:
      return "client-id-rejected";
    case ConnectError::EmptyClientIdNeedsClean:
      return "empty-client-id-needs-clean-session";
    case ConnectError::BadProperty:
      return "bad-property";
    case ConnectError::DuplicateProperty:
      return "duplicate-property";
    case ConnectError::BadPropertyValue:
      return "bad-property-value";
    case ConnectError::AuthDataWithoutMethod:
      return "auth-data-without-method";
  }
  return "unknown";
}

bool valid_mqtt_utf8(std::span<const uint8_t> s) {
  // Well-formed UTF-8 per RFC 3629 / Unicode Table 3-7: no overlong forms, no
  // surrogates (U+D800..U+DFFF) [MQTT-1.5.4-1], nothing above U+10FFFF, and no
  // U+0000 [MQTT-1.5.4-2].
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      if (c == 0) return false;
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlongs
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // no overlongs
      if (c == 0xF4) hi = 0x8F;  // <= U+10FFFF
    } else {
      return false;  // 0x80..0xC1 lead bytes, 0xF5..0xFF
    }
    if (n - i < len) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k)
      if ((s[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

namespace {

ConnectError map_props(detail::PropStatus st) {
  using detail::PropStatus;
  switch (st) {
    case PropStatus::Ok:
      return ConnectError::None;
    case PropStatus::Truncated:
      return ConnectError::Truncated;
    case PropStatus::BadLength:
      return ConnectError::BadProperty;
    case PropStatus::NotAllowed:
      return ConnectError::BadProperty;
    case PropStatus::Duplicate:
      return ConnectError::DuplicateProperty;
    case PropStatus::BadValue:
      return ConnectError::BadPropertyValue;
    case PropStatus::InvalidUtf8:
      return ConnectError::InvalidUtf8;
  }
  return ConnectError::BadProperty;
}

ConnectResult fail(ConnectResult& r, ConnectError e) {
  r.status = ParseStatus::Error;
  r.error = e;
  return r;
}

bool eq(std::span<const uint8_t> a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](uint8_t x, char y) { return x == uint8_t(y); });
}

}  // namespace

ConnectResult parse_connect(std::span<const uint8_t> in, size_t max_bytes) {
  ConnectResult res;
  if (in.empty()) return res;
  // 0x16 is a TLS handshake record (a TLS client on a plain port), not a
  // CONNECT with bad flags; one byte decides, so this stays split-invariant.
  if (in[0] == 0x16) return fail(res, ConnectError::NotConnect);
  // Fixed header: type 1, flags 0 [MQTT-2.1.3-1] [MQTT-3.1.0-1: first packet is CONNECT].
  if ((in[0] >> 4) != static_cast<uint8_t>(PacketType::Connect))
    return fail(res, ConnectError::NotConnect);
  if ((in[0] & 0x0F) != 0) return fail(res, ConnectError::BadFixedHeaderFlags);
  VarintResult len = decode_varint(in.subspan(1));
  if (len.status == DecodeStatus::Malformed) return fail(res, ConnectError::MalformedLength);
  if (len.status == DecodeStatus::NeedMore) return res;
  const size_t header_len = 1 + size_t{len.length};
  const size_t total = header_len + len.value;
  if (total > max_bytes) return fail(res, ConnectError::TooLarge);
  if (in.size() < total) return res;  // NeedMore

  wire::Reader r{in.subspan(header_len, len.value)};
  ConnectInfo& info = res.info;

  // Protocol name and level [MQTT-3.1.2-1] [MQTT-3.1.2-2].
  auto name = r.lp_bytes();
  uint8_t level = r.u8();
  if (r.short_read) return fail(res, ConnectError::Truncated);
  info.protocol_level = level;
  if (eq(name, "MQTT")) {
    if (level == 4) {
      info.version = Version::V311;
    } else if (level == 5) {
      info.version = Version::V5;
    } else if (level == 3) {
      return fail(res, ConnectError::BadProtocolName);  // 3.1 is "MQIsdp"
    } else {
      info.version = level > 5 ? Version::V5 : Version::V311;  // for the CONNACK
      return fail(res, ConnectError::UnsupportedLevel);
    }
  } else if (eq(name, "MQIsdp")) {
    if (level != 3) return fail(res, ConnectError::BadProtocolName);
    info.version = Version::V31;
  } else {
    return fail(res, ConnectError::BadProtocolName);
  }
  const bool v5 = info.version == Version::V5;

  uint8_t flags = r.u8();
  info.keep_alive = r.u16();
  if (r.short_read) return fail(res, ConnectError::Truncated);
  if (flags & 0x01) return fail(res, ConnectError::ReservedFlag);  // [MQTT-3.1.2-3]
  info.clean_start = flags & 0x02;
  const bool will = flags & 0x04;
  const uint8_t will_qos = (flags >> 3) & 0x03;
  const bool will_retain = flags & 0x20;
  const bool has_password = flags & 0x40;
  const bool has_username = flags & 0x80;
  if (will_qos == 3) return fail(res, ConnectError::WillQos);            // [MQTT-3.1.2-14]
  if (!will && will_qos != 0) return fail(res, ConnectError::WillQos);   // [MQTT-3.1.2-13]
  if (!will && will_retain) return fail(res, ConnectError::WillRetain);  // [MQTT-3.1.2-15]
  if (has_password && !has_username && !v5)                              // [MQTT-3.1.2-22]
    return fail(res, ConnectError::PasswordWithoutUsername);

  if (v5) {
    ConnectError e = map_props(detail::read_properties(r, PropContext::Connect, info.properties));
    if (e != ConnectError::None) return fail(res, e);
    // Authentication Data without Authentication Method is a Protocol Error [3.1.2.11.10].
    if (info.properties.authentication_data && !info.properties.authentication_method)
      return fail(res, ConnectError::AuthDataWithoutMethod);
  }

  // Payload: Client Identifier [MQTT-3.1.3-3/4].
  info.client_id_offset = header_len + r.pos;
  auto cid = r.lp_bytes();
  if (r.short_read) return fail(res, ConnectError::Truncated);
  if (!valid_mqtt_utf8(cid)) return fail(res, ConnectError::InvalidUtf8);
  info.client_id = wire::to_str(cid);
  if (info.client_id.empty()) {
    // 3.1 requires 1..23 characters (we accept longer ids, as Mosquitto does);
    // 3.1.1 allows empty only with clean session [MQTT-3.1.3-7/8]; 5.0 always.
    if (info.version == Version::V31) return fail(res, ConnectError::ClientIdRejected);
    if (info.version == Version::V311 && !info.clean_start)
      return fail(res, ConnectError::EmptyClientIdNeedsClean);
  }

  if (will) {
    WillMessage w;
    w.qos = will_qos;
    w.retain = will_retain;
    if (v5) {
      ConnectError e = map_props(detail::read_properties(r, PropContext::Will, w.properties));
      if (e != ConnectError::None) return fail(res, e);
    }
    auto topic = r.lp_bytes();
    if (r.short_read) return fail(res, ConnectError::Truncated);
    if (!valid_mqtt_utf8(topic)) return fail(res, ConnectError::InvalidUtf8);  // [MQTT-3.1.3-10]
    auto payload = r.lp_bytes();
    if (r.short_read) return fail(res, ConnectError::Truncated);
    w.topic = wire::to_str(topic);
    w.payload = wire::to_str(payload);
    info.will = std::move(w);
  }

  if (has_username) {
    auto u = r.lp_bytes();
    if (r.short_read) return fail(res, ConnectError::Truncated);
    if (!valid_mqtt_utf8(u)) return fail(res, ConnectError::InvalidUtf8);  // [MQTT-3.1.3-11]
    info.username = wire::to_str(u);
  }
  if (has_password) {
    auto p = r.lp_bytes();
    if (r.short_read) return fail(res, ConnectError::Truncated);
    info.password = wire::to_str(p);
  }
  if (r.left() != 0) return fail(res, ConnectError::TrailingBytes);

  info.packet_length = total;
  res.status = ParseStatus::Done;
  return res;
}

std::vector<uint8_t> rewrite_client_id(std::span<const uint8_t> packet, const ConnectInfo& info,
                                       std::string_view new_id) {
  const size_t old_field = 2 + info.client_id.size();
  if (new_id.size() > 0xFFFF || info.packet_length > packet.size() ||
      info.client_id_offset + old_field > info.packet_length)
    return {};
  FrameResult f = peek_frame(packet);
  if (f.status != DecodeStatus::Ok) return {};
  const size_t body = f.header.remaining_length - old_field + 2 + new_id.size();
  if (body > kMaxRemainingLength) return {};
  std::vector<uint8_t> out;
  out.reserve(packet.size() - old_field + 2 + new_id.size() + 4);
  out.push_back(packet[0]);
  append_varint(out, static_cast<uint32_t>(body));
  out.insert(out.end(), packet.begin() + f.header.header_length,
             packet.begin() + static_cast<std::ptrdiff_t>(info.client_id_offset));
  out.push_back(static_cast<uint8_t>(new_id.size() >> 8));
  out.push_back(static_cast<uint8_t>(new_id.size() & 0xFF));
  out.insert(out.end(), new_id.begin(), new_id.end());
  out.insert(out.end(),
             packet.begin() + static_cast<std::ptrdiff_t>(info.client_id_offset + old_field),
             packet.end());
  return out;
}

}  // namespace mqtt
