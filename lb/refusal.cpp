#include "lb/refusal.hpp"

#include <cstring>

#include "mqtt/codec.hpp"

namespace lb {

RefusalCode refusal_code(Reject why) {
  using C3 = mqtt::ConnackCode3;
  using R = mqtt::Reason;
  auto c = [](C3 a, R b, const char* s) {
    return RefusalCode{static_cast<uint8_t>(a), static_cast<uint8_t>(b), s};
  };
  switch (why) {
    case Reject::UnsupportedLevel:
      return c(C3::UnacceptableProtocolVersion, R::UnsupportedProtocolVersion,
               "unsupported protocol version");
    case Reject::ShuttingDown:
      // 0x8B (Server shutting down) is a DISCONNECT reason only; a CONNACK may
      // not carry it (MQTT 5 section 3.2.2.2): 0x88 with the reason said.
      return c(C3::ServerUnavailable, R::ServerUnavailable, "mqttlb is shutting down");
    case Reject::BackendBusy:
      return c(C3::ServerUnavailable, R::ServerBusy, "brokers busy, retry later");
    case Reject::MaxConnectionsPerIp:
      return c(C3::ServerUnavailable, R::QuotaExceeded, "too many connections from this address");
    case Reject::MaxConnections:
      return c(C3::ServerUnavailable, R::QuotaExceeded, "connection limit reached");
    case Reject::RateGlobal:
    case Reject::RatePerIp:
      return c(C3::ServerUnavailable, R::ConnectionRateExceeded, "connection rate exceeded");
    case Reject::Flapping:
      return c(C3::ServerUnavailable, R::ConnectionRateExceeded,
               "client id reconnects too often: penalty box");
    case Reject::IdentityMismatch:
      return c(C3::IdentifierRejected, R::ClientIdentifierNotValid,
               "client id differs from the certificate's identity");
    case Reject::MemoryBudget:
    case Reject::LocalResources:
      return c(C3::ServerUnavailable, R::QuotaExceeded, "balancer out of resources");
    case Reject::NoBackend:
    default:
      return c(C3::ServerUnavailable, R::ServerUnavailable, "no broker available");
  }
}

std::vector<uint8_t> refusal_connack(mqtt::Version v, Reject why,
                                     std::optional<uint32_t> client_max_packet) {
  RefusalCode rc = refusal_code(why);
  mqtt::Connack c;
  const bool v5 = v == mqtt::Version::V5;
  c.code = v5 ? rc.v5 : rc.v3;
  // Fixed header 2 + flags 1 + code 1 + props varint 1 + id 1 + length 2.
  size_t with_reason = 8 + std::strlen(rc.reason);
  if (v5 && (!client_max_packet || *client_max_packet >= with_reason))
    c.properties.reason_string = rc.reason;
  std::vector<uint8_t> out;
  mqtt::encode_connack(c, v5 ? mqtt::Version::V5 : mqtt::Version::V311, out);
  return out;
}

}  // namespace lb
