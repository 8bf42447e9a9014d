// MQTT 5 properties (section 2.2.2): decoding with per-packet validation, and
// encoding. Table 2-4 of the spec decides which identifiers each packet allows.
#include <cstring>

#include "mqtt/codec.hpp"
#include "mqtt/props_internal.hpp"

namespace mqtt {

using detail::PropStatus;

const char* to_string(Version v) {
  switch (v) {
    case Version::V31:
      return "3.1";
    case Version::V311:
      return "3.1.1";
    case Version::V5:
      return "5.0";
  }
  return "?";
}

bool Properties::empty() const { return *this == Properties{}; }

namespace {

enum class PType : uint8_t { Byte, Two, Four, Varint, Utf8, Binary, Pair, None };

// Bit per PropContext: where each property may appear (MQTT 5 Table 2-4).
constexpr uint32_t bit(PropContext c) { return 1u << static_cast<uint32_t>(c); }
constexpr uint32_t kPubWill = bit(PropContext::Publish) | bit(PropContext::Will);
constexpr uint32_t kAll = 0xFFFFFFFFu;

struct PropInfo {
  PType type;
  uint32_t contexts;
};

PropInfo info_of(uint8_t id) {
  using C = PropContext;
  switch (id) {
    case prop::PayloadFormatIndicator:
    case prop::MessageExpiryInterval:
    case prop::ContentType:
    case prop::ResponseTopic:
    case prop::CorrelationData: {
      PType t = id == prop::PayloadFormatIndicator  ? PType::Byte
                : id == prop::MessageExpiryInterval ? PType::Four
                : id == prop::CorrelationData       ? PType::Binary
                                                    : PType::Utf8;
      return {t, kPubWill};
    }
    case prop::SubscriptionIdentifier:
      return {PType::Varint, bit(C::Publish) | bit(C::Subscribe)};
    case prop::SessionExpiryInterval:
      return {PType::Four, bit(C::Connect) | bit(C::Connack) | bit(C::Disconnect)};
    case prop::AssignedClientIdentifier:
      return {PType::Utf8, bit(C::Connack)};
    case prop::ServerKeepAlive:
      return {PType::Two, bit(C::Connack)};
    case prop::AuthenticationMethod:
      return {PType::Utf8, bit(C::Connect) | bit(C::Connack) | bit(C::Auth)};
    case prop::AuthenticationData:
      return {PType::Binary, bit(C::Connect) | bit(C::Connack) | bit(C::Auth)};
    case prop::RequestProblemInformation:
    case prop::RequestResponseInformation:
      return {PType::Byte, bit(C::Connect)};
    case prop::WillDelayInterval:
      return {PType::Four, bit(C::Will)};
    case prop::ResponseInformation:
      return {PType::Utf8, bit(C::Connack)};
    case prop::ServerReference:
      return {PType::Utf8, bit(C::Connack) | bit(C::Disconnect)};
    case prop::ReasonString:
      return {PType::Utf8, bit(C::Connack) | bit(C::PubResponse) | bit(C::Suback) |
                               bit(C::Unsuback) | bit(C::Disconnect) | bit(C::Auth)};
    case prop::ReceiveMaximum:
    case prop::TopicAliasMaximum:
      return {PType::Two, bit(C::Connect) | bit(C::Connack)};
    case prop::TopicAlias:
      return {PType::Two, bit(C::Publish)};
    case prop::MaximumQos:
    case prop::RetainAvailable:
    case prop::WildcardSubscriptionAvailable:
    case prop::SubscriptionIdentifierAvailable:
    case prop::SharedSubscriptionAvailable:
      return {PType::Byte, bit(C::Connack)};
    case prop::UserProperty:
      return {PType::Pair, kAll};
    case prop::MaximumPacketSize:
      return {PType::Four, bit(C::Connect) | bit(C::Connack)};
    default:
      return {PType::None, 0};
  }
}

template <typename T>
PropStatus set_once(std::optional<T>& slot, T v) {
  if (slot) return PropStatus::Duplicate;
  slot = v;
  return PropStatus::Ok;
}

bool is_bool(uint8_t v) { return v == 0 || v == 1; }

}  // namespace

namespace detail {

PropStatus read_properties(wire::Reader& r, PropContext ctx, Properties& out) {
  uint32_t len = 0;
  bool malformed = false;
  if (!r.varint(len, malformed)) return malformed ? PropStatus::BadLength : PropStatus::Truncated;
  if (!r.has(len)) return PropStatus::Truncated;
  wire::Reader p{r.in.subspan(r.pos, len)};
  r.pos += len;

  while (p.left() > 0) {
    // The identifier is a varint [MQTT-2.2.2.2]; every defined id fits in one byte.
    uint32_t id32 = 0;
    if (!p.varint(id32, malformed)) return malformed ? PropStatus::BadLength : PropStatus::Truncated;
    if (id32 > 0x7F) return PropStatus::NotAllowed;
    uint8_t id = static_cast<uint8_t>(id32);
    PropInfo pi = info_of(id);
    if (pi.type == PType::None || (pi.contexts & bit(ctx)) == 0) return PropStatus::NotAllowed;

    PropStatus st = PropStatus::Ok;
    switch (pi.type) {
      case PType::Byte: {
        uint8_t v = p.u8();
        if (p.short_read) return PropStatus::Truncated;
        // Boolean-valued bytes must be 0 or 1; Maximum QoS must be 0 or 1.
        if (!is_bool(v)) return PropStatus::BadValue;
        switch (id) {
          case prop::PayloadFormatIndicator: st = set_once(out.payload_format_indicator, v); break;
          case prop::RequestProblemInformation: st = set_once(out.request_problem_information, v); break;
          case prop::RequestResponseInformation: st = set_once(out.request_response_information, v); break;
          case prop::MaximumQos: st = set_once(out.maximum_qos, v); break;
          case prop::RetainAvailable: st = set_once(out.retain_available, v); break;
          case prop::WildcardSubscriptionAvailable: st = set_once(out.wildcard_subscription_available, v); break;
          case prop::SubscriptionIdentifierAvailable: st = set_once(out.subscription_identifier_available, v); break;
          case prop::SharedSubscriptionAvailable: st = set_once(out.shared_subscription_available, v); break;
        }
        break;
      }
      case PType::Two: {
        uint16_t v = p.u16();
        if (p.short_read) return PropStatus::Truncated;
        switch (id) {
          case prop::ServerKeepAlive: st = set_once(out.server_keep_alive, v); break;
          case prop::ReceiveMaximum:
            // [MQTT-3.1.2-? / 3.2.2.3.3] Receive Maximum of 0 is a Protocol Error.
            if (v == 0) return PropStatus::BadValue;
            st = set_once(out.receive_maximum, v);
            break;
          case prop::TopicAliasMaximum: st = set_once(out.topic_alias_maximum, v); break;
          case prop::TopicAlias:
            if (v == 0) return PropStatus::BadValue;  // [MQTT-3.3.2-8]
            st = set_once(out.topic_alias, v);
            break;
        }
        break;
      }
      case PType::Four: {
        uint32_t v = p.u32();
        if (p.short_read) return PropStatus::Truncated;
        switch (id) {
          case prop::MessageExpiryInterval: st = set_once(out.message_expiry_interval, v); break;
          case prop::SessionExpiryInterval: st = set_once(out.session_expiry_interval, v); break;
          case prop::WillDelayInterval: st = set_once(out.will_delay_interval, v); break;
          case prop::MaximumPacketSize:
            if (v == 0) return PropStatus::BadValue;  // [MQTT-3.1.2.11.4] 0 is a Protocol Error
            st = set_once(out.maximum_packet_size, v);
            break;
        }
        break;
      }
      case PType::Varint: {  // Subscription Identifier: 1..268,435,455 [MQTT-3.8.2.1.2]
        uint32_t v = 0;
        if (!p.varint(v, malformed)) return malformed ? PropStatus::BadValue : PropStatus::Truncated;
        if (v == 0) return PropStatus::BadValue;
        // PUBLISH may carry several (one per matching subscription); SUBSCRIBE only one.
        if (ctx != PropContext::Publish && !out.subscription_identifiers.empty())
          return PropStatus::Duplicate;
        out.subscription_identifiers.push_back(v);
        break;
      }
      case PType::Utf8:
      case PType::Binary: {
        auto s = p.lp_bytes();
        if (p.short_read) return PropStatus::Truncated;
        if (pi.type == PType::Utf8 && !valid_mqtt_utf8(s)) return PropStatus::InvalidUtf8;
        std::string v = wire::to_str(s);
        switch (id) {
          case prop::ContentType: st = set_once(out.content_type, v); break;
          case prop::ResponseTopic: st = set_once(out.response_topic, v); break;
          case prop::CorrelationData: st = set_once(out.correlation_data, v); break;
          case prop::AssignedClientIdentifier: st = set_once(out.assigned_client_identifier, v); break;
          case prop::AuthenticationMethod: st = set_once(out.authentication_method, v); break;
          case prop::AuthenticationData: st = set_once(out.authentication_data, v); break;
          case prop::ResponseInformation: st = set_once(out.response_information, v); break;
          case prop::ServerReference: st = set_once(out.server_reference, v); break;
          case prop::ReasonString: st = set_once(out.reason_string, v); break;
        }
        break;
      }
      case PType::Pair: {
        auto k = p.lp_bytes();
        auto v = p.lp_bytes();
        if (p.short_read) return PropStatus::Truncated;
        if (!valid_mqtt_utf8(k) || !valid_mqtt_utf8(v)) return PropStatus::InvalidUtf8;
        out.user_properties.emplace_back(wire::to_str(k), wire::to_str(v));
        break;
      }
      case PType::None:
        return PropStatus::NotAllowed;
    }
    if (st != PropStatus::Ok) return st;
  }
  return PropStatus::Ok;
}

}  // namespace detail

Result decode_properties(std::span<const uint8_t> in, size_t& pos, PropContext ctx,
                         Properties& out) {
  wire::Reader r{in, pos};
  PropStatus st = detail::read_properties(r, ctx, out);
  switch (st) {
    case PropStatus::Ok:
      pos = r.pos;
      return Result::success();
    case PropStatus::Truncated:
      return Result::fail(Reason::MalformedPacket, "property block truncated");
    case PropStatus::BadLength:
      return Result::fail(Reason::MalformedPacket, "malformed property length");
    case PropStatus::NotAllowed:
      return Result::fail(Reason::ProtocolError, "property not allowed in this packet");
    case PropStatus::Duplicate:
      return Result::fail(Reason::ProtocolError, "property given more than once");
    case PropStatus::BadValue:
      return Result::fail(Reason::ProtocolError, "property value out of range");
    case PropStatus::InvalidUtf8:
      return Result::fail(Reason::MalformedPacket, "property string is not valid UTF-8");
  }
  return Result::fail(Reason::MalformedPacket, "property block");
}

namespace {

// Calls f(id, type) and the value writer for each present property, in id order.
struct Sizer {
  size_t n = 0;
  void byte(uint8_t, uint8_t) { n += 2; }
  void two(uint8_t, uint16_t) { n += 3; }
  void four(uint8_t, uint32_t) { n += 5; }
  void var(uint8_t, uint32_t v) { n += 1 + varint_size(v); }
  void str(uint8_t, const std::string& s) { n += 3 + s.size(); }
  void pair(uint8_t, const std::string& k, const std::string& v) { n += 5 + k.size() + v.size(); }
};

struct Writer {
  std::vector<uint8_t>& o;
  void byte(uint8_t id, uint8_t v) { o.push_back(id); o.push_back(v); }
  void two(uint8_t id, uint16_t v) { o.push_back(id); wire::put_u16(o, v); }
  void four(uint8_t id, uint32_t v) { o.push_back(id); wire::put_u32(o, v); }
  void var(uint8_t id, uint32_t v) { o.push_back(id); append_varint(o, v); }
  void str(uint8_t id, const std::string& s) { o.push_back(id); wire::put_lp(o, s); }
  void pair(uint8_t id, const std::string& k, const std::string& v) {
    o.push_back(id);
    wire::put_lp(o, k);
    wire::put_lp(o, v);
  }
};

template <typename V>
void visit(const Properties& p, V& v) {
  if (p.payload_format_indicator) v.byte(prop::PayloadFormatIndicator, *p.payload_format_indicator);
  if (p.message_expiry_interval) v.four(prop::MessageExpiryInterval, *p.message_expiry_interval);
  if (p.content_type) v.str(prop::ContentType, *p.content_type);
  if (p.response_topic) v.str(prop::ResponseTopic, *p.response_topic);
  if (p.correlation_data) v.str(prop::CorrelationData, *p.correlation_data);
  for (uint32_t id : p.subscription_identifiers) v.var(prop::SubscriptionIdentifier, id);
  if (p.session_expiry_interval) v.four(prop::SessionExpiryInterval, *p.session_expiry_interval);
  if (p.assigned_client_identifier)
    v.str(prop::AssignedClientIdentifier, *p.assigned_client_identifier);
  if (p.server_keep_alive) v.two(prop::ServerKeepAlive, *p.server_keep_alive);
  if (p.authentication_method) v.str(prop::AuthenticationMethod, *p.authentication_method);
  if (p.authentication_data) v.str(prop::AuthenticationData, *p.authentication_data);
  if (p.request_problem_information)
    v.byte(prop::RequestProblemInformation, *p.request_problem_information);
  if (p.will_delay_interval) v.four(prop::WillDelayInterval, *p.will_delay_interval);
  if (p.request_response_information)
    v.byte(prop::RequestResponseInformation, *p.request_response_information);
  if (p.response_information) v.str(prop::ResponseInformation, *p.response_information);
  if (p.server_reference) v.str(prop::ServerReference, *p.server_reference);
  if (p.reason_string) v.str(prop::ReasonString, *p.reason_string);
  if (p.receive_maximum) v.two(prop::ReceiveMaximum, *p.receive_maximum);
  if (p.topic_alias_maximum) v.two(prop::TopicAliasMaximum, *p.topic_alias_maximum);
  if (p.topic_alias) v.two(prop::TopicAlias, *p.topic_alias);
  if (p.maximum_qos) v.byte(prop::MaximumQos, *p.maximum_qos);
  if (p.retain_available) v.byte(prop::RetainAvailable, *p.retain_available);
  for (const auto& [k, val] : p.user_properties) v.pair(prop::UserProperty, k, val);
  if (p.maximum_packet_size) v.four(prop::MaximumPacketSize, *p.maximum_packet_size);
  if (p.wildcard_subscription_available)
    v.byte(prop::WildcardSubscriptionAvailable, *p.wildcard_subscription_available);
  if (p.subscription_identifier_available)
    v.byte(prop::SubscriptionIdentifierAvailable, *p.subscription_identifier_available);
  if (p.shared_subscription_available)
    v.byte(prop::SharedSubscriptionAvailable, *p.shared_subscription_available);
}

}  // namespace

size_t properties_size(const Properties& p) {
  Sizer s;
  visit(p, s);
  return s.n;
}

void append_properties(std::vector<uint8_t>& out, const Properties& p) {
  append_varint(out, static_cast<uint32_t>(properties_size(p)));
  Writer w{out};
  visit(p, w);
}

}  // namespace mqtt
