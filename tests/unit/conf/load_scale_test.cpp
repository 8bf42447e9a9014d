// The scale-out keys (docs/config.md "affinity_store", "discovery"):
// affinity_store.redis URLs, discovery[] entries and their template, and
// the rule that backends may be empty only when discovery gives them.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "conf/loader.hpp"
#include "conf/serialize.hpp"

namespace {

bool has(const conf::LoadResult& r, const std::string& line) {
  return std::find(r.errors.begin(), r.errors.end(), line) != r.errors.end();
}

std::string dump(const conf::LoadResult& r) {
  std::string s;
  for (auto& e : r.errors) s += e + "\n";
  return s;
}

conf::LoadResult load(
    const std::string& extra,
    const std::string& backends = R"("backends": [{"name": "b1", "address": "127.0.0.1:1884"}])") {
  std::string text = R"({"listeners": [{"name": "mqtt", "bind": "127.0.0.1:1883"}])";
  if (!backends.empty()) text += ", " + backends;
  if (!extra.empty()) text += ", " + extra;
  return conf::load_string(text + "}", {false});
}

}  // namespace

TEST_CASE("redis URLs: host, port, database, credentials") {
  std::string err;
  auto u = conf::parse_redis_url("redis://10.0.0.5:6380/3", err);
  REQUIRE_MESSAGE(u, err);
  CHECK(u->host == "10.0.0.5");
  CHECK(u->port == 6380);
  CHECK(u->db == 3);
  CHECK(u->password.empty());
  u = conf::parse_redis_url("redis://redis.mqtt.svc", err);
  REQUIRE(u);
  CHECK(u->host == "redis.mqtt.svc");
  CHECK(u->port == 6379);
  CHECK(u->db == 0);
  u = conf::parse_redis_url("redis://:s3cr@t@[::1]:7000/0", err);
  REQUIRE_MESSAGE(u, err);
  CHECK(u->host == "::1");
  CHECK(u->port == 7000);
  CHECK(u->user.empty());
  CHECK(u->password == "s3cr@t");  // up to the last '@'
  u = conf::parse_redis_url("redis://lb:pw@127.0.0.1", err);
  REQUIRE(u);
  CHECK(u->user == "lb");
  CHECK(u->password == "pw");
  for (const char* bad :
       {"http://127.0.0.1", "redis://", "redis://127.0.0.1:", "redis://127.0.0.1:0",
        "redis://127.0.0.1:65536", "redis://127.0.0.1/x", "redis://127.0.0.1/-1", "redis://h o/0",
        "redis://pw@127.0.0.1", "redis://user:@127.0.0.1", "redis://[::1", "redis://[zz]:1",
        "redis://[::1]x", "redis://127.0.0.1:99999999999999"}) {
    INFO(bad);
    CHECK_FALSE(conf::parse_redis_url(bad, err));
  }
}

TEST_CASE("affinity_store: defaults, ranges, and the password is redacted in to_json") {
  auto r = load(R"("affinity_store": {"redis": "redis://:hunter2@127.0.0.1:6379/1"})");
  REQUIRE_MESSAGE(r.ok(), dump(r));
  const auto& a = r.config->affinity_store;
  CHECK(a.enabled());
  CHECK(a.key_prefix == "mqttlb:");
  CHECK(a.url.db == 1);
  CHECK(a.queue == 10'000);
  auto j = conf::to_json(*r.config);
  CHECK(j["affinity_store"]["redis"] == "redis://:<redacted>@127.0.0.1:6379/1");
  CHECK(conf::to_json(*r.config, false)["affinity_store"]["redis"] ==
        "redis://:hunter2@127.0.0.1:6379/1");

  r = load(R"("affinity_store": {"redis": "tcp://x", "key_prefix": "a*", "timeout_ms": 1,
             "queue": 0, "bogus": 1})");
  INFO(dump(r));
  CHECK(has(r, "/affinity_store/redis: \"tcp://x\" does not start with redis://"));
  CHECK(has(r,
            "/affinity_store/key_prefix: at most 64 bytes, without spaces or SCAN pattern "
            "characters *?[]\\"));
  CHECK(has(r, "/affinity_store/timeout_ms: 1 out of range 50..60000"));
  CHECK(has(r, "/affinity_store/queue: 0 out of range 1..1000000"));
  CHECK(has(r, "/affinity_store/bogus: unknown key"));
  r = load(R"("affinity_store": {})");
  CHECK(has(r, "/affinity_store/redis: required key missing"));
}

TEST_CASE("discovery: entries, template, and backends empty or absent only with discovery") {
  auto r = load(R"("discovery": [{"dns": "brokers.mqtt.svc.cluster.local", "port": 1884,
                   "interval_ms": 2000, "resolvers": ["10.96.0.10:53"],
                   "template": {"weight": 3, "proxy_protocol": "v2"}},
                  {"dns": "_mqtt._tcp.brokers", "type": "SRV"}])",
                R"("backends": [])");
  REQUIRE_MESSAGE(r.ok(), dump(r));
  REQUIRE(r.config->discovery.size() == 2);
  const auto& d = r.config->discovery[0];
  CHECK(d.type == conf::Discovery::Type::A);
  CHECK(d.port == 1884);
  CHECK(d.interval_ms == 2000);
  CHECK(d.resolvers.at(0).str() == "10.96.0.10:53");
  CHECK(d.templ.weight == 3);
  CHECK(d.templ.proxy_protocol == conf::ProxyProtocol::V2);
  CHECK(r.config->discovery[1].type == conf::Discovery::Type::SRV);
  CHECK(r.config->backends.empty());
  auto j = conf::to_json(*r.config);
  CHECK(j["discovery"][0]["template"]["weight"] == 3);
  CHECK(j["discovery"][1].count("port") == 0);

  // Absent backends are fine with discovery too; without it, as before.
  r = load(R"("discovery": [{"dns": "brokers"}])", "");
  CHECK_MESSAGE(r.ok(), dump(r));
  r = load("", "");
  CHECK(has(r, "/backends: required key missing"));
  r = load("", R"("backends": [])");
  CHECK(has(r, "/backends: at least one backend is required (or a discovery[] entry)"));

  r = load(R"("discovery": [{"dns": "bad name!", "type": "MX", "port": 0, "interval_ms": 1,
                   "resolvers": ["dns.local:53", 7], "template": {"name": "x", "weight": 0}},
                  {"dns": "s", "type": "SRV", "port": 1883}, {"dns": "d"}, {"dns": "d"}])");
  INFO(dump(r));
  CHECK(has(r, "/discovery/0/dns: \"bad name!\" is not a DNS name"));
  CHECK(has(r, "/discovery/0/type: \"MX\" is not one of \"A\", \"AAAA\", \"SRV\""));
  CHECK(has(r, "/discovery/0/port: 0 out of range 1..65535"));
  CHECK(has(r, "/discovery/0/interval_ms: 1 out of range 100..3600000"));
  CHECK(has(r, "/discovery/0/resolvers/0: a resolver must be a numeric ip:port"));
  CHECK(has(r, "/discovery/0/resolvers/1: expected a string, got integer"));
  CHECK(has(r, "/discovery/0/template/name: unknown key"));
  CHECK(has(r, "/discovery/0/template/weight: 0 out of range 1..256"));
  CHECK(has(r, "/discovery/1/port: not used with type SRV (each record carries its port)"));
  CHECK(has(r, "/discovery/3/dns: the same name, type and port twice"));
}

TEST_CASE("diff names the scale-out sections") {
  auto a = load(""), b = load(R"("affinity_store": {"redis": "redis://127.0.0.1"},
                                  "discovery": [{"dns": "x"}])");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  auto d = conf::diff(*a.config, *b.config);
  CHECK(std::find(d.begin(), d.end(), "/affinity_store: changed") != d.end());
  CHECK(std::find(d.begin(), d.end(), "/discovery: changed") != d.end());
}
