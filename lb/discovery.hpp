// Backends from DNS (docs/scale-out.md "Discovery"): every discovery[] entry's
// name is resolved with c-ares (A, AAAA or SRV, with the records' TTLs) and
// each address becomes a backend named after its record:
//   A / AAAA: DNS-ADDRESS-PORT          e.g. brokers.mqtt.svc-10.0.0.7-1883
//   SRV:      DNS-TARGET-ADDRESS-PORT   e.g. _mqtt._tcp.x-b1.x-10.0.0.7-1883
// with the entry's template for every other key. SRV (RFC 2782, see
// lb/srv_plan.hpp): every target is resolved with A (AAAA when it has no A
// record), one backend per address; its priority's rank is the backend's
// tier (failover order), its weight, scaled to 1..256, the backend's weight
// (the template's weight is not used). The result goes to
// `on_result` (Server::set_discovered). An empty or failed answer keeps the
// last good set (counted, logged once until it answers again); the name is
// asked again after min(interval_ms, TTL) (not sooner than 1 s, unless
// interval_ms is).
//
// Thread: one thread of its own running a libuv loop; c-ares sockets are
// driven by uv_poll handles (ares sock_state_cb) and its timeouts by a timer.
// on_result runs on that thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace lb {

struct DiscoveryMetrics {
  explicit DiscoveryMetrics(prometheus::Registry& reg);
  prometheus::Family<prometheus::Gauge>& backends;   // mqttlb_discovery_backends{discovery}
  prometheus::Family<prometheus::Counter>& lookups;  // mqttlb_discovery_lookups_total
};

class Discovery {
 public:
  using ResultFn = std::function<void(const std::string& source, std::vector<conf::Backend>)>;
  Discovery(std::vector<conf::Discovery> entries, ResultFn on_result, DiscoveryMetrics& metrics);
  ~Discovery();  // stop()
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  // Starts the thread; every entry is asked at once.
  bool start(std::string& err);
  // Blocks until every entry has had its first answer (or failure), or
  // max_ms passed. True when all have.
  bool wait_first(uint32_t max_ms);
  void stop();  // idempotent; joins the thread

  // The identity of an entry's backends across reloads (Server::set_discovered).
  static std::string source_id(const conf::Discovery& d);
  // The backend name for an address record (pure; tests use it).
  static std::string backend_name(const conf::Discovery& d, const std::string& host, uint16_t port);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb
