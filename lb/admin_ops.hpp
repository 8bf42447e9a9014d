// What the admin API can do to a running mqttlb, independent of HTTP: the
// HTTP server (lb/admin_http.*) maps paths and methods onto these calls, and
// lb/control.* implements them over the Server, the health Monitor and the
// main loop. Every call is thread-safe and may block briefly (it waits for
// the worker loops with a deadline); none runs on a data loop.
//
// Replies are JSON bodies with an HTTP status: 200/202 on success, 400 (bad
// request body), 404 (no such backend / client), 409 (conflicts: an
// evacuation already running, an upgrade while one drains), 503 (readyz);
// errors are {"error": "..."} (docs/admin-api.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace lb {

struct AdminReply {
  int status = 200;
  nlohmann::json body = nlohmann::json::object();
  static AdminReply error(int status, std::string message) {
    return {status, {{"error", std::move(message)}}};
  }
};

class AdminOps {
 public:
  virtual ~AdminOps() = default;

  virtual AdminReply healthz() = 0;  // 200 while the loops run
  virtual AdminReply readyz() = 0;   // 200 when ready to take clients, else 503 with the reason

  virtual AdminReply backends() = 0;  // GET /api/v1/backends
  // POST /api/v1/backends/{name} {"state": "ready"|"drain"|"maint", "weight": N}
  virtual AdminReply set_backend(const std::string& name, const nlohmann::json& body) = 0;
  // POST /api/v1/backends/{name}/evacuate {"rate_per_s", "deadline_s", "reason",
  // "server_reference"} -> 202; DELETE cancels.
  virtual AdminReply evacuate(const std::string& name, const nlohmann::json& body) = 0;
  virtual AdminReply cancel_evacuation(const std::string& name) = 0;

  virtual AdminReply client(const std::string& client_id) = 0;  // GET /api/v1/clients/{id}
  virtual AdminReply kick(const std::string& client_id) = 0;    // DELETE /api/v1/clients/{id}

  virtual AdminReply reload() = 0;   // POST /api/v1/reload: 200 with what changed, 400 with errors
  virtual AdminReply config() = 0;   // GET /api/v1/config, secrets redacted
  virtual AdminReply upgrade() = 0;  // POST /api/v1/upgrade (binary upgrade)

  // Everything the status page shows, in one call: listeners, backends (as
  // backends()), evacuations, recent reloads, uptime, version.
  virtual AdminReply status() = 0;
  // The Prometheus exposition of the process's registry (for /metrics here).
  virtual std::string metrics_text() = 0;
  // One audit line per mutation (who, what, result); the HTTP layer calls it.
  virtual void audit(const std::string& line) = 0;
};

}  // namespace lb
