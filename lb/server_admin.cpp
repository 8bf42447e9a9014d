// Server: the admin API's operations (docs/admin-api.md).
#include <chrono>
#include <functional>
#include <future>

#include "lb/log.hpp"
#include "lb/server.hpp"
#include "lb/worker.hpp"

namespace lb {

bool Server::set_admin_override(const std::string& backend, conf::BackendAdmin a) {
  std::lock_guard<std::mutex> g(snap_mu_);
  if (!states_.count(backend)) return false;
  admin_override_[backend] = a;
  snap_ = build(cfg_);
  return true;
}

bool Server::set_weight_override(const std::string& backend, uint32_t weight) {
  std::lock_guard<std::mutex> g(snap_mu_);
  if (!states_.count(backend)) return false;
  weight_override_[backend] = weight;
  snap_ = build(cfg_);
  return true;
}

bool Server::start_evacuation(std::shared_ptr<Evacuation> ev) {
  {
    std::lock_guard<std::mutex> g(evac_mu_);
    auto& slot = evacuations_[ev->backend];
    if (slot && !slot->done() && !slot->cancelled.load()) return false;
    slot = ev;
  }
  std::vector<Worker*> ws = all_workers();
  ev->workers_left.store(static_cast<int>(ws.size()));
  for (Worker* w : ws) w->post([ev](Worker& w) { w.evacuate(ev); });
  return true;
}

bool Server::cancel_evacuation(const std::string& backend) {
  std::lock_guard<std::mutex> g(evac_mu_);
  auto it = evacuations_.find(backend);
  if (it == evacuations_.end() || it->second->done() || it->second->cancelled.load()) return false;
  it->second->cancelled.store(true);
  return true;
}

std::shared_ptr<Evacuation> Server::evacuation(const std::string& backend) const {
  std::lock_guard<std::mutex> g(evac_mu_);
  auto it = evacuations_.find(backend);
  return it == evacuations_.end() ? nullptr : it->second;
}

int64_t Server::backend_active(const std::string& backend) const {
  std::lock_guard<std::mutex> g(snap_mu_);
  auto it = states_.find(backend);
  return it == states_.end() ? 0 : it->second->active.load(std::memory_order_relaxed);
}

std::vector<std::shared_ptr<Evacuation>> Server::evacuations() const {
  std::lock_guard<std::mutex> g(evac_mu_);
  std::vector<std::shared_ptr<Evacuation>> v;
  for (auto& [n, e] : evacuations_) v.push_back(e);
  return v;
}

namespace {
// Runs fn on a worker's loop and waits for its answer (not on a data loop).
template <typename T>
std::optional<T> ask(Worker& w, std::function<T(Worker&)> fn, uint32_t timeout_ms) {
  auto p = std::make_shared<std::promise<T>>();
  auto f = p->get_future();
  w.post([p, fn = std::move(fn)](Worker& w) { p->set_value(fn(w)); });
  if (f.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready)
    return std::nullopt;
  return f.get();
}
}  // namespace

std::optional<Session::Info> Server::client_info(const ClientKey& key, uint32_t timeout_ms) {
  auto ref = registry_.find(key);
  Worker* w = ref ? worker(ref->worker) : nullptr;
  if (!w) return std::nullopt;
  uint64_t id = ref->session;
  auto r = ask<std::optional<Session::Info>>(
      *w, [id](Worker& w) { return w.session_info(id); }, timeout_ms);
  return r ? *r : std::nullopt;
}

bool Server::kick_client(const ClientKey& key, uint32_t timeout_ms) {
  auto ref = registry_.find(key);
  Worker* w = ref ? worker(ref->worker) : nullptr;
  if (!w) return false;
  uint64_t id = ref->session;
  auto r = ask<bool>(
      *w, [id](Worker& w) { return w.kick(id); }, timeout_ms);
  return r && *r;
}

bool Server::workers_alive(uint32_t timeout_ms) {
  for (Worker* w : all_workers())
    if (!ask<bool>(
            *w, [](Worker&) { return true; }, timeout_ms))
      return false;
  return true;
}

}  // namespace lb
