// Scale-out wiring (docs/scale-out.md): the shared affinity store and DNS
// discovery, built from the config and kept in step with reloads. main.cpp
// owns one; everything else reaches the Server through its narrow hooks
// (set_store, apply_remote, set_discovered).
//
// Thread: the main thread calls every method. The store and discovery run
// threads of their own.
#pragma once

#include <memory>
#include <vector>

#include "conf/config.hpp"

namespace prometheus {
class Registry;
}

namespace lb {

class Server;
class RedisStore;
class Discovery;
struct StoreMetrics;
struct DiscoveryMetrics;

class ScaleOut {
 public:
  ScaleOut(Server& server, prometheus::Registry& registry);
  ~ScaleOut();  // stop()
  ScaleOut(const ScaleOut&) = delete;
  ScaleOut& operator=(const ScaleOut&) = delete;

  // Starts what cfg asks for; waits up to wait_ms for the first DNS answers
  // and applies them, so the first health round already checks discovered
  // backends. False (with err) when a part cannot start.
  bool start(const conf::Config& cfg, uint32_t wait_ms, std::string& err);
  // A reload: a changed affinity_store replaces the store; changed discovery
  // entries are asked again (backends of removed entries are drained).
  void reload(const conf::Config& cfg);
  // Stops the threads. Call after the workers are joined (they use the store).
  void stop();

 private:
  void start_store(const conf::Config& cfg);
  void start_discovery(const conf::Config& cfg);

  Server& server_;
  prometheus::Registry& registry_;
  std::unique_ptr<StoreMetrics> store_metrics_;  // registered with the first store
  std::unique_ptr<DiscoveryMetrics> discovery_metrics_;
  std::unique_ptr<RedisStore> store_;
  // Stores a reload replaced: stopped, kept until stop() because a worker may
  // still be inside placed() (it then drops the placement).
  std::vector<std::unique_ptr<RedisStore>> retired_;
  std::unique_ptr<Discovery> discovery_;
  conf::Config running_;
};

}  // namespace lb
