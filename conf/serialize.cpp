#include "conf/serialize.hpp"

#include <map>

namespace conf {

using json = nlohmann::json;

namespace {

const char* name(ListenerTls::Verify v) {
  switch (v) {
    case ListenerTls::Verify::Optional:
      return "optional";
    case ListenerTls::Verify::Required:
      return "required";
    default:
      return "none";
  }
}
const char* name(ProxyProtocol p) {
  return p == ProxyProtocol::V1 ? "v1" : p == ProxyProtocol::V2 ? "v2" : "none";
}
const char* name(BackendAdmin a) {
  return a == BackendAdmin::Drain ? "drain" : a == BackendAdmin::Maint ? "maint" : "ready";
}
const char* name(Algorithm a) {
  return a == Algorithm::RoundRobin       ? "round-robin"
         : a == Algorithm::ConsistentHash ? "consistent-hash"
                                          : "leastconn";
}

json listener(const Listener& l) {
  json j = {{"name", l.name}, {"bind", l.bind.str()}};
  if (l.tls)
    j["tls"] = {
        {"cert", l.tls->cert},
        {"key", l.tls->key},
        {"ca", l.tls->ca},
        {"verify_client", name(l.tls->verify_client)},
        {"record_layer",
         l.tls->record_layer == ListenerTls::RecordLayer::OpenSsl ? "openssl" : "mqttlb"},
        {"identity",
         {{"from", l.tls->identity_from == ListenerTls::IdentityFrom::SanDns   ? "san-dns"
                   : l.tls->identity_from == ListenerTls::IdentityFrom::SanUri ? "san-uri"
                                                                               : "cn"},
          {"enforce", l.tls->identity_enforce == ListenerTls::Enforce::Match     ? "match"
                      : l.tls->identity_enforce == ListenerTls::Enforce::Rewrite ? "rewrite"
                                                                                 : "off"}}}};
  if (l.websocket)
    j["websocket"] = {
        {"path", l.websocket->path},
        {"to_backend",
         l.websocket->to_backend == ListenerWebSocket::ToBackend::WebSocket ? "websocket" : "mqtt"},
        {"max_handshake_bytes", l.websocket->max_handshake_bytes}};
  return j;
}

json backend(const Backend& b) {
  json j = {{"name", b.name},
            {"address", b.address.str()},
            {"weight", b.weight},
            {"proxy_protocol", name(b.proxy_protocol)},
            {"admin", name(b.admin)}};
  if (b.websocket_port) j["websocket_port"] = b.websocket_port;
  if (b.tls)
    j["tls"] = {{"ca", b.tls->ca},
                {"verify", b.tls->verify},
                {"sni", b.tls->sni},
                {"cert", b.tls->cert},
                {"key", b.tls->key}};
  return j;
}

const char* name(Discovery::Type t) {
  return t == Discovery::Type::AAAA ? "AAAA" : t == Discovery::Type::SRV ? "SRV" : "A";
}

// The URL with its password replaced (redact) or as given.
std::string redis_url(const AffinityStore& a, bool redact) {
  if (!redact || a.url.password.empty()) return a.redis;
  auto at = a.redis.rfind('@');
  return "redis://" + a.url.user + ":<redacted>" + a.redis.substr(at);
}

json scale_out(const Config& c, json& j, bool redact) {
  if (c.affinity_store.enabled()) {
    const AffinityStore& a = c.affinity_store;
    j["affinity_store"] = {{"redis", redis_url(a, redact)},
                           {"key_prefix", a.key_prefix},
                           {"timeout_ms", a.timeout_ms},
                           {"reconnect_max_ms", a.reconnect_max_ms},
                           {"queue", a.queue},
                           {"resync_batch", a.resync_batch},
                           {"resync_interval_ms", a.resync_interval_ms}};
  }
  if (!c.discovery.empty()) {
    j["discovery"] = json::array();
    for (const auto& d : c.discovery) {
      json t = backend(d.templ);
      t.erase("name");
      t.erase("address");
      json e = {{"dns", d.dns},
                {"type", name(d.type)},
                {"interval_ms", d.interval_ms},
                {"timeout_ms", d.timeout_ms},
                {"template", t}};
      if (d.type != Discovery::Type::SRV) e["port"] = d.port;
      e["resolvers"] = json::array();
      for (const auto& r : d.resolvers) e["resolvers"].push_back(r.str());
      j["discovery"].push_back(e);
    }
  }
  return j;
}

}  // namespace

json to_json(const Config& c, bool redact) {
  json j;
  j["listeners"] = json::array();
  for (const auto& l : c.listeners) j["listeners"].push_back(listener(l));
  j["backends"] = json::array();
  for (const auto& b : c.backends) j["backends"].push_back(backend(b));
  const Balance& b = c.balance;
  j["balance"] = {{"algorithm", name(b.algorithm)},
                  {"affinity", b.affinity == Affinity::ClientId ? "client-id" : "none"},
                  {"affinity_max_entries", b.affinity_max_entries},
                  {"affinity_max_bytes", b.affinity_max_bytes},
                  {"affinity_ttl_s", b.affinity_ttl_s},
                  {"hash_balance_factor", b.hash_balance_factor},
                  {"retries", b.retries},
                  {"retry_backoff_ms", b.retry_backoff_ms},
                  {"backend_connect_timeout_ms", b.backend_connect_timeout_ms}};
  const Health& h = c.health;
  j["health"] = {{"enabled", h.enabled},
                 {"interval_ms", h.interval_ms},
                 {"timeout_ms", h.timeout_ms},
                 {"rise", h.rise},
                 {"fall", h.fall},
                 {"mode", h.mode == CheckMode::Reconnect ? "reconnect" : "persistent"},
                 {"protocol_level", h.protocol_level},
                 {"keep_alive_s", h.keep_alive_s},
                 {"accept_refusal", h.accept_refusal},
                 {"client_id_prefix", h.client_id_prefix},
                 {"slowstart_ms", h.slowstart_ms},
                 {"on_down", h.on_down == OnDown::ShutdownSessions ? "shutdown-sessions" : "keep"},
                 {"shutdown_spread_ms", h.shutdown_spread_ms}};
  if (h.username) j["health"]["username"] = *h.username;
  if (h.password) j["health"]["password"] = redact ? "<redacted>" : *h.password;
  const Limits& l = c.limits;
  j["limits"] = {{"max_connections", l.max_connections},
                 {"max_connections_per_ip", l.max_connections_per_ip},
                 {"max_connect_bytes", l.max_connect_bytes},
                 {"connect_timeout_ms", l.connect_timeout_ms},
                 {"idle_grace_ms", l.idle_grace_ms},
                 {"keepalive0_idle_cap_s", l.keepalive0_idle_cap_s},
                 {"shutdown_grace_ms", l.shutdown_grace_ms},
                 {"backend_connack_timeout_ms", l.backend_connack_timeout_ms},
                 {"backend_max_connecting", l.backend_max_connecting},
                 {"backend_queue", l.backend_queue},
                 {"backend_queue_timeout_ms", l.backend_queue_timeout_ms},
                 {"memory_budget_bytes", l.memory_budget_bytes},
                 {"drain_timeout_ms", l.drain_timeout_ms},
                 {"tls_handshake_rate", l.tls_handshake_rate},
                 {"connect_rate",
                  {{"global_per_s", l.connect_rate.global_per_s},
                   {"per_ip_per_s", l.connect_rate.per_ip_per_s},
                   {"burst", l.connect_rate.burst},
                   {"ip_prefix_v4", l.connect_rate.ip_prefix_v4},
                   {"ip_prefix_v6", l.connect_rate.ip_prefix_v6}}},
                 {"flap",
                  {{"max_connects", l.flap.max_connects},
                   {"window_s", l.flap.window_s},
                   {"penalty_s", l.flap.penalty_s},
                   {"max_penalty_s", l.flap.max_penalty_s}}}};
  j["routes"] = json::array();
  for (const auto& r : c.routes) {
    json m = json::object();
    if (r.client_id_prefix) m["client_id_prefix"] = *r.client_id_prefix;
    if (r.username) m["username"] = *r.username;
    if (r.listener) m["listener"] = *r.listener;
    if (r.source) m["source"] = r.source_text;
    j["routes"].push_back({{"match", m}, {"backends", r.backends}});
  }
  j["metrics"] = json::object();
  if (c.metrics.bind) j["metrics"]["bind"] = c.metrics.bind->str();
  if (c.admin.enabled()) {
    j["admin"] = {{"bind", c.admin.bind ? c.admin.bind->str() : "unix:" + c.admin.unix_path}};
    if (!c.admin.token_file.empty()) j["admin"]["token_file"] = c.admin.token_file;
  }
  j["evacuation"] = {{"rate_per_s", c.evacuation.rate_per_s},
                     {"deadline_s", c.evacuation.deadline_s}};
  j["upgrade"] = {{"evict_rate_per_s", c.upgrade.evict_rate_per_s},
                  {"deadline_s", c.upgrade.deadline_s}};
  j["workers"] = c.workers;
  j["forwarding"] = c.forwarding == Forwarding::Kernel ? "kernel"
                    : c.forwarding == Forwarding::Auto ? "auto"
                                                       : "userspace";
  scale_out(c, j, redact);
  return j;
}

std::vector<std::string> diff(const Config& before, const Config& after) {
  json a = to_json(before, false), b = to_json(after, false);
  std::vector<std::string> out;
  for (const char* list : {"listeners", "backends"}) {
    std::map<std::string, json> x, y;
    for (const auto& e : a[list]) x[e["name"]] = e;
    for (const auto& e : b[list]) y[e["name"]] = e;
    for (const auto& [n, e] : y) {
      auto it = x.find(n);
      if (it == x.end())
        out.push_back(std::string("/") + list + "/" + n + ": added");
      else if (it->second != e)
        out.push_back(std::string("/") + list + "/" + n + ": changed");
    }
    for (const auto& [n, e] : x)
      if (!y.count(n)) out.push_back(std::string("/") + list + "/" + n + ": removed");
  }
  for (const char* sec : {"balance", "health", "limits", "routes", "metrics", "admin", "evacuation",
                          "upgrade", "workers", "affinity_store", "discovery", "forwarding"})
    if (a.value(sec, json()) != b.value(sec, json()))
      out.push_back(std::string("/") + sec + ": changed");
  return out;
}

}  // namespace conf
