// The CONNECT parser: bytes in, result out. Pure, no allocation beyond the
// returned strings, safe on any input (it is fuzzed: tests/fuzz/).
//
// Incremental use: the caller appends received bytes to its buffer and calls
// parse_connect() on the whole buffer each time. The fixed header is examined
// first, so until the full packet is buffered each call costs O(1) and the
// total work is linear in the packet size. Bytes after the CONNECT are never
// read: result.packet_length tells where the CONNECT ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/types.hpp"

namespace mqtt {

constexpr size_t kDefaultMaxConnectBytes = 64 * 1024;
constexpr size_t kMaxMaxConnectBytes = 1024 * 1024;

enum class ConnectError : uint8_t {
  None = 0,
  NotConnect,               // first byte is not 0x10 (HTTP, TLS, any other packet)
  BadFixedHeaderFlags,      // CONNECT flags nibble must be 0 [MQTT-2.1.3-1]
  MalformedLength,          // bad Remaining Length varint [MQTT-1.5.5]
  TooLarge,                 // packet longer than max_bytes
  BadProtocolName,          // neither "MQTT" nor "MQIsdp" [MQTT-3.1.2-1]
  UnsupportedLevel,         // known name, unknown level [MQTT-3.1.2-2]; answer with CONNACK
  ReservedFlag,             // connect flags bit 0 set [MQTT-3.1.2-3]
  WillQos,                  // will QoS 3, or QoS != 0 without will flag [MQTT-3.1.2-11/12/14]
  WillRetain,               // will retain without will flag [MQTT-3.1.2-13/15]
  PasswordWithoutUsername,  // before 5.0 [MQTT-3.1.2-22]
  Truncated,                // a field runs past the packet end
  TrailingBytes,            // bytes left in the packet after the last field
  InvalidUtf8,              // ill-formed UTF-8, U+0000 or surrogates [MQTT-1.5.3-1/2]
  ClientIdRejected,  // 3.1: empty client id (longer than 23 bytes is accepted, as Mosquitto does)
  EmptyClientIdNeedsClean,  // 3.1.1: empty id with clean session 0 [MQTT-3.1.3-7]
  BadProperty,              // property id not allowed here, or bad varint/length
  DuplicateProperty,        // property other than User Property given twice [MQTT-2.2.2-?]
  BadPropertyValue,         // e.g. Receive Maximum 0, Maximum Packet Size 0, bool not 0/1
  AuthDataWithoutMethod,    // [MQTT-3.1.2-? / 3.1.3.2]
};

const char* to_string(ConnectError e);

enum class ParseStatus : uint8_t { NeedMore, Done, Error };

struct WillMessage {
  uint8_t qos = 0;
  bool retain = false;
  std::string topic;
  std::string payload;    // binary
  Properties properties;  // MQTT 5 will properties
};

struct ConnectInfo {
  Version version = Version::V311;
  uint8_t protocol_level = 0;  // raw byte, also set for UnsupportedLevel errors
  bool clean_start = false;    // "clean session" before 5.0
  uint16_t keep_alive = 0;     // seconds
  std::string client_id;
  std::optional<std::string> username;
  std::optional<std::string> password;  // binary
  std::optional<WillMessage> will;
  Properties properties;        // MQTT 5 CONNECT properties
  size_t packet_length = 0;     // bytes of the whole CONNECT, fixed header included
  size_t client_id_offset = 0;  // where the client id's 2-byte length prefix starts
};

struct ConnectResult {
  ParseStatus status = ParseStatus::NeedMore;
  ConnectError error = ConnectError::None;
  ConnectInfo info;  // complete when Done; for UnsupportedLevel, protocol_level
                     // (and version guess) is filled so a CONNACK can be sent
};

// Parses the CONNECT at the start of `in`. `max_bytes` caps the whole packet
// (fixed header included); a header announcing more is an Error(TooLarge) as
// soon as the length is known.
ConnectResult parse_connect(std::span<const uint8_t> in,
                            size_t max_bytes = kDefaultMaxConnectBytes);

// The same CONNECT with another client id: the fixed header's Remaining
// Length recomputed, every other byte identical (then `rest`, the bytes the
// client sent after the CONNECT, unchanged). `packet` starts with the CONNECT
// that `info` describes (a Done parse of it). Empty result: the new id does
// not fit (65,535 bytes, or the packet over kMaxRemainingLength). Pure.
std::vector<uint8_t> rewrite_client_id(std::span<const uint8_t> packet, const ConnectInfo& info,
                                       std::string_view new_id);

// UTF-8 Encoded String check [MQTT-1.5.4-1/2]: well-formed UTF-8, no U+0000,
// no surrogates (which well-formed UTF-8 excludes anyway).
bool valid_mqtt_utf8(std::span<const uint8_t> s);
inline bool valid_mqtt_utf8(const std::string& s) {
  return valid_mqtt_utf8(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

}  // namespace mqtt
