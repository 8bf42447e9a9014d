#include "lb/control.hpp"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

#include "conf/serialize.hpp"
#include "health/monitor.hpp"
#include "lb/client_key.hpp"
#include "lb/log.hpp"

namespace lb {

using json = nlohmann::json;

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string iso8601(int64_t ms) {
  if (ms <= 0) return "";
  time_t t = static_cast<time_t>(ms / 1000);
  tm g;
  gmtime_r(&t, &g);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", g.tm_year + 1900,
                g.tm_mon + 1, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

const char* admin_name(conf::BackendAdmin a) {
  return a == conf::BackendAdmin::Drain   ? "drain"
         : a == conf::BackendAdmin::Maint ? "maint"
                                          : "ready";
}

health::Admin to_health(conf::BackendAdmin a) {
  return a == conf::BackendAdmin::Drain   ? health::Admin::Drain
         : a == conf::BackendAdmin::Maint ? health::Admin::Maint
                                          : health::Admin::Ready;
}

// The health thread publishes an admin state in the backend's Status a
// moment after set_admin_state (its own loop); the API answers once new
// clients see it, so `drain b1` followed by a connect never lands on b1
// (bounded: 1 s).
void await_admin(const std::string& name, const Server& server, conf::BackendAdmin a) {
  std::shared_ptr<health::Status> st;
  for (const auto& b : server.snapshot()->backends)
    if (b.cfg.name == name) st = b.state->status;
  if (!st) return;
  auto applied = [&] {
    health::State s = st->state.load();
    return a == conf::BackendAdmin::Drain ? s != health::State::Up
           : a == conf::BackendAdmin::Maint
               ? s == health::State::Maint
               : s != health::State::Drain && s != health::State::Maint;
  };
  for (int i = 0; i < 1000 && !applied(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

const RuntimeBackend* find(const Snapshot& s, const std::string& name) {
  for (const auto& b : s.backends)
    if (b.cfg.name == name) return &b;
  return nullptr;
}

}  // namespace

Control::Control(Server& server, health::Monitor& monitor, prometheus::Registry& registry)
    : server_(server), monitor_(monitor), registry_(registry), started_wall_ms_(wall_ms()) {}

void Control::set_reloader(std::function<ReloadOutcome()> fn) {
  std::lock_guard<std::mutex> g(mu_);
  reloader_ = std::move(fn);
}

void Control::set_upgrader(std::function<AdminReply()> fn) {
  std::lock_guard<std::mutex> g(mu_);
  upgrader_ = std::move(fn);
}

void Control::note_reload(const ReloadOutcome& r) {
  std::lock_guard<std::mutex> g(mu_);
  reloads_.push_back(r);
  while (reloads_.size() > 10) reloads_.pop_front();
}

json Control::to_json(const ReloadOutcome& r) {
  json j = {{"ok", r.ok}, {"trigger", r.trigger}, {"time", iso8601(r.wall_ms)}};
  if (r.ok)
    j["changed"] = r.changed;
  else
    j["errors"] = r.errors;
  return j;
}

json Control::to_json(const Evacuation& e) {
  uint64_t total = e.total.load(), moved = e.moved.load();
  const char* state = e.cancelled.load() ? "cancelled" : e.done() ? "done" : "running";
  json j = {{"backend", e.backend},
            {"state", state},
            {"rate_per_s", e.rate_per_s},
            {"deadline_s", e.deadline_ms / 1000},
            {"reason", e.reason == 0x8B ? "server-shutting-down" : "use-another-server"},
            {"started", iso8601(e.started_wall_ms)},
            {"sessions", total},
            {"moved", moved},
            {"remaining", total > moved ? total - moved : 0}};
  if (!e.server_reference.empty()) j["server_reference"] = e.server_reference;
  return j;
}

// ---- health ---------------------------------------------------------------------

AdminReply Control::healthz() {
  if (!server_.workers_alive()) return AdminReply::error(503, "a worker loop does not answer");
  return {200, {{"status", "ok"}}};
}

AdminReply Control::readyz() {
  if (!server_.started()) return {503, {{"ready", false}, {"reason", "not listening yet"}}};
  if (server_.stopping()) return {503, {{"ready", false}, {"reason", "draining: shutting down"}}};
  if (server_.handing_over())
    return {503, {{"ready", false}, {"reason", "draining: a new generation took over (upgrade)"}}};
  for (const auto& b : server_.snapshot()->backends)
    if (b.state->status->accepts_new()) return {200, {{"ready", true}}};
  return {503, {{"ready", false}, {"reason", "no backend is up"}}};
}

// ---- backends -------------------------------------------------------------------------

// The lowest SRV tier (conf::Backend::tier) with a backend taking new
// clients; UINT32_MAX when none is up. A backend of a higher tier is on
// standby (ignoring routes: a route's pool may still use it).
static uint32_t active_tier(const Snapshot& s) {
  uint32_t t = UINT32_MAX;
  for (const auto& b : s.backends)
    if (b.state->status->accepts_new()) t = std::min(t, b.cfg.tier);
  return t;
}

json Control::backend_json(const RuntimeBackend& b, int64_t now_ms, uint32_t tier) const {
  const health::Status& st = *b.state->status;
  double factor = st.weight_factor(now_ms);
  int64_t connecting = 0, queued = 0;
  for (const auto& lane : b.state->lanes) {
    connecting += lane->in_flight();  // read across threads: a snapshot for people, not a count
    queued += lane->queued();
  }
  json j = {{"name", b.cfg.name},
            {"address", b.cfg.address.str()},
            {"state", health::to_string(st.state.load())},
            {"admin", admin_name(b.cfg.admin)},
            {"weight", b.cfg.weight},
            {"effective_weight", b.cfg.weight * factor},
            {"tier", b.cfg.tier},
            {"standby", b.cfg.tier > tier},
            {"sessions", b.state->active.load()},
            {"connecting", connecting},
            {"queued", queued}};
  health::Status::LastCheck c = st.last_check();
  if (c.valid)
    j["last_check"] = {{"result", c.pass ? "pass" : "fail"},
                       {"reason", c.reason},
                       {"latency_s", c.seconds},
                       {"time", iso8601(c.wall_ms)}};
  else
    j["last_check"] = nullptr;
  auto ev = server_.evacuation(b.cfg.name);
  j["evacuation"] = ev ? to_json(*ev) : json(nullptr);
  return j;
}

AdminReply Control::backends() {
  auto snap = server_.snapshot();
  json list = json::array();
  int64_t now = steady_ms();
  const uint32_t tier = active_tier(*snap);
  for (const auto& b : snap->backends) list.push_back(backend_json(b, now, tier));
  return {200, {{"backends", list}}};
}

AdminReply Control::set_backend(const std::string& name, const json& body) {
  auto snap = server_.snapshot();
  if (!find(*snap, name)) return AdminReply::error(404, "no backend named \"" + name + "\"");
  if (!body.is_object()) return AdminReply::error(400, "expected a JSON object");
  for (auto it = body.begin(); it != body.end(); ++it)
    if (it.key() != "state" && it.key() != "weight")
      return AdminReply::error(400, "unknown key \"" + it.key() + "\" (state, weight)");
  std::optional<conf::BackendAdmin> state;
  if (body.contains("state")) {
    const json& s = body["state"];
    std::string v = s.is_string() ? s.get<std::string>() : "";
    if (v == "ready")
      state = conf::BackendAdmin::Ready;
    else if (v == "drain")
      state = conf::BackendAdmin::Drain;
    else if (v == "maint")
      state = conf::BackendAdmin::Maint;
    else
      return AdminReply::error(400, "state must be \"ready\", \"drain\" or \"maint\"");
  }
  std::optional<uint32_t> weight;
  if (body.contains("weight")) {
    const json& w = body["weight"];
    if (!w.is_number_integer() || w.get<int64_t>() < 1 || w.get<int64_t>() > 256)
      return AdminReply::error(400, "weight must be an integer 1..256");
    weight = w.get<uint32_t>();
  }
  if (!state && !weight) return AdminReply::error(400, "nothing to change (state, weight)");
  if (weight) server_.set_weight_override(name, *weight);
  if (state) {
    server_.set_admin_override(name, *state);
    monitor_.set_admin_state(name, to_health(*state));
    await_admin(name, server_, *state);
  }
  auto now_snap = server_.snapshot();
  const RuntimeBackend* b = find(*now_snap, name);
  return {200, b ? backend_json(*b, steady_ms(), active_tier(*now_snap)) : json::object()};
}

AdminReply Control::evacuate(const std::string& name, const json& body) {
  auto snap = server_.snapshot();
  const RuntimeBackend* b = find(*snap, name);
  if (!b) return AdminReply::error(404, "no backend named \"" + name + "\"");
  json req = body.is_null() ? json::object() : body;
  if (!req.is_object()) return AdminReply::error(400, "expected a JSON object");
  auto ev = std::make_shared<Evacuation>();
  ev->backend = name;
  ev->rate_per_s = snap->cfg.evacuation.rate_per_s;
  ev->deadline_ms = uint64_t{snap->cfg.evacuation.deadline_s} * 1000;
  for (auto it = req.begin(); it != req.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "rate_per_s") {
      if (!v.is_number() || v.get<double>() <= 0 || v.get<double>() > 1e6)
        return AdminReply::error(400, "rate_per_s must be a number in (0, 1000000]");
      ev->rate_per_s = v.get<double>();
    } else if (k == "deadline_s") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 86400)
        return AdminReply::error(400, "deadline_s must be an integer 1..86400");
      ev->deadline_ms = v.get<uint64_t>() * 1000;
    } else if (k == "reason") {
      std::string r = v.is_string() ? v.get<std::string>() : "";
      if (r == "use-another-server")
        ev->reason = 0x9C;
      else if (r == "server-shutting-down")
        ev->reason = 0x8B;
      else
        return AdminReply::error(
            400, "reason must be \"use-another-server\" or \"server-shutting-down\"");
    } else if (k == "server_reference") {
      if (!v.is_string() || v.get<std::string>().size() > 512)
        return AdminReply::error(400, "server_reference must be a string of at most 512 bytes");
      ev->server_reference = v.get<std::string>();
    } else {
      return AdminReply::error(
          400, "unknown key \"" + k + "\" (rate_per_s, deadline_s, reason, server_reference)");
    }
  }
  ev->started_wall_ms = wall_ms();
  // No new clients meanwhile: reconnecting devices go to the other backends,
  // and their affinity is rewritten when those accept them.
  conf::BackendAdmin before = b->cfg.admin;
  if (!server_.start_evacuation(ev))
    return AdminReply::error(409, "an evacuation of \"" + name + "\" is already running");
  {
    std::lock_guard<std::mutex> g(mu_);
    before_evacuation_[name] = before;
  }
  if (before == conf::BackendAdmin::Ready) {
    server_.set_admin_override(name, conf::BackendAdmin::Drain);
    monitor_.set_admin_state(name, health::Admin::Drain);
    await_admin(name, server_, conf::BackendAdmin::Drain);
  }
  return {202, to_json(*ev)};
}

AdminReply Control::cancel_evacuation(const std::string& name) {
  if (!find(*server_.snapshot(), name))
    return AdminReply::error(404, "no backend named \"" + name + "\"");
  if (!server_.cancel_evacuation(name))
    return AdminReply::error(409, "no evacuation of \"" + name + "\" is running");
  conf::BackendAdmin before = conf::BackendAdmin::Ready;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = before_evacuation_.find(name); it != before_evacuation_.end())
      before = it->second;
  }
  server_.set_admin_override(name, before);
  monitor_.set_admin_state(name, to_health(before));
  await_admin(name, server_, before);
  auto ev = server_.evacuation(name);
  return {200, ev ? to_json(*ev) : json::object()};
}

// ---- clients ---------------------------------------------------------------------------

AdminReply Control::client(const std::string& client_id) {
  auto info = server_.client_info(client_key(client_id));
  if (!info) return AdminReply::error(404, "no connected client with that id");
  const char* version = info->protocol_level == 5   ? "5.0"
                        : info->protocol_level == 3 ? "3.1"
                                                    : "3.1.1";
  json j = {{"client_id", client_id},
            {"backend", info->backend},
            {"connected_since", iso8601(info->connected_since_ms)},
            {"peer", info->peer},
            {"listener", info->listener},
            {"protocol_version", version},
            {"keep_alive_s", info->keep_alive},
            {"forwarding", info->forwarding}};
  if (!info->tls_version.empty())
    j["tls"] = {{"version", info->tls_version},
                {"client_subject", info->tls_subject},
                {"record_layer", info->tls_record_layer}};
  else
    j["tls"] = nullptr;
  return {200, j};
}

AdminReply Control::kick(const std::string& client_id) {
  if (!server_.kick_client(client_key(client_id)))
    return AdminReply::error(404, "no connected client with that id");
  return {200, {{"kicked", client_id}}};
}

// ---- config, reload, upgrade -----------------------------------------------------------------

AdminReply Control::reload() {
  std::function<ReloadOutcome()> fn;
  {
    std::lock_guard<std::mutex> g(mu_);
    fn = reloader_;
  }
  if (!fn) return AdminReply::error(503, "reloads are not available yet");
  ReloadOutcome r = fn();
  return {r.ok ? 200 : 400, to_json(r)};
}

AdminReply Control::config() {
  return {200, conf::to_json(server_.snapshot()->cfg, /*redact=*/true)};
}

AdminReply Control::upgrade() {
  std::function<AdminReply()> fn;
  {
    std::lock_guard<std::mutex> g(mu_);
    fn = upgrader_;
  }
  if (!fn) return AdminReply::error(503, "binary upgrade is not available in this process");
  return fn();
}

// ---- status -----------------------------------------------------------------------------

AdminReply Control::status() {
  auto snap = server_.snapshot();
  json listeners = json::array();
  for (const auto& l : snap->cfg.listeners)
    listeners.push_back({{"name", l.name}, {"bind", l.bind.str()}, {"tls", l.tls.has_value()}});
  json evs = json::array();
  for (const auto& e : server_.evacuations()) evs.push_back(to_json(*e));
  json reloads = json::array();
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto it = reloads_.rbegin(); it != reloads_.rend(); ++it) reloads.push_back(to_json(*it));
  }
  json j = {{"version", MQTTLB_VERSION},
            {"uptime_s", (wall_ms() - started_wall_ms_) / 1000},
            {"ready", readyz().status == 200},
            {"connections", server_.active_connections()},
            {"listeners", listeners},
            {"backends", backends().body["backends"]},
            {"evacuations", evs},
            {"reloads", reloads}};
  return {200, j};
}

std::string Control::metrics_text() {
  return prometheus::TextSerializer().Serialize(registry_.Collect());
}

void Control::audit(const std::string& line) {
  logf(LogLevel::Info, "audit: %s", line.c_str());
}

}  // namespace lb
