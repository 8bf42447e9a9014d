// The validated configuration: plain structs with their defaults. Produced by
// conf::load() (conf/loader.hpp) from JSON; every key is documented in
// docs/config.md. A Config is immutable once built: the runtime takes a
// snapshot of it and swaps whole snapshots on reload.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace conf {

struct Endpoint {
  std::string host;  // numeric IPv4/IPv6 or a name resolved at load time
  uint16_t port = 0;
  std::string str() const;  // "host:port" ("[v6]:port")
};

struct ListenerTls {
  std::string cert;  // PEM, may hold the full chain
  std::string key;
  std::string ca;  // client CAs (PEM), for verify_client
  enum class Verify { None, Optional, Required } verify_client = Verify::None;
  // Device identity from the client certificate (docs/config.md "identity").
  enum class IdentityFrom { Cn, SanDns, SanUri } identity_from = IdentityFrom::Cn;
  enum class Enforce { Off, Match, Rewrite } identity_enforce = Enforce::Off;
  // Who protects the records once a TLS 1.3 session is placed (docs/tls.md
  // "Record layer handover"): mqttlb frees OpenSSL's state; openssl keeps it.
  enum class RecordLayer { Mqttlb, OpenSsl } record_layer = RecordLayer::Mqttlb;
};

// MQTT over WebSocket on a listener (docs/websocket.md).
struct ListenerWebSocket {
  std::string path = "/mqtt";  // the request path (the query is ignored)
  // mqtt: brokers get plain MQTT; websocket: a WebSocket to each backend's websocket_port.
  enum class ToBackend { Mqtt, WebSocket } to_backend = ToBackend::Mqtt;
  uint32_t max_handshake_bytes = 8192;  // the HTTP Upgrade request, 512 .. 65536
};

struct Listener {
  std::string name;
  Endpoint bind;
  std::optional<ListenerTls> tls;
  std::optional<ListenerWebSocket> websocket;
};

// TLS from the balancer (and its health checker) to a backend.
struct BackendTls {
  std::string ca;         // PEM bundle to verify the broker; empty = system default
  bool verify = true;     // verify the broker's certificate
  std::string sni;        // server name; default: the address host
  std::string cert, key;  // optional client certificate
};

enum class ProxyProtocol { None, V1, V2 };
// Operator state of a backend (docs/health.md): drain = no new clients,
// maint = out of rotation and not checked. Applied at start and when a reload
// changes it.
enum class BackendAdmin { Ready, Drain, Maint };

struct Backend {
  std::string name;
  Endpoint address;
  uint32_t weight = 1;  // 1..256; 0 is not allowed (use drain/maint)
  ProxyProtocol proxy_protocol = ProxyProtocol::None;
  std::optional<BackendTls> tls;
  BackendAdmin admin = BackendAdmin::Ready;
  // The broker's WebSocket port on the same host (with `tls`: wss), for
  // listeners with websocket.to_backend "websocket". 0: none.
  uint16_t websocket_port = 0;
  // The file set these keys itself: then they win over an admin API override
  // on reload (docs/admin-api.md "Which wins").
  bool weight_given = false;
  bool admin_given = false;
  // Not a config key: the rank of an SRV target's priority (lb/srv_plan.hpp);
  // 0 for every other backend. A backend takes new clients only while no
  // healthy backend of a lower tier may take that client (PlaceStage::choose).
  uint32_t tier = 0;
};

enum class Algorithm { LeastConn, RoundRobin, ConsistentHash };
enum class Affinity { None, ClientId };

struct Balance {
  Algorithm algorithm = Algorithm::LeastConn;
  Affinity affinity = Affinity::ClientId;
  uint32_t affinity_max_entries = 1'000'000;   // LRU bound of the affinity table (entries)
  uint64_t affinity_max_bytes = 128ull << 20;  // and its bound in bytes (docs/config.md)
  uint32_t affinity_ttl_s = 86'400;            // refreshed on use
  double hash_balance_factor = 0.25;           // consistent-hash: epsilon of bounded load
  uint32_t retries = 2;                        // backend attempts after the first
  uint32_t backend_connect_timeout_ms = 2000;
  uint32_t retry_backoff_ms = 100;  // before retrying a backend already tried (doubles, jitter)
};

enum class OnDown { Keep, ShutdownSessions };
enum class CheckMode { Persistent, Reconnect };

struct Health {
  bool enabled = true;  // false: no checks; every backend counts as Up
  uint32_t interval_ms = 2000;
  uint32_t timeout_ms = 1000;
  uint32_t rise = 2;
  uint32_t fall = 3;
  CheckMode mode = CheckMode::Persistent;  // keep the check session, PINGREQ on it
  uint8_t protocol_level = 4;              // 4 (3.1.1) or 5 (5.0)
  uint16_t keep_alive_s = 60;              // keep-alive announced in the check CONNECT
  std::optional<std::string> username;
  std::optional<std::string> password;
  bool accept_refusal = false;  // CONNACK refusals proving liveness count as pass
  std::string client_id_prefix = "mqttlb-hc-";
  uint32_t slowstart_ms = 0;
  OnDown on_down = OnDown::Keep;
  uint32_t shutdown_spread_ms = 10'000;
};

struct Limits {
  uint32_t max_connections = 0;            // 0 = derived from the open-files limit at start
  uint32_t max_connections_per_ip = 0;     // 0 = unlimited
  uint32_t max_connect_bytes = 64 * 1024;  // 1 KiB .. 1 MiB
  uint32_t connect_timeout_ms = 5000;      // time to receive the whole CONNECT
  uint32_t idle_grace_ms = 5000;           // added to 1.5 x keep-alive
  uint32_t keepalive0_idle_cap_s = 3600;   // idle timeout when keep-alive is 0
  uint32_t shutdown_grace_ms = 10'000;     // SIGTERM: sessions may drain this long
  // Placement (docs/operations.md "Placement"): the broker's CONNACK must come
  // this soon after the CONNECT was forwarded, or the next backend is tried.
  uint32_t backend_connack_timeout_ms = 3000;
  uint32_t backend_max_connecting = 64;      // per backend, all workers: connect..CONNACK in flight
  uint32_t backend_queue = 4096;             // per backend: clients waiting for such a slot
  uint32_t backend_queue_timeout_ms = 5000;  // longest wait in that queue
  // Bytes held for CONNECT buffers and queued writes, all sessions together;
  // when spent, new connections are refused. 0 = no budget.
  uint64_t memory_budget_bytes = 512ull << 20;
  // Admission before the expensive part (docs/operations.md "Admission"):
  // token buckets for new connections at accept, globally and per source
  // prefix; 0 = off.
  struct ConnectRate {
    uint32_t global_per_s = 0;
    uint32_t per_ip_per_s = 0;
    uint32_t burst = 0;  // bucket size; 0 = one second's worth
    uint8_t ip_prefix_v4 = 32;
    uint8_t ip_prefix_v6 = 64;
  } connect_rate;
  // A client id that connects more than max_connects times in window_s goes
  // to a penalty box: penalty_s, doubling each time, at most max_penalty_s. 0 = off.
  struct Flap {
    uint32_t max_connects = 0;
    uint32_t window_s = 60;
    uint32_t penalty_s = 30;
    uint32_t max_penalty_s = 3600;
  } flap;
  uint32_t tls_handshake_rate = 0;  // per worker per second; 0 = unlimited
  // A listener removed by a reload stops accepting; its sessions may go on
  // this long, then they are closed.
  uint32_t drain_timeout_ms = 600'000;
};

struct Metrics {
  std::optional<Endpoint> bind;  // absent: no metrics endpoint
};

// A routing rule (docs/config.md "routes"): clients that match every given
// condition are placed only on `backends`.
struct Route {
  std::optional<std::string> client_id_prefix;
  std::optional<std::string> username;
  std::optional<std::string> listener;
  // source CIDR: address (16 bytes, IPv4 as v4-mapped) and prefix length (0..128)
  std::optional<std::pair<std::array<uint8_t, 16>, uint8_t>> source;
  std::string source_text;  // as written, for logs and to_json
  std::vector<std::string> backends;
};

// The admin API (docs/admin-api.md). Absent: off.
struct Admin {
  std::optional<Endpoint> bind;  // TCP address, or
  std::string unix_path;         // "unix:PATH": a unix socket
  std::string token_file;        // a bearer token, read at load; empty: no token
  bool enabled() const { return bind.has_value() || !unix_path.empty(); }
};

// How sessions leave a backend a reload removed (and the defaults of an
// admin evacuation).
struct Evacuation {
  uint32_t rate_per_s = 100;
  uint32_t deadline_s = 120;
};

// Binary upgrade (docs/operations.md "Upgrading mqttlb").
struct Upgrade {
  uint32_t evict_rate_per_s = 200;  // the old process moves its sessions at this rate
  uint32_t deadline_s = 120;        // then closes what is left and exits
};

// Scale-out (docs/scale-out.md): the client -> backend table shared by every
// replica through Redis. Absent (redis empty): each replica keeps its own.
struct RedisUrl {
  std::string host;  // IP address or host name (resolved by the store's own thread)
  uint16_t port = 6379;
  uint32_t db = 0;
  std::string user, password;  // AUTH [user] password when password is set
};

struct AffinityStore {
  std::string redis;                   // "redis://[[user]:password@]host[:port][/db]" as given
  RedisUrl url;                        // parsed from `redis`
  std::string key_prefix = "mqttlb:";  // keys and the pub/sub channel start with it
  uint32_t timeout_ms = 1000;          // connect, or a reply later than this: Redis is down
  uint32_t reconnect_max_ms = 5000;    // reconnect back-off doubles from 100 ms up to this
  uint32_t queue = 10'000;             // placements waiting for Redis (then dropped, counted)
  uint32_t resync_batch = 500;         // keys per SCAN step when (re)synchronising
  uint32_t resync_interval_ms = 10;    // pause between two SCAN steps
  bool enabled() const { return !redis.empty(); }
};

// A DNS name whose records are backends (docs/scale-out.md "Discovery").
struct Discovery {
  enum class Type { A, AAAA, SRV };
  std::string dns;
  Type type = Type::A;
  uint16_t port = 1883;             // A / AAAA: the backends' port (SRV records carry their own)
  uint32_t interval_ms = 5000;      // re-query period; shorter when the records' TTL is
  uint32_t timeout_ms = 2000;       // one query, all tries
  std::vector<Endpoint> resolvers;  // DNS servers (ip:port); empty: /etc/resolv.conf
  Backend templ;                    // "template": every backend key but name and address
};

// How a placed plain-TCP session's bytes are forwarded (docs/forwarding.md):
// the userspace pump, the kernel (BPF sockhash; the programs must load, or
// mqttlb does not start), or the kernel when it can and the pump otherwise.
enum class Forwarding { Userspace, Kernel, Auto };

struct Config {
  std::vector<Listener> listeners;
  std::vector<Backend> backends;  // may be empty when discovery is given
  AffinityStore affinity_store;
  std::vector<Discovery> discovery;
  Balance balance;
  Health health;
  Limits limits;
  std::vector<Route> routes;  // in order; the first that matches wins
  Metrics metrics;
  Admin admin;
  Evacuation evacuation;
  Upgrade upgrade;
  uint32_t workers = 0;                           // 0 = number of cores
  Forwarding forwarding = Forwarding::Userspace;  // a reload applies it to new sessions
};

}  // namespace conf
