#include "lb/scale_out.hpp"

#include "conf/serialize.hpp"
#include "lb/discovery.hpp"
#include "lb/log.hpp"
#include "lb/server.hpp"
#include "lb/store_redis.hpp"

namespace lb {

namespace {

nlohmann::json section(const conf::Config& c, const char* key) {
  return conf::to_json(c, false).value(key, nlohmann::json());
}

}  // namespace

ScaleOut::ScaleOut(Server& server, prometheus::Registry& registry)
    : server_(server), registry_(registry) {}

ScaleOut::~ScaleOut() {
  stop();
}

void ScaleOut::start_store(const conf::Config& cfg) {
  if (!cfg.affinity_store.enabled()) return;
  if (!store_metrics_) store_metrics_ = std::make_unique<StoreMetrics>(registry_);
  auto s = std::make_unique<RedisStore>(cfg.affinity_store, cfg.balance.affinity_ttl_s,
                                        server_.affinity().capacity(), server_, *store_metrics_);
  std::string err;
  if (!s->start(err)) {
    logf(LogLevel::Error, "%s; replicas will not share affinity", err.c_str());
    return;
  }
  store_ = std::move(s);
  server_.set_store(store_.get());
}

void ScaleOut::start_discovery(const conf::Config& cfg) {
  std::vector<std::string> sources;
  for (const auto& d : cfg.discovery) sources.push_back(Discovery::source_id(d));
  server_.retain_discovered(sources);
  if (cfg.discovery.empty()) return;
  if (!discovery_metrics_) discovery_metrics_ = std::make_unique<DiscoveryMetrics>(registry_);
  Server* srv = &server_;
  auto d = std::make_unique<Discovery>(
      cfg.discovery,
      [srv](const std::string& source, std::vector<conf::Backend> b) {
        srv->set_discovered(source, std::move(b));
      },
      *discovery_metrics_);
  std::string err;
  if (!d->start(err)) {
    logf(LogLevel::Error, "%s; discovered backends stay as they are", err.c_str());
    return;
  }
  discovery_ = std::move(d);
}

bool ScaleOut::start(const conf::Config& cfg, uint32_t wait_ms, std::string& err) {
  running_ = cfg;
  start_store(cfg);
  if (cfg.affinity_store.enabled() && !store_) {
    err = "affinity store: cannot start";
    return false;
  }
  start_discovery(cfg);
  if (!cfg.discovery.empty() && !discovery_) {
    err = "discovery: cannot start";
    return false;
  }
  if (discovery_ && !discovery_->wait_first(wait_ms))
    logf(LogLevel::Warn, "discovery: not every name answered within %u ms; starting anyway",
         wait_ms);
  server_.apply_discovered();
  return true;
}

void ScaleOut::reload(const conf::Config& cfg) {
  if (section(cfg, "affinity_store") != section(running_, "affinity_store")) {
    server_.set_store(nullptr);
    if (store_) {
      store_->stop();
      retired_.push_back(std::move(store_));
    }
    start_store(cfg);
    logf(LogLevel::Info, "affinity store: %s", store_ ? "restarted with the new settings" : "off");
  } else if (store_ && cfg.balance.affinity_ttl_s != running_.balance.affinity_ttl_s) {
    store_->set_ttl(cfg.balance.affinity_ttl_s);
  }
  if (section(cfg, "discovery") != section(running_, "discovery")) {
    if (discovery_) discovery_->stop();
    discovery_.reset();
    start_discovery(cfg);  // the kept entries' backends stay until their new answer
  }
  running_ = cfg;
}

void ScaleOut::stop() {
  server_.set_store(nullptr);
  if (store_) store_->stop();
  for (auto& s : retired_) s->stop();
  if (discovery_) discovery_->stop();
}

}  // namespace lb
