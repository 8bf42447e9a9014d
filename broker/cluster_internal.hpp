// The Cluster's private types, shared by cluster.cpp, cluster_sync.cpp and
// cluster_session.cpp. Not for use elsewhere.
#pragma once

#include <uv.h>

#include <string>
#include <vector>

#include "broker/cluster.hpp"

namespace broker {

constexpr uint64_t kMinBackoffMs = 100, kMaxBackoffMs = 5000;

struct Cluster::Dialer {
  std::string addr;  // as given in --peers
  sockaddr_storage sa{};
  Link* link = nullptr;  // the link being dialed or up
  uint64_t next_ms = 0;  // next attempt
  uint64_t backoff_ms = kMinBackoffMs;
  int parked = -1;  // the peer (index) it reached, whose link is another one
};

struct Cluster::Peer {
  std::string name;
  unsigned index = 0;
  Link* link = nullptr;  // the active link, or null while down
  uint64_t incarnation = 0;
  uint64_t last_seq = 0;  // highest publication number received from this incarnation
  uint64_t up_since_ms = 0;
  uint64_t downs = 0;
  std::string addr;
};

struct Cluster::Link {
  uv_tcp_t tcp;  // tcp.data = this
  uv_connect_t creq;
  enum State : uint8_t { Connecting, Handshake, Up, Closing };
  State state = Connecting;
  bool dialed = false;
  bool got_hello = false, verified = false;
  bool quiet = false;        // closed as a duplicate or replaced: not worth a log line
  Dialer* dialer = nullptr;  // dialed links; reset when the dialer moves on
  Peer* peer = nullptr;      // the peer, once authenticated (active or retiring link)
  // Both nodes dialed: the link dialed by the smaller name stays, the other
  // retires: each end sends Retire as its last frame on it, reads it until
  // the other's Retire, then closes it. Meanwhile the staying link is not
  // read (`paused`), so frames keep their order across the switch.
  bool retiring = false, got_retire = false, paused = false;
  uint64_t retire_until_ms = 0;
  std::string addr;  // remote address, for logs
  std::string remote_name;
  uint64_t remote_incarnation = 0;
  peer::Nonce my_nonce{}, their_nonce{};
  std::vector<uint8_t> in;   // an unfinished frame
  std::vector<uint8_t> out;  // not yet handed to uv_write
  size_t writing = 0;        // bytes owned by the in-flight write
  bool dirty = false;
  uint64_t since_ms = 0, last_rx_ms = 0, last_tx_ms = 0;
  // Retained-set replication after link up: next topic after `cursor`,
  // messages first, then tombstones.
  bool syncing = false, sync_tombs = false;
  std::string cursor;
};

struct Cluster::Claim {
  enum Phase : uint8_t { Replies, Syncing, Transfer };
  uint32_t id = 0;
  std::string client_id;
  uint64_t ts = 0;
  bool clean = false;
  Conn* conn = nullptr;  // null once the client went away (the session is then kept offline)
  mqtt::ConnectInfo info;
  Phase phase = Replies;
  Mask waiting = 0;  // peers whose reply (Replies) or SyncAck (Syncing) is outstanding
  int source = -1;   // the peer handing its session over
  uint64_t source_ts = 0;
  Mask others = 0;  // other peers that held a copy (told to drop it)
  std::vector<peer::WireSub> subs;
  bool superseded = false;
  std::unique_ptr<Session> pending;  // subscribed, not in sessions_ until finish()
  uint64_t deadline_ms = 0;
};

}  // namespace broker
