// The cluster's peer protocol: what two mqttlb-broker nodes say to each other
// on a peer link (--cluster-bind / --peers). A small framed binary protocol.
// Pure: bytes in, structs out, and back; no I/O, no crypto, no allocation
// beyond the returned strings. Fuzzed (tests/fuzz/fuzz_peer.cpp); a decoder
// never reads outside the frame and rejects trailing bytes.
//
// Frame: u32 length (big endian; the bytes after it: type + body), u8 type,
// body. Integers are big endian; str16 = u16 length + bytes, str32 = u32
// length + bytes; MQTT 5 properties are an MQTT property block (varint length
// + properties, mqtt/ encoding, PUBLISH context).
//
// Conversation (docs/broker.md "Cluster"): both ends send Hello at once, then
// Auth (HMAC proof over both nonces, broker/peer_auth.cpp); nothing else is
// accepted before both proofs are checked. Then routes, retained messages and
// the session list flow, followed by publications, claims and session moves.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mqtt/types.hpp"

namespace broker::peer {

constexpr uint8_t kVersion = 1;
constexpr uint32_t kMaxHandshakeFrame = 512;  // before authentication
constexpr size_t kNonceSize = 32;
constexpr size_t kProofSize = 32;  // HMAC-SHA256

enum class Type : uint8_t {
  Hello = 1,
  Auth = 2,
  Ping = 3,           // empty; any frame proves the link is alive
  Retire = 4,         // empty; the sender's last frame on a duplicate link (docs/broker.md)
  RouteAdd = 10,      // a filter (as subscribed, "$share/G/F" included) now in use on the sender
  RouteDel = 11,      // no longer in use
  Publish = 12,       // one application message
  Claim = 20,         // a client id connects on the sender
  ClaimReply = 21,    // what the receiver held for it
  Commit = 22,        // "send me that session" (or "drop it")
  SessionState = 23,  // the session itself, in reply to Commit
  Sync = 24,          // barrier: answered with SyncAck after everything before it
  SyncAck = 25,
  Sessions = 26,  // the sender's sessions (ids and connect times), after link up
};

enum class Status : uint8_t { NeedMore, Done, Error };

struct Frame {
  Status status = Status::NeedMore;
  Type type = Type::Ping;
  std::span<const uint8_t> body;  // within the input
  size_t size = 0;                // whole frame, length field included (Done)
};

// The frame at the start of `in`. Error: length 0 (no type), above `max_len`,
// or an unknown type (known as soon as the type byte is there).
Frame next_frame(std::span<const uint8_t> in, uint32_t max_len);

// ---- handshake
struct Hello {
  uint8_t version = kVersion;
  std::string name;          // the sender's --name, 1..255 bytes
  uint64_t incarnation = 0;  // random per process start
  std::array<uint8_t, kNonceSize> nonce{};
  bool operator==(const Hello&) const = default;
};
struct Auth {
  std::array<uint8_t, kProofSize> proof{};
  bool operator==(const Auth&) const = default;
};

// ---- application messages
struct WireMessage {
  std::string topic;
  std::string payload;
  mqtt::Properties props;       // forwarded MQTT 5 properties (may be empty)
  uint32_t expiry_left_ms = 0;  // remaining Message Expiry; 0 = none
  uint64_t seq = 0;             // per-origin publication number (duplicate filter)
  uint8_t qos = 0;
  bool retain = false;
  bool operator==(const WireMessage&) const = default;
};

struct Publish {
  WireMessage msg;
  bool deliver = false;  // deliver to the receiver's matching subscribers
  bool store = false;    // retained-store update (delete when payload empty)
  uint64_t version = 0;  // retained version (store only): newest wins
  // Shared subscription groups (filter, group) the receiver serves for this
  // message; its other local groups must not get it.
  std::vector<std::pair<std::string, std::string>> groups;
  bool operator==(const Publish&) const = default;
};

// ---- sessions
struct Claim {
  uint32_t id = 0;
  std::string client_id;
  uint64_t ts = 0;  // wall clock ms at CONNECT (pending claims race on it)
  bool clean = false;
  bool operator==(const Claim&) const = default;
};

struct WireSub {
  std::string filter;
  uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  uint8_t retain_handling = 0;
  uint32_t sub_id = 0;
  bool operator==(const WireSub&) const = default;
};

struct ClaimReply {
  enum Status : uint8_t { None = 0, Held = 1, Superseded = 2 };
  uint32_t id = 0;
  Status status = None;
  uint64_t ts = 0;            // Held: when that session last connected
  std::vector<WireSub> subs;  // Held: its subscriptions
  bool operator==(const ClaimReply&) const = default;
};

struct Commit {
  uint32_t id = 0;
  bool transfer = true;  // false: the receiver drops its copy (another one won)
  bool operator==(const Commit&) const = default;
};

struct WireDelivery {
  WireMessage msg;     // absent (empty) in state WaitComp
  std::string origin;  // node that published msg ("" = unknown)
  std::vector<uint32_t> sub_ids;
  uint16_t pid = 0;
  uint8_t qos = 0;
  uint8_t state = 0;  // broker::Delivery::State
  bool retain = false;
  bool has_msg = true;
  bool operator==(const WireDelivery&) const = default;
};

// A node's view of what it has seen from one origin, at the moment it hands
// a session over: publications up to `seq` are already in that session.
struct Watermark {
  std::string node;
  uint64_t incarnation = 0;
  uint64_t seq = 0;
  bool operator==(const Watermark&) const = default;
};

struct SessionState {
  uint32_t claim = 0;
  bool found = false;  // false: nothing to hand over any more
  uint32_t expiry_s = 0;
  uint64_t ts = 0;
  uint16_t next_pid = 1;
  bool v5 = false;
  std::vector<WireDelivery> inflight;
  std::vector<WireDelivery> queue;
  std::vector<uint16_t> qos2_in;
  std::vector<Watermark> marks;
  bool operator==(const SessionState&) const = default;
};

struct Sync {
  uint64_t token = 0;
  bool operator==(const Sync&) const = default;
};

struct Sessions {
  std::vector<std::pair<std::string, uint64_t>> entries;  // client id, last connect ts
  bool operator==(const Sessions&) const = default;
};

// ---- encoders: append one whole frame
void encode(std::vector<uint8_t>& out, const Hello& h);
void encode(std::vector<uint8_t>& out, const Auth& a);
void encode_empty(std::vector<uint8_t>& out, Type t);                           // Ping, Retire
void encode_route(std::vector<uint8_t>& out, Type t, std::string_view filter);  // RouteAdd/Del
void encode(std::vector<uint8_t>& out, const Publish& p);
void encode(std::vector<uint8_t>& out, const Claim& c);
void encode(std::vector<uint8_t>& out, const ClaimReply& r);
void encode(std::vector<uint8_t>& out, const Commit& c);
void encode(std::vector<uint8_t>& out, const SessionState& s);
void encode_sync(std::vector<uint8_t>& out, Type t, uint64_t token);  // Sync/SyncAck
void encode(std::vector<uint8_t>& out, const Sessions& s);

// The hot path: a Publish frame from parts, without building a Publish.
struct PublishView {
  std::string_view topic, payload;
  const mqtt::Properties* props = nullptr;  // null = none
  uint32_t expiry_left_ms = 0;
  uint64_t seq = 0, version = 0;
  uint8_t qos = 0;
  bool retain = false, deliver = false, store = false;
  const std::vector<std::pair<std::string, std::string>>* groups = nullptr;
};
void encode(std::vector<uint8_t>& out, const PublishView& p);

// ---- decoders: `body` is Frame::body; false when malformed
bool decode(std::span<const uint8_t> body, Hello& out);
bool decode(std::span<const uint8_t> body, Auth& out);
bool decode_empty(std::span<const uint8_t> body);
bool decode_route(std::span<const uint8_t> body, std::string& filter);
bool decode(std::span<const uint8_t> body, Publish& out);
bool decode(std::span<const uint8_t> body, Claim& out);
bool decode(std::span<const uint8_t> body, ClaimReply& out);
bool decode(std::span<const uint8_t> body, Commit& out);
bool decode(std::span<const uint8_t> body, SessionState& out);
bool decode_sync(std::span<const uint8_t> body, uint64_t& token);
bool decode(std::span<const uint8_t> body, Sessions& out);

}  // namespace broker::peer
