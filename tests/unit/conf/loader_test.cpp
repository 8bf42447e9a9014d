#include "conf/loader.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

namespace {

const char* kMinimal = R"({
  "listeners": [{"name": "mqtt", "bind": "127.0.0.1:1883"}],
  "backends": [{"name": "b1", "address": "127.0.0.1:1884"},
               {"name": "b2", "address": "127.0.0.1:1885", "weight": 2}]
})";

bool has(const conf::LoadResult& r, const std::string& line) {
  return std::find(r.errors.begin(), r.errors.end(), line) != r.errors.end();
}

std::string dump(const conf::LoadResult& r) {
  std::string s;
  for (auto& e : r.errors) s += e + "\n";
  return s;
}

}  // namespace

TEST_CASE("a minimal config loads with every default") {
  auto r = conf::load_string(kMinimal);
  REQUIRE_MESSAGE(r.ok(), dump(r));
  const conf::Config& c = *r.config;
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].bind.host == "127.0.0.1");
  CHECK(c.listeners[0].bind.port == 1883);
  REQUIRE(c.backends.size() == 2);
  CHECK(c.backends[0].weight == 1);
  CHECK(c.backends[1].weight == 2);
  CHECK(c.backends[0].proxy_protocol == conf::ProxyProtocol::None);
  CHECK(c.balance.algorithm == conf::Algorithm::LeastConn);
  CHECK(c.balance.affinity == conf::Affinity::ClientId);
  CHECK(c.balance.retries == 2);
  CHECK(c.limits.max_connect_bytes == 64 * 1024);
  CHECK(c.limits.connect_timeout_ms == 5000);
  CHECK(c.limits.shutdown_grace_ms == 10000);
  CHECK(c.health.interval_ms == 2000);
  CHECK(!c.metrics.bind);
  CHECK(c.workers == 0);
}

TEST_CASE("every section and key is read") {
  auto r = conf::load_string(R"({
    "listeners": [{"name": "mqtt", "bind": "[::1]:1883"}],
    "backends": [{"name": "b1", "address": "localhost:1884", "weight": 256, "proxy_protocol": "v2"}],
    "balance": {"algorithm": "consistent-hash", "affinity": "none", "affinity_max_entries": 10,
                "affinity_ttl_s": 60, "hash_balance_factor": 0.5, "retries": 0,
                "backend_connect_timeout_ms": 100},
    "health": {"interval_ms": 500, "timeout_ms": 400, "rise": 1, "fall": 5, "mode": "reconnect",
               "protocol_level": 5, "keep_alive_s": 30, "username": "u", "password": "p",
               "accept_refusal": true, "client_id_prefix": "hc-", "slowstart_ms": 1000,
               "on_down": "shutdown-sessions", "shutdown_spread_ms": 0},
    "limits": {"max_connections": 10, "max_connections_per_ip": 2, "max_connect_bytes": 1024,
               "connect_timeout_ms": 100, "idle_grace_ms": 0, "keepalive0_idle_cap_s": 1,
               "shutdown_grace_ms": 0},
    "metrics": {"bind": "127.0.0.1:9100"},
    "workers": 3
  })");
  REQUIRE_MESSAGE(r.ok(), dump(r));
  const conf::Config& c = *r.config;
  CHECK(c.listeners[0].bind.host == "::1");
  CHECK(c.listeners[0].bind.str() == "[::1]:1883");
  CHECK(c.backends[0].address.host == "127.0.0.1");  // resolved at load time
  CHECK(c.backends[0].weight == 256);
  CHECK(c.backends[0].proxy_protocol == conf::ProxyProtocol::V2);
  CHECK(c.balance.algorithm == conf::Algorithm::ConsistentHash);
  CHECK(c.balance.affinity == conf::Affinity::None);
  CHECK(c.balance.hash_balance_factor == doctest::Approx(0.5));
  CHECK(c.balance.retries == 0);
  CHECK(c.health.mode == conf::CheckMode::Reconnect);
  CHECK(c.health.protocol_level == 5);
  CHECK(c.health.username == std::optional<std::string>("u"));
  CHECK(c.health.on_down == conf::OnDown::ShutdownSessions);
  CHECK(c.limits.max_connections_per_ip == 2);
  CHECK(c.limits.keepalive0_idle_cap_s == 1);
  REQUIRE(c.metrics.bind);
  CHECK(c.metrics.bind->port == 9100);
  CHECK(c.workers == 3);
}

TEST_CASE("every error is reported at once, each at its JSON pointer") {
  auto r = conf::load_string(R"({
    "listeners": [{"name": "mqtt", "bind": "0.0.0.0:1883", "bnid": 1}],
    "backends": [{"name": "b1", "address": "127.0.0.1:1884"},
                 {"name": "b1", "address": "127.0.0.1:1885", "weight": 0},
                 {"name": "b3", "address": "127.0.0.1:70000", "proxy_protocol": "v3"}],
    "balance": {"algorithm": "random"},
    "limits": {"max_connect_bytes": 10, "connect_timeout_ms": "5s"},
    "workerz": 2
  })");
  CHECK(!r.ok());
  CHECK(!r.config);
  INFO(dump(r));
  CHECK(has(r, "/listeners/0/bnid: unknown key"));
  CHECK(has(r, "/backends/1/name: duplicate backend name \"b1\""));
  CHECK(has(r, "/backends/1/weight: 0 out of range 1..256"));
  CHECK(has(r, "/backends/2/address: port 70000 out of range 1..65535"));
  CHECK(has(r, "/backends/2/proxy_protocol: \"v3\" is not one of \"none\", \"v1\", \"v2\""));
  CHECK(has(r,
            "/balance/algorithm: \"random\" is not one of \"leastconn\", \"round-robin\", "
            "\"consistent-hash\""));
  CHECK(has(r, "/limits/max_connect_bytes: 10 out of range 1024..1048576"));
  CHECK(has(r, "/limits/connect_timeout_ms: expected an integer, got string"));
  CHECK(has(r, "/workerz: unknown key"));
  CHECK(r.errors.size() == 9);
}

TEST_CASE("required keys, wrong types and empty arrays") {
  auto r = conf::load_string(R"({"backends": {}, "health": [], "metrics": {"bind": "nowhere"}})");
  INFO(dump(r));
  CHECK(has(r, "/listeners: required key missing"));
  CHECK(has(r, "/backends: expected an array, got object"));
  CHECK(has(r, "/health: expected an object, got array"));
  CHECK(has(r, "/metrics/bind: \"nowhere\" is not host:port"));

  r = conf::load_string(R"({"listeners": [], "backends": [{"address": "127.0.0.1:1"}]})");
  INFO(dump(r));
  CHECK(has(r, "/listeners: at least one listener is required"));
  CHECK(has(r, "/backends/0/name: required key missing"));

  r = conf::load_string(
      R"({"listeners": [{"name": "a", "bind": "127.0.0.1:-1"}], "backends": [{"name": "b", "address": "127.0.0.1:1", "weight": -3}]})");
  INFO(dump(r));
  CHECK(has(r, "/listeners/0/bind: port \"-1\" is not a number"));
  CHECK(has(r, "/backends/0/weight: -3 out of range 1..256"));
}

TEST_CASE("numeric ranges are enforced at both ends") {
  auto at = [](const std::string& section, const std::string& kv) {
    std::string doc = std::string(R"({"listeners": [{"name": "l", "bind": "127.0.0.1:1883"}],
      "backends": [{"name": "b", "address": "127.0.0.1:1884"}], ")") +
                      section + "\": {" + kv + "}}";
    return conf::load_string(doc);
  };
  CHECK(at("limits", R"("max_connect_bytes": 1024)").ok());
  CHECK(at("limits", R"("max_connect_bytes": 1048576)").ok());
  CHECK(!at("limits", R"("max_connect_bytes": 1048577)").ok());
  CHECK(!at("balance", R"("retries": 17)").ok());
  CHECK(at("balance", R"("retries": 16)").ok());
  CHECK(!at("balance", R"("hash_balance_factor": 0)").ok());
  CHECK(!at("balance", R"("hash_balance_factor": true)").ok());
  CHECK(!at("health", R"("protocol_level": 3)").ok());
  CHECK(!at("health", R"("rise": 0)").ok());
  CHECK(at("health", R"("timeout_ms": 2000)").ok());
  auto r = at("health", R"("timeout_ms": 2001)");
  CHECK(has(r, "/health/timeout_ms: 2001 must not exceed interval_ms (2000)"));
}

TEST_CASE("conf opens no file: TLS files are checked by the balancer, not the loader") {
  auto r = conf::load_string(R"({
    "listeners": [{"name": "mqtts", "bind": "0.0.0.0:8883", "tls": {"cert": "s.crt", "key": "s.key",
                   "verify_client": "sometimes"}},
                  {"name": "m2", "bind": "0.0.0.0:8884", "tls": {"cert": "s.crt", "key": "s.key",
                   "verify_client": "required"}}],
    "backends": [{"name": "b1", "address": "127.0.0.1:1884"}]})");
  INFO(dump(r));
  for (const auto& e : r.errors) CHECK(e.find("s.crt") == std::string::npos);
  CHECK(has(r,
            "/listeners/0/tls/verify_client: \"sometimes\" is not one of \"none\", \"optional\", "
            "\"required\""));
  CHECK(has(r,
            "/listeners/1/tls/verify_client: needs \"ca\" (the CA file client certificates "
            "are verified against)"));
  CHECK(r.errors.size() == 2);
}

TEST_CASE("names are resolved only when asked: any bytes can be loaded without I/O") {
  const char* doc = R"({"listeners": [{"name": "m", "bind": "127.0.0.1:1883"}],
    "backends": [{"name": "b1", "address": "broker-1.example.invalid:1883"}]})";
  conf::LoadOptions no_dns;
  no_dns.resolve_names = false;
  auto r = conf::load_string(doc, no_dns);
  REQUIRE(r.ok());
  CHECK(r.config->backends[0].address.host == "broker-1.example.invalid");
  auto bad = conf::load_string(R"({"listeners": [{"name": "m", "bind": "127.0.0.1:1883"}],
    "backends": [{"name": "b1", "address": "a b:1883"}]})",
                               no_dns);
  CHECK(has(bad, "/backends/0/address: \"a b\" is not an IP address or a host name"));
}

TEST_CASE("invalid JSON and unusual keys") {
  auto r = conf::load_string("{\"listeners\": [");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].rfind("/: invalid JSON", 0) == 0);
  r = conf::load_string(R"({"a/b": 1, "c~d": 2, "listeners": [{"name":"l","bind":"127.0.0.1:1"}],
                           "backends": [{"name":"b","address":"127.0.0.1:2"}]})");
  CHECK(has(r, "/a~1b: unknown key"));  // RFC 6901 escaping
  CHECK(has(r, "/c~0d: unknown key"));
  r = conf::load_file("/nonexistent/mqttlb.json");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "/: cannot read file /nonexistent/mqttlb.json");
}

TEST_CASE("endpoint parsing") {
  std::string err;
  auto e = conf::parse_endpoint("[2001:db8::1]:8883", err);
  REQUIRE(e);
  CHECK(e->host == "2001:db8::1");
  CHECK(e->port == 8883);
  CHECK(!conf::parse_endpoint("2001:db8::1:8883", err));
  CHECK(err.find("[addr]:port") != std::string::npos);
  CHECK(!conf::parse_endpoint("127.0.0.1:0", err));
  CHECK(err == "port 0 out of range 1..65535");
  CHECK(!conf::parse_endpoint("no-such-host.invalid:1883", err));
  CHECK(err == "cannot resolve host \"no-such-host.invalid\"");
}

TEST_CASE("hostile documents: deep nesting and huge files are refused before parsing") {
  std::string deep(100000, '[');
  auto r = conf::load_string(deep);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "/: JSON nested deeper than 64 levels");
  std::string nested_in_string =
      R"({"listeners": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["})";
  r = conf::load_string(nested_in_string);
  CHECK(
      has(r, "/listeners: expected an array, got string"));  // brackets inside strings do not count
}

TEST_CASE("a number JSON cannot represent is an error, not a crash (found by fuzz_config)") {
  auto r =
      conf::load_string(R"({"listeners": [{"name": "m", "bind": "127.0.0.1:1883", "x": 1e4444}],
    "backends": [{"name": "b1", "address": "127.0.0.1:1884"}]})");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].rfind("/: invalid JSON: ", 0) == 0);
  CHECK(r.errors[0].find("number overflow") != std::string::npos);
}

TEST_CASE("forwarding: userspace by default, kernel/auto read, anything else refused") {
  auto with = [](const char* v) {
    std::string s = std::string(R"({"listeners": [{"name": "mqtt", "bind": "127.0.0.1:1883"}],
      "backends": [{"name": "b1", "address": "127.0.0.1:1884"}], "forwarding": )") +
                    v + "}";
    return conf::load_string(s);
  };
  auto d = conf::load_string(kMinimal);
  REQUIRE(d.ok());
  CHECK(d.config->forwarding == conf::Forwarding::Userspace);
  auto k = with(R"("kernel")");
  REQUIRE_MESSAGE(k.ok(), dump(k));
  CHECK(k.config->forwarding == conf::Forwarding::Kernel);
  auto a = with(R"("auto")");
  REQUIRE(a.ok());
  CHECK(a.config->forwarding == conf::Forwarding::Auto);
  for (const char* bad : {R"("splice")", "true", "1", R"("Kernel")"}) {
    CAPTURE(bad);
    auto r = with(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.errors[0].rfind("/forwarding", 0) == 0);
  }
}

TEST_CASE("listener websocket: defaults, both modes, and clear errors") {
  auto ok = conf::load_string(R"({
    "listeners": [{"name": "ws", "bind": "127.0.0.1:8080", "websocket": {}},
                  {"name": "ws2", "bind": "127.0.0.1:8081",
                   "websocket": {"path": "/mqtt/ws", "to_backend": "websocket",
                                 "max_handshake_bytes": 16384}}],
    "backends": [{"name": "b1", "address": "127.0.0.1:1884", "websocket_port": 9001}]
  })");
  REQUIRE_MESSAGE(ok.ok(), dump(ok));
  const auto& l = ok.config->listeners;
  REQUIRE(l[0].websocket);
  CHECK(l[0].websocket->path == "/mqtt");
  CHECK(l[0].websocket->to_backend == conf::ListenerWebSocket::ToBackend::Mqtt);
  CHECK(l[0].websocket->max_handshake_bytes == 8192);
  CHECK(l[1].websocket->path == "/mqtt/ws");
  CHECK(l[1].websocket->to_backend == conf::ListenerWebSocket::ToBackend::WebSocket);
  CHECK(l[1].websocket->max_handshake_bytes == 16384);
  CHECK(ok.config->backends[0].websocket_port == 9001);

  auto bad = conf::load_string(R"({
    "listeners": [{"name": "ws", "bind": "127.0.0.1:8080",
                   "websocket": {"path": "mqtt?x", "to_backend": "ws", "max_handshake_bytes": 100,
                                 "subprotocol": "mqtt"}},
                  {"name": "ws2", "bind": "127.0.0.1:8081", "websocket": {"to_backend": "websocket"}}],
    "backends": [{"name": "b1", "address": "127.0.0.1:1884"},
                 {"name": "b2", "address": "127.0.0.1:1885", "websocket_port": 70000}]
  })");
  CHECK_FALSE(bad.ok());
  CHECK(has(bad, "/listeners/0/websocket/subprotocol: unknown key"));
  CHECK(has(bad,
            "/listeners/0/websocket/path: \"mqtt?x\" is not a request path (starts with /, no "
            "query, no spaces)"));
  CHECK(
      has(bad, "/listeners/0/websocket/to_backend: \"ws\" is not one of \"mqtt\", \"websocket\""));
  CHECK(has(bad, "/listeners/0/websocket/max_handshake_bytes: 100 out of range 512..65536"));
  CHECK(has(bad, "/backends/1/websocket_port: 70000 out of range 1..65535"));
  CHECK(has(bad,
            "/listeners/1/websocket/to_backend: \"websocket\" needs every backend's "
            "websocket_port (the broker's WebSocket port); /backends/0 (b1) has none"));
}
