// Core MQTT vocabulary shared by every module. Pure data: no I/O, no globals.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mqtt {

enum class PacketType : uint8_t {
  Connect = 1,
  Connack = 2,
  Publish = 3,
  Puback = 4,
  Pubrec = 5,
  Pubrel = 6,
  Pubcomp = 7,
  Subscribe = 8,
  Suback = 9,
  Unsubscribe = 10,
  Unsuback = 11,
  Pingreq = 12,
  Pingresp = 13,
  Disconnect = 14,
  Auth = 15,  // MQTT 5 only
};

// Protocol level byte of CONNECT.
enum class Version : uint8_t {
  V31 = 3,   // "MQIsdp"
  V311 = 4,  // "MQTT"
  V5 = 5,    // "MQTT"
};

const char* to_string(Version v);

// MQTT 3.1 / 3.1.1 CONNACK return codes.
enum class ConnackCode3 : uint8_t {
  Accepted = 0x00,
  UnacceptableProtocolVersion = 0x01,
  IdentifierRejected = 0x02,
  ServerUnavailable = 0x03,
  BadUsernameOrPassword = 0x04,
  NotAuthorized = 0x05,
};

// MQTT 5 reason codes (section 2.4). One enum for all packets; the encoders
// do not check that a code is legal for a given packet type.
enum class Reason : uint8_t {
  Success = 0x00,  // also Normal disconnection, Granted QoS 0
  GrantedQos1 = 0x01,
  GrantedQos2 = 0x02,
  DisconnectWithWill = 0x04,
  NoMatchingSubscribers = 0x10,
  NoSubscriptionExisted = 0x11,
  ContinueAuthentication = 0x18,
  ReAuthenticate = 0x19,
  UnspecifiedError = 0x80,
  MalformedPacket = 0x81,
  ProtocolError = 0x82,
  ImplementationSpecificError = 0x83,
  UnsupportedProtocolVersion = 0x84,
  ClientIdentifierNotValid = 0x85,
  BadUserNameOrPassword = 0x86,
  NotAuthorized = 0x87,
  ServerUnavailable = 0x88,
  ServerBusy = 0x89,
  Banned = 0x8A,
  ServerShuttingDown = 0x8B,
  BadAuthenticationMethod = 0x8C,
  KeepAliveTimeout = 0x8D,
  SessionTakenOver = 0x8E,
  TopicFilterInvalid = 0x8F,
  TopicNameInvalid = 0x90,
  PacketIdentifierInUse = 0x91,
  PacketIdentifierNotFound = 0x92,
  ReceiveMaximumExceeded = 0x93,
  TopicAliasInvalid = 0x94,
  PacketTooLarge = 0x95,
  MessageRateTooHigh = 0x96,
  QuotaExceeded = 0x97,
  AdministrativeAction = 0x98,
  PayloadFormatInvalid = 0x99,
  RetainNotSupported = 0x9A,
  QosNotSupported = 0x9B,
  UseAnotherServer = 0x9C,
  ServerMoved = 0x9D,
  SharedSubscriptionsNotSupported = 0x9E,
  ConnectionRateExceeded = 0x9F,
  MaximumConnectTime = 0xA0,
  SubscriptionIdentifiersNotSupported = 0xA1,
  WildcardSubscriptionsNotSupported = 0xA2,
};

// Property identifiers (MQTT 5, section 2.2.2.2).
namespace prop {
constexpr uint8_t PayloadFormatIndicator = 0x01;
constexpr uint8_t MessageExpiryInterval = 0x02;
constexpr uint8_t ContentType = 0x03;
constexpr uint8_t ResponseTopic = 0x08;
constexpr uint8_t CorrelationData = 0x09;
constexpr uint8_t SubscriptionIdentifier = 0x0B;
constexpr uint8_t SessionExpiryInterval = 0x11;
constexpr uint8_t AssignedClientIdentifier = 0x12;
constexpr uint8_t ServerKeepAlive = 0x13;
constexpr uint8_t AuthenticationMethod = 0x15;
constexpr uint8_t AuthenticationData = 0x16;
constexpr uint8_t RequestProblemInformation = 0x17;
constexpr uint8_t WillDelayInterval = 0x18;
constexpr uint8_t RequestResponseInformation = 0x19;
constexpr uint8_t ResponseInformation = 0x1A;
constexpr uint8_t ServerReference = 0x1C;
constexpr uint8_t ReasonString = 0x1F;
constexpr uint8_t ReceiveMaximum = 0x21;
constexpr uint8_t TopicAliasMaximum = 0x22;
constexpr uint8_t TopicAlias = 0x23;
constexpr uint8_t MaximumQos = 0x24;
constexpr uint8_t RetainAvailable = 0x25;
constexpr uint8_t UserProperty = 0x26;
constexpr uint8_t MaximumPacketSize = 0x27;
constexpr uint8_t WildcardSubscriptionAvailable = 0x28;
constexpr uint8_t SubscriptionIdentifierAvailable = 0x29;
constexpr uint8_t SharedSubscriptionAvailable = 0x2A;
}  // namespace prop

// Where a property block appears; decides which identifiers are allowed.
enum class PropContext : uint8_t {
  Connect,
  Will,
  Connack,
  Publish,
  PubResponse,  // PUBACK, PUBREC, PUBREL, PUBCOMP
  Subscribe,
  Suback,
  Unsubscribe,
  Unsuback,
  Disconnect,
  Auth,
};

// Decoded MQTT 5 properties. Every field is optional; only those allowed in the
// block's PropContext can be set by the decoder. Binary data is kept in
// std::string (bytes, not necessarily UTF-8).
struct Properties {
  std::optional<uint8_t> payload_format_indicator;
  std::optional<uint32_t> message_expiry_interval;
  std::optional<std::string> content_type;
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;
  std::vector<uint32_t> subscription_identifiers;  // PUBLISH may carry several
  std::optional<uint32_t> session_expiry_interval;
  std::optional<std::string> assigned_client_identifier;
  std::optional<uint16_t> server_keep_alive;
  std::optional<std::string> authentication_method;
  std::optional<std::string> authentication_data;
  std::optional<uint8_t> request_problem_information;
  std::optional<uint32_t> will_delay_interval;
  std::optional<uint8_t> request_response_information;
  std::optional<std::string> response_information;
  std::optional<std::string> server_reference;
  std::optional<std::string> reason_string;
  std::optional<uint16_t> receive_maximum;
  std::optional<uint16_t> topic_alias_maximum;
  std::optional<uint16_t> topic_alias;
  std::optional<uint8_t> maximum_qos;
  std::optional<uint8_t> retain_available;
  std::vector<std::pair<std::string, std::string>> user_properties;
  std::optional<uint32_t> maximum_packet_size;
  std::optional<uint8_t> wildcard_subscription_available;
  std::optional<uint8_t> subscription_identifier_available;
  std::optional<uint8_t> shared_subscription_available;

  bool empty() const;
  bool operator==(const Properties&) const = default;
};

}  // namespace mqtt
