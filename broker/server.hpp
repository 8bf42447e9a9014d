// The broker server: one libuv loop, a TCP listener, connections, sessions.
// Everything here runs on the loop thread.
//
// Ownership: Server owns every Conn (intrusive list) and every Session (map by
// client id). A Conn is freed only in its uv_close callback; a WriteReq owns
// its bytes until its write callback, whatever the status. Sessions are never
// destroyed while a fan-out is iterating the trie: connection teardown that
// ends a session happens in the close callback, never inside a write.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/acl.hpp"
#include "broker/cluster.hpp"
#include "broker/router.hpp"
#include "broker/session.hpp"
#include "mqtt/codec.hpp"

namespace broker {

struct Options {
  std::string bind = "127.0.0.1";
  int port = 1883;
  std::string name = "broker";
  bool proxy_protocol = false;
  bool debug = false;
  size_t max_connections = 100000;
  uint32_t max_packet_size = 1024 * 1024;   // incoming limit (5.0 CONNACK Maximum Packet Size)
  size_t max_queued = 1000;                 // per session, QoS 0/1/2 waiting to be sent
  uint16_t max_inflight = 20;               // outgoing QoS 1/2 window per client
  uint64_t connect_timeout_ms = 10000;      // TCP (and PROXY header) without CONNECT
  uint16_t receive_maximum = 100;           // incoming QoS 2 awaiting PUBREL (5.0 CONNACK)
  uint16_t topic_alias_maximum = 10;        // client -> server aliases (5.0 CONNACK)
  uint16_t max_keepalive = 60;              // 5.0 Server Keep Alive above this (0 = no limit)
  std::shared_ptr<const Acl> acl;           // --acl; null = everything allowed
  std::shared_ptr<ClusterOptions> cluster;  // --cluster-bind/--peers; null = standalone
  unsigned stats_s = 0;                     // --stats: a stats line every S seconds (0 = never)
};

// Unwritten output of one connection; exists only while there is some.
struct OutQ {
  std::vector<uint8_t> pending;  // not yet handed to uv_write
  size_t writing = 0;            // bytes owned by the in-flight WriteReq (0 = none)
  bool dirty = false;            // listed in Server::dirty_
};

// Rarely needed per-connection state, allocated on first use.
struct ConnExtras {
  std::vector<std::string> aliases;  // 5.0 inbound Topic Alias table
  std::string peer;                  // "addr:port", only with --debug
  // 5.0 outbound Topic Aliases (the client's Topic Alias Maximum, capped):
  // topic -> alias, only for aliases already sent with their topic.
  std::unordered_map<std::string, uint16_t> alias_out;
  uint16_t alias_out_max = 0;
};

// Kept small: an idle connection is this struct and nothing else (no buffers).
struct Conn {
  // AwaitClaim: CONNECT received, the cluster is asked for the client id;
  // nothing more is read until it answers (Server::finish_connect).
  enum State : uint8_t { AwaitProxy, AwaitConnect, AwaitClaim, Connected, Draining, Closing };

  uv_tcp_t tcp;  // tcp.data = this
  Session* session = nullptr;
  std::unique_ptr<std::vector<uint8_t>> in;  // a partial packet only; null when idle
  std::unique_ptr<OutQ> out;                 // null when everything is written
  std::unique_ptr<mqtt::WillMessage> will;
  std::unique_ptr<ConnExtras> x;
  uint64_t since_ms = 0;    // last packet received (or state change before CONNECT)
  uint32_t max_out = 0;     // client's Maximum Packet Size (0 = no limit)
  uint16_t keep_alive = 0;  // seconds
  uint16_t window = 0;      // outgoing QoS 1/2 window
  State state = AwaitConnect;
  mqtt::Version version = mqtt::Version::V311;
  bool reading = false;
  bool graceful = false;  // DISCONNECT received: no will (unless 0x04)
  bool counted = false;   // holds a slot of max_connections
  bool claiming = false;  // a Cluster claim holds a pointer to it
  bool held = false;      // SUBACK waits for the cluster's routes: nothing more is read

  bool v5() const { return version == mqtt::Version::V5; }
  bool online() const { return state == Connected; }
  bool aliases_out() const { return x && x->alias_out_max; }
};

class Server {
  friend class Cluster;

 public:
  explicit Server(Options o);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, listens, prints the ready line and runs until SIGTERM/SIGINT.
  // Returns the process exit code.
  int run();

 private:
  // --- I/O (server.cpp) ---
  static void on_connection(uv_stream_t* s, int status);
  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_closed(uv_handle_t* h);
  static void on_tick(uv_timer_t* t);
  static void on_signal(uv_signal_t* s, int sig);
  void feed(Conn* c, std::span<const uint8_t> data);
  size_t consume(Conn* c, std::span<const uint8_t> data);
  void send(Conn* c, std::span<const uint8_t> bytes);
  void send_scratch(Conn* c) { send(c, scratch_); }
  void flush();
  void flush_conn(Conn* c);
  size_t backlog(const Conn* c) const;
  void set_reading(Conn* c, bool on);
  void resume_input(Conn* c);  // after a claim: read again, handle what was buffered
  void close(Conn* c);         // immediately (abnormal unless c->graceful)
  void drain_close(Conn* c);   // after pending output is written
  void tick();
  void shutdown();
  void log_debug(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  // Calls f(Conn*) for every connection, closing ones included (uv_walk).
  template <typename F>
  void for_each_conn(F&& f) {
    struct Ctx {
      uv_handle_t* listener;
      const Cluster* cluster;
      F* f;
    } ctx{reinterpret_cast<uv_handle_t*>(&listener_), cluster_.get(), &f};
    uv_walk(
        loop_,
        [](uv_handle_t* h, void* arg) {
          auto* x = static_cast<Ctx*>(arg);
          if (h->type == UV_TCP && h != x->listener && !(x->cluster && x->cluster->owns(h)))
            (*x->f)(static_cast<Conn*>(h->data));
        },
        &ctx);
  }

  // --- protocol (protocol.cpp) ---
  void on_packet(Conn* c, const mqtt::FrameHeader& h, std::span<const uint8_t> body);
  void on_connect(Conn* c, std::span<const uint8_t> packet);
  // The rest of CONNECT once the client id is ours (at once, or after a claim).
  void finish_connect(Conn* c, mqtt::ConnectInfo& info);
  void on_publish(Conn* c, uint8_t fb, std::span<const uint8_t> body);
  void on_pub_response(Conn* c, uint8_t fb, std::span<const uint8_t> body);
  void on_subscribe(Conn* c, uint8_t fb, std::span<const uint8_t> body);
  void on_unsubscribe(Conn* c, uint8_t fb, std::span<const uint8_t> body);
  void on_disconnect(Conn* c, uint8_t fb, std::span<const uint8_t> body);
  // Protocol violation: 5.0 clients get DISCONNECT(reason, reason string) first.
  void fail(Conn* c, mqtt::Reason r, const char* what);
  void send_connack(Conn* c, uint8_t code, bool present, const std::string* assigned,
                    bool server_keep_alive = false);
  void reject_connect(Conn* c, const mqtt::ConnectResult& r);

  // --- sessions and delivery (delivery.cpp) ---
  void attach(Conn* c, const mqtt::ConnectInfo& info, bool& present, std::string* assigned);
  void detach(Conn* c);  // connection gone: will, session expiry
  // The session's connection (if any) is closed because its client id
  // connected again (5.0: DISCONNECT 0x8E), with its will; false when the
  // session ended with it.
  bool take_over(Session* s);
  void destroy_session(Session* s);
  void publish_will(mqtt::WillMessage& w, uint64_t origin);
  // A publication from a local client or will: retained store, the cluster,
  // local subscribers. Returns the number of deliveries (peers count as one).
  size_t publish_local(std::shared_ptr<Message> m);
  // Delivers a message to every matching local subscription; returns how many
  // deliveries. Shared groups: all local ones when `groups` is null; with
  // `only`, just the listed (filter, group) pairs; without, all but those.
  size_t route(const MsgPtr& m, const std::vector<GroupRef>* groups = nullptr, bool only = true);
  // Subscriptions: the session's map, the trie, the route refcounts that the
  // cluster announces. sub_set returns true when the filter is new for `s`.
  bool sub_set(Session* s, const std::string& full, const SubOpts& o);
  bool sub_erase(Session* s, const std::string& full);
  void route_ref(const std::string& full, bool add);
  uint64_t next_rversion();  // a version newer than any seen
  void saw_rversion(uint64_t v) {
    if (v > last_rversion_) last_rversion_ = v;
  }
  void deliver(Session* s, const MsgPtr& m, uint8_t qos, bool retain,
               std::span<const uint32_t> sub_ids, struct FanCache* cache);
  bool transmit(Conn* c, Delivery& d, bool dup);
  void pump(Session* s);
  void resume(Session* s);
  void send_retained(Session* s, const std::string& filter, const SubOpts& o);
  uint64_t now() const { return uv_now(loop_); }

  Options opt_;
  uv_loop_t* loop_;
  uv_tcp_t listener_;
  uv_timer_t tick_timer_;
  uv_signal_t sigterm_, sigint_;
  int open_handles_ = 0;
  size_t conn_count_ = 0;
  // Keyed by a view of Session::client_id, which lives as long as the entry.
  std::unordered_map<std::string_view, std::unique_ptr<Session>> sessions_;
  SubTrie trie_;
  RetainedStore retained_;
  Stats stats_;
  std::vector<Conn*> dirty_;
  std::vector<uint8_t> scratch_;  // one packet being encoded
  struct Target {
    Session* s;
    uint32_t sub_id;  // first Subscription Identifier (0 = none)
    uint8_t qos;      // min(message, subscription), the highest of merged ones
    bool retain;      // RETAIN flag to send
    bool shared;      // a shared group's delivery (never merged)
    bool more_ids;    // further identifiers in extra_ids_
  };
  std::vector<Target> targets_;                           // fan-out scratch, reused
  std::vector<std::pair<uint32_t, uint32_t>> extra_ids_;  // (target index, sub id)
  uint64_t next_serial_ = 1;
  uint64_t next_auto_id_ = 1;
  // Earliest offline-session deadline (expiry or delayed will); the timer
  // scans sessions only when it has passed.
  uint64_t next_deadline_ms_ = UINT64_MAX;
  void note_deadline(uint64_t at) {
    if (at && at < next_deadline_ms_) next_deadline_ms_ = at;
  }
  bool stopping_ = false;
  std::unique_ptr<uint8_t[]> slab_;  // per-loop read buffer shared by all connections
  static constexpr size_t kSlab = 64 * 1024;
  // Full filter ("F" or "$share/G/F") -> local sessions subscribed to it.
  std::unordered_map<std::string, uint32_t> route_refs_;
  uint64_t last_rversion_ = 0;
  uint64_t version_salt_ = 0;  // low bits of retained versions: which node wrote it
  uint64_t last_stats_ms_ = 0;
  void print_stats();
  // Last: destroyed first, while sessions and the trie still exist.
  std::unique_ptr<Cluster> cluster_;
};

// Wall clock in ms (CLOCK_REALTIME): comparable across nodes, unlike uv_now.
uint64_t wall_ms();

}  // namespace broker
