// The shared affinity store on Redis (docs/scale-out.md "The store").
//
// Thread: one thread of its own running a libuv loop with two hiredis async
// connections (commands; pub/sub). Workers never wait for it: placed() puts
// the placement in a bounded queue (full: dropped, counted) and wakes the
// loop, which writes it behind (SET key value EX ttl) and publishes it. Every
// replica subscribes and applies the others' placements to its local table
// (StoreSink::apply_remote), closing a stale session of the same client on
// another backend (cross-replica takeover) and telling the placing replica.
// Own messages are recognised by the random replica id and ignored.
//
// Redis down or slow (no connection within timeout_ms, a reply later than
// that, a dropped connection): the store counts it, logs it once, serves
// nothing (the local table goes on), keeps the placements made meanwhile (up
// to `queue`), reconnects with back-off, and once back writes them and reads
// the whole shared table again (SCAN, resync_batch keys per step, paced).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "conf/config.hpp"
#include "lb/store.hpp"

namespace lb {

// The store's metric families (docs/metrics.md), registered once per process
// (a reload that replaces the store keeps them).
struct StoreMetrics {
  explicit StoreMetrics(prometheus::Registry& reg);
  prometheus::Gauge* up = nullptr;
  prometheus::Gauge* queue_length = nullptr;
  prometheus::Counter* err_connect = nullptr;  // errors_total{kind}
  prometheus::Counter* err_lost = nullptr;
  prometheus::Counter* err_timeout = nullptr;
  prometheus::Counter* err_reply = nullptr;
  prometheus::Counter* dropped_queue = nullptr;   // dropped_total{reason="queue_full"}
  prometheus::Counter* dropped_outage = nullptr;  // reason="outage_buffer_full"
  prometheus::Counter* writes = nullptr;
  prometheus::Counter* published = nullptr;  // messages_total{direction="published"}
  prometheus::Counter* received = nullptr;   // direction="received" (other replicas', applied)
  prometheus::Counter* invalid = nullptr;    // direction="invalid" (ignored)
  prometheus::Counter* resyncs = nullptr;
  prometheus::Counter* resync_entries = nullptr;
  prometheus::Counter* remote_takeovers = nullptr;
};

class RedisStore final : public AffinityStore {
 public:
  // ttl_s: balance.affinity_ttl_s; resync_max: entries read back at most
  // (the local table's capacity). sink and metrics outlive the store.
  RedisStore(const conf::AffinityStore& cfg, uint32_t ttl_s, uint64_t resync_max, StoreSink& sink,
             StoreMetrics& metrics);
  ~RedisStore() override;  // stop()
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  bool start(std::string& err);
  // Closes the connections and joins the thread. Idempotent; placed() after
  // it drops silently.
  void stop();
  void placed(const ClientKey& key, uint64_t backend) override;  // any thread
  void set_ttl(uint32_t ttl_s);                                  // any thread (reload)
  uint64_t replica_id() const;

  struct Impl;  // loop-thread state (store_redis.cpp)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb
