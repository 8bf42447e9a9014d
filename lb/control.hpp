// lb::Control: the admin operations (lb/admin_ops.hpp) over the running
// process — the Server (workers, snapshot, tables), the health Monitor
// (admin states) and the main loop (reloads, upgrade). Thread-safe; called
// from the admin HTTP server's threads, never from a data loop.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "lb/admin_ops.hpp"
#include "lb/server.hpp"

namespace health {
class Monitor;
}
namespace prometheus {
class Registry;
}

namespace lb {

// One reload, however it was asked for.
struct ReloadOutcome {
  bool ok = false;
  std::vector<std::string> errors;   // "JSON-POINTER: message" when !ok
  std::vector<std::string> changed;  // conf::diff, when ok
  std::string trigger;               // "SIGHUP", "api"
  int64_t wall_ms = 0;
};

class Control final : public AdminOps {
 public:
  Control(Server& server, health::Monitor& monitor, prometheus::Registry& registry);

  // Wiring (main thread, before the admin server starts): how to reload on the
  // main loop (waits for the result), how to start a binary upgrade.
  void set_reloader(std::function<ReloadOutcome()> fn);
  void set_upgrader(std::function<AdminReply()> fn);
  // Every reload (SIGHUP or API) is noted here for the status page.
  void note_reload(const ReloadOutcome& r);
  // The health monitor's view of every backend, with operator overrides.
  void sync_monitor();

  AdminReply healthz() override;
  AdminReply readyz() override;
  AdminReply backends() override;
  AdminReply set_backend(const std::string& name, const nlohmann::json& body) override;
  AdminReply evacuate(const std::string& name, const nlohmann::json& body) override;
  AdminReply cancel_evacuation(const std::string& name) override;
  AdminReply client(const std::string& client_id) override;
  AdminReply kick(const std::string& client_id) override;
  AdminReply reload() override;
  AdminReply config() override;
  AdminReply upgrade() override;
  AdminReply status() override;
  std::string metrics_text() override;
  void audit(const std::string& line) override;

  static nlohmann::json to_json(const ReloadOutcome& r);
  static nlohmann::json to_json(const Evacuation& e);

 private:
  // tier: the lowest tier taking new clients (active_tier in control.cpp).
  nlohmann::json backend_json(const RuntimeBackend& b, int64_t now_ms, uint32_t tier) const;

  Server& server_;
  health::Monitor& monitor_;
  prometheus::Registry& registry_;
  const int64_t started_wall_ms_;

  std::mutex mu_;  // guards the members below
  std::function<ReloadOutcome()> reloader_;
  std::function<AdminReply()> upgrader_;
  std::deque<ReloadOutcome> reloads_;  // the last 10
  // Admin state a backend had before its evacuation (restored on cancel).
  std::map<std::string, conf::BackendAdmin> before_evacuation_;
};

}  // namespace lb
