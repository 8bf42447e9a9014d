// Messages, deliveries and sessions: the broker's state that outlives a TCP
// connection. Pure data and pure functions (queue policy, packet ids, PUBLISH
// encoding); no libuv. Loop thread only.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "broker/router.hpp"
#include "mqtt/connect.hpp"
#include "mqtt/types.hpp"

namespace broker {

struct Conn;

// One application message as received; shared (immutable) by every delivery,
// queue entry and the retained store.
struct Message {
  std::string topic;
  std::string payload;
  // MQTT 5 properties forwarded to subscribers (payload format, content type,
  // response topic, correlation data, user properties); null when none.
  std::unique_ptr<mqtt::Properties> props;
  uint64_t expiry_ms = 0;  // loop time when it expires; 0 = never
  uint64_t origin = 0;     // Session::serial of the publisher (No Local); 0 from a peer
  uint64_t seq = 0;        // cluster: publication number at its origin node
  uint64_t rversion = 0;   // retained-store version (newest wins across nodes)
  uint16_t from = 0;       // cluster: origin node, 0 = this one, else peer index + 1
  uint8_t qos = 0;
  bool retain = false;

  bool expired(uint64_t now_ms) const { return expiry_ms != 0 && now_ms >= expiry_ms; }

  // Takes from a PUBLISH's (or will's) MQTT 5 properties what travels with the
  // message: the expiry deadline and the properties forwarded unaltered
  // [MQTT-3.3.2-4, 3.3.2-15..20]. Topic Alias and Subscription Identifiers are
  // per hop and stay behind. Moves strings out of `pr`.
  void take_properties(mqtt::Properties& pr, uint64_t now_ms);
};

// One message on its way to one session.
struct Delivery {
  enum State : uint8_t { Queued, WaitAck, WaitRec, WaitComp };
  MsgPtr msg;
  std::vector<uint32_t> sub_ids;  // MQTT 5 Subscription Identifiers (usually empty)
  uint16_t pid = 0;
  uint8_t qos = 0;
  bool retain = false;  // the RETAIN flag to send
  State state = Queued;
};

// The pending will of a disconnected session (MQTT 5 Will Delay Interval).
struct PendingWill {
  mqtt::WillMessage will;
  uint64_t due_ms = 0;
};

// Counters for things a user may ask about ("why did I lose messages?").
struct Stats {
  uint64_t dropped_queue_full = 0;  // deliveries dropped because a session queue was full
  uint64_t dropped_too_large = 0;   // larger than the client's Maximum Packet Size
  uint64_t dropped_expired = 0;     // Message Expiry Interval passed while queued
  uint64_t connections_rejected = 0;
};

// What a session holds beyond its identity: subscriptions, messages in flight
// and queued. Allocated on first use and dropped when all empty, so an idle
// client without subscriptions costs only the Session itself.
struct SessionData {
  std::map<std::string, SubOpts, std::less<>> subs;  // filter -> options
  std::vector<Delivery> inflight;                    // sent QoS 1/2, not yet complete
  std::list<Delivery> queue;                         // waiting for window/socket
  size_t queued_qos0 = 0;
  std::unordered_set<uint16_t> qos2_in;  // received QoS 2 ids awaiting PUBREL
};

// Per-session cluster state (cluster mode only; broker/cluster*.cpp).
struct SessionCluster {
  uint64_t ts = 0;               // wall clock ms of the last connect (newest wins)
  uint32_t moving = 0;           // claim id while being handed over (0 = not)
  unsigned moving_peer = 0;      // ...to this peer
  uint64_t moving_until_ms = 0;  // the hand-over is abandoned after this
  // After a move: publications up to seq from an origin (Message::from) had
  // reached the session before it moved here; they are not delivered again.
  std::vector<std::pair<uint16_t, uint64_t>> skip;
  bool skips(const Message& m) const {
    for (const auto& [from, seq] : skip)
      if (from == m.from && m.seq <= seq) return true;
    return false;
  }
};

struct Session {
  static constexpr uint32_t kNeverExpires = 0xFFFFFFFF;

  std::string client_id;       // never changes: the sessions map keys on a view of it
  uint64_t serial = 0;         // unique per session ever created (No Local identity)
  Conn* conn = nullptr;        // the live connection, or null while offline
  uint64_t expires_at_ms = 0;  // while offline; 0 = never
  uint32_t expiry_s = 0;       // Session Expiry Interval [MQTT-3.1.2-23]
  uint16_t next_pid = 1;
  bool v5 = false;       // protocol of the last connection (5.0 merges overlapping subs)
  uint32_t fan_idx = 0;  // Server::route scratch: this session's slot in the fan-out
  std::unique_ptr<PendingWill> will;
  std::unique_ptr<SessionData> d;
  std::unique_ptr<SessionCluster> cx;  // null when not clustered

  SessionData& data() {
    if (!d) d = std::make_unique<SessionData>();
    return *d;
  }
  bool queue_empty() const { return !d || d->queue.empty(); }
  size_t inflight_size() const { return d ? d->inflight.size() : 0; }
  // Frees the data block once nothing is left in it.
  void compact() {
    if (d && d->subs.empty() && d->inflight.empty() && d->queue.empty() && d->qos2_in.empty())
      d.reset();
  }

  // Next packet id not used by an in-flight delivery (1..65535) [MQTT-2.2.1-3].
  // Returns 0 when all are in use.
  uint16_t alloc_pid();
  // Appends to the queue with the "full queue drops QoS 0 first" policy; returns
  // false when a delivery (this one or an older QoS 0) was dropped.
  bool enqueue(Delivery d, size_t max_queue);
  Delivery pop_front();
  // Finds the in-flight delivery with this id, or null.
  Delivery* find_inflight(uint16_t pid);
  void erase_inflight(uint16_t pid);
};

// Appends a PUBLISH for `m`. MQTT 5 adds the forwarded properties, the
// remaining Message Expiry Interval [MQTT-3.3.2-6], `sub_ids` and, when
// `alias` is not 0, the Topic Alias (with an empty Topic Name when
// `omit_topic`) [MQTT-3.3.2-12]. Returns the offset of the packet id within
// `out` (0 for QoS 0) so a template encoded once can be patched per recipient.
size_t encode_publish(std::vector<uint8_t>& out, const Message& m, bool v5, uint8_t qos,
                      bool retain, bool dup, uint16_t pid, std::span<const uint32_t> sub_ids,
                      uint64_t now_ms, uint16_t alias = 0, bool omit_topic = false);

}  // namespace broker
