// Clustering of mqttlb-broker nodes (--cluster-bind, --peers, --cluster-secret):
// a full mesh of authenticated peer links (broker/peer_proto.hpp) over which
// the nodes share subscription routes, publications, retained messages and
// sessions. docs/broker.md "Cluster" describes the behaviour; in short:
//  - one link per pair of nodes: both dial, the link dialed by the node with
//    the smaller name is kept; links re-dial with back-off (100 ms .. 5 s);
//  - a publication from a local client (or will) goes once to each peer that
//    has a matching route, and is delivered there to local subscribers only:
//    a message that came from a peer is never forwarded again (no loops);
//  - a client id connecting here is claimed from the other nodes first (the
//    one holding it closes that connection and hands its session over).
// Loop thread only. Ownership: Cluster owns its listener, timer, links
// (freed in their uv_close callbacks) and pending claims; it reaches into the
// Server (its friend) for sessions, the trie and the retained store.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/peer_auth.hpp"
#include "broker/peer_proto.hpp"
#include "broker/routes.hpp"
#include "broker/session.hpp"
#include "mqtt/connect.hpp"

namespace broker {

class Server;
struct Conn;
using GroupRef = std::pair<std::string, std::string>;

struct ClusterOptions {
  std::string bind;                // HOST:PORT of our peer listener
  std::vector<std::string> peers;  // HOST:PORT of the other nodes' listeners
  std::string secret;              // contents of --cluster-secret
  size_t queue_bytes = 8 << 20;    // per link: forwarded messages are dropped above this
};

struct ClusterStats {
  uint64_t forwarded = 0;  // Publish frames sent
  uint64_t received = 0;   // Publish frames received
  uint64_t dropped = 0;    // forwarded messages dropped: a link's queue was full
  uint64_t links_closed_slow = 0;
  uint64_t auth_failures = 0;
  uint64_t sessions_moved_in = 0, sessions_moved_out = 0;
  uint64_t takeovers = 0;  // local connections closed because the id connected elsewhere
};

class Cluster {
 public:
  Cluster(Server& srv, ClusterOptions o);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Binds the peer listener and starts dialing; false (with `err`) when the
  // address is bad or in use.
  bool start(std::string& err);
  void shutdown();  // idempotent
  bool owns(const uv_handle_t* h) const { return handles_.count(h) != 0; }
  void flush();                    // writes what this callback queued on the links
  std::string describe() const;    // "listening on ..., peers ..."
  std::string stats_line() const;  // link states and counters, for --stats
  const ClusterStats& stats() const { return st_; }

  // ---- called by the Server
  // A publication from a local client or will: sends it to the peers that
  // need it (and, when retained, to all). Shared groups that another node
  // serves for it are appended to `elsewhere`. Returns the number of peers
  // that will deliver it.
  size_t forward(const Message& m, std::vector<GroupRef>& elsewhere);
  // A filter ("F" or "$share/G/F") came into use here (refcount 0 -> 1) or
  // went out of use (1 -> 0).
  void route_changed(const std::string& full, bool added);
  // CONNECT with a client id: claims it from the other nodes first. True: the
  // connection waits (Conn::AwaitClaim) and Server::finish_connect runs later.
  bool claim(Conn* c, mqtt::ConnectInfo& info);
  void conn_closed(Conn* c);  // a connection in AwaitClaim or held went away
  // A SUBSCRIBE that brought new routes: its SUBACK (and the retained
  // messages after it) wait until every peer has processed them (Sync), so
  // whatever is published anywhere after the SUBACK reaches the subscriber.
  // The connection reads nothing meanwhile (Conn::held). False: not held
  // (no peer up); the caller sends them itself.
  bool hold_suback(Conn* c, std::vector<uint8_t> suback,
                   std::vector<std::pair<std::string, SubOpts>> retained);
  uint64_t route_adds() const { return route_adds_; }
  // Origin numbering of local publications (duplicate filter after moves).
  uint64_t next_seq() { return ++local_seq_; }
  // The origin index stored in Message::from for a node name (0 = us); false
  // when unknown.
  bool origin_index(const std::string& node, uint64_t incarnation, uint16_t& out) const;

 private:
  struct Link;
  struct Peer;
  struct Dialer;
  struct Claim;
  using Mask = RouteTable::Mask;

  // ---- links (cluster.cpp)
  static Cluster* of(uv_handle_t* h);  // the loop's Server's cluster
  static void on_connection(uv_stream_t* s, int status);
  static void on_connect(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_closed(uv_handle_t* h);
  static void on_timer(uv_timer_t* t);
  Link* new_link(bool dialed);
  void dial(Dialer& d);
  void tick();
  void feed(Link* l, std::span<const uint8_t> data);
  size_t consume(Link* l, std::span<const uint8_t> data);
  void on_frame(Link* l, peer::Type t, std::span<const uint8_t> body);
  void on_handshake(Link* l, peer::Type t, std::span<const uint8_t> body);
  void start_handshake(Link* l);
  void send_hello(Link* l);
  void authenticated(Link* l);
  void close_link(Link* l, const char* why);
  void link_down(Link* l, const char* why);
  void flush_link(Link* l);
  size_t backlog(const Link* l) const;
  // Appends a whole frame; `droppable` frames (deliveries) are dropped, and
  // counted, when the link is over queue_bytes. False when not sent.
  bool send(Link* l, std::span<const uint8_t> frame, bool droppable = false);
  bool send_to(unsigned peer, std::span<const uint8_t> frame, bool droppable = false);
  void broadcast(std::span<const uint8_t> frame);
  Peer* peer_named(const std::string& name);
  uint64_t now() const;

  // ---- state shared over the links (cluster_sync.cpp)
  void link_up(Peer& p);
  void pump_sync(Link* l);  // retained set, a slice at a time
  // A Publish frame's fields from a message (store: as a retained update).
  peer::PublishView view_of(const Message& m, uint64_t now_ms, bool store) const;
  void release_hold(uint64_t token);
  void holds_tick(uint64_t t);
  void on_route(Peer& p, bool add, std::span<const uint8_t> body);
  void on_publish(Peer& p, std::span<const uint8_t> body);
  void on_sessions(Peer& p, std::span<const uint8_t> body);
  void send_sessions(Peer& p);

  // ---- claims and session moves (cluster_session.cpp)
  void on_claim(Peer& p, std::span<const uint8_t> body);
  void on_claim_reply(Peer& p, std::span<const uint8_t> body);
  void on_commit(Peer& p, std::span<const uint8_t> body);
  void on_session_state(Peer& p, std::span<const uint8_t> body);
  void on_sync(Peer& p, bool ack, std::span<const uint8_t> body);
  void advance(Claim& c);
  void finish(Claim& c);
  void abort_claim(Claim& c, const char* why);
  void peer_gone(unsigned index);  // claims and moves waiting on it
  void claims_tick(uint64_t t);
  peer::SessionState export_session(Session& s, uint32_t claim);
  void import_session(Session& s, peer::SessionState& st);
  std::shared_ptr<Message> message_from(peer::WireMessage& w, uint16_t from);

  Server& srv_;
  ClusterOptions opt_;
  uv_loop_t* loop_;
  uv_tcp_t listener_;
  uv_timer_t timer_;
  bool listening_ = false, stopping_ = false;
  std::unordered_set<const uv_handle_t*> handles_;  // ours, for Server::for_each_conn
  std::vector<std::unique_ptr<Link>> links_;        // freed in on_closed
  std::vector<std::unique_ptr<Peer>> peers_;        // by index; never shrinks
  std::vector<std::unique_ptr<Dialer>> dialers_;
  std::vector<Link*> dirty_;
  RouteTable routes_;
  Mask up_ = 0;  // peers with an authenticated, active link
  uint64_t incarnation_ = 0;
  uint64_t local_seq_ = 0;
  uint32_t next_claim_ = 1;
  std::unordered_map<std::string, std::unique_ptr<Claim>> claims_;  // by client id
  std::unordered_map<uint32_t, Claim*> claim_ids_;
  struct SubHold {
    Conn* conn = nullptr;  // null once it went away
    std::vector<uint8_t> suback;
    std::vector<std::pair<std::string, SubOpts>> retained;
    Mask waiting = 0;
    uint64_t deadline_ms = 0;
  };
  static constexpr uint64_t kHoldBit = uint64_t(1) << 63;  // Sync tokens of holds (else claims)
  std::unordered_map<uint64_t, SubHold> holds_;
  uint64_t next_hold_ = 1;
  // Sessions being handed over from here: (peer index << 32 | claim id) -> client id.
  std::unordered_map<uint64_t, std::string> moving_;
  uint64_t route_adds_ = 0;                              // RouteAdd frames broadcast so far
  std::vector<std::pair<unsigned, GroupRef>> assigned_;  // forward() scratch
  std::vector<uint8_t> common_[2];                       // forward() frames: [deliver]
  std::vector<uint8_t> frame_;                           // one frame being encoded
  ClusterStats st_;
};

}  // namespace broker
