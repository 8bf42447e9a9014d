#include "lb/routes.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>

#include "conf/loader.hpp"

namespace {
sockaddr_storage ip(const char* text) {
  sockaddr_storage ss{};
  if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in&>(ss).sin_addr) == 1) {
    ss.ss_family = AF_INET;
  } else {
    REQUIRE(inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6&>(ss).sin6_addr) == 1);
    ss.ss_family = AF_INET6;
  }
  return ss;
}
conf::Config load(const std::string& routes) {
  auto r = conf::load_string(R"({"listeners": [{"name": "mqtt", "bind": "127.0.0.1:1883"},
      {"name": "mqtts", "bind": "127.0.0.1:8883"}],
    "backends": [{"name": "a1", "address": "127.0.0.1:1"}, {"name": "a2", "address": "127.0.0.1:2"},
                 {"name": "b1", "address": "127.0.0.1:3"}, {"name": "d1", "address": "127.0.0.1:4"}],
    "routes": )" + routes + "}");
  INFO((r.errors.empty() ? std::string() : r.errors[0]));
  REQUIRE(r.ok());
  return *r.config;
}
}  // namespace

TEST_CASE(
    "routes: first match wins; every condition of a rule must hold; the rest go to the default "
    "pool") {
  conf::Config c = load(R"([
    {"match": {"client_id_prefix": "fleetA-"}, "backends": ["a1", "a2"]},
    {"match": {"username": "ops", "listener": "mqtts"}, "backends": ["b1"]},
    {"match": {"source": "10.0.0.0/8"}, "backends": ["b1"]},
    {"match": {"source": "2001:db8::/32"}, "backends": ["a2"]}])");
  lb::RoutePlan p = lb::plan_routes(c);
  std::optional<std::string> none, ops = "ops";
  CHECK(lb::match_route(c.routes, "fleetA-7", none, "mqtt", ip("192.0.2.1")) == 0);
  CHECK(lb::match_route(c.routes, "fleetB-7", ops, "mqtts", ip("192.0.2.1")) == 1);
  CHECK(lb::match_route(c.routes, "fleetB-7", ops, "mqtt", ip("192.0.2.1")) ==
        -1);  // both conditions
  CHECK(lb::match_route(c.routes, "x", none, "mqtt", ip("10.200.0.9")) == 2);
  CHECK(lb::match_route(c.routes, "x", none, "mqtt", ip("11.0.0.1")) == -1);
  CHECK(lb::match_route(c.routes, "x", none, "mqtt", ip("2001:db8:1::5")) == 3);
  CHECK(lb::match_route(c.routes, "fleetA-1", none, "mqtt", ip("10.0.0.1")) == 0);  // order
  CHECK(*lb::pool_for(p, 0) == std::vector<bool>{true, true, false, false});
  // d1 is in no route: the default pool.
  CHECK(*lb::pool_for(p, -1) == std::vector<bool>{false, false, false, true});
}

TEST_CASE("routes: no routes means every backend; every backend routed means the default is all") {
  conf::Config none = load("[]");
  CHECK(lb::pool_for(lb::plan_routes(none), -1) == nullptr);
  conf::Config all =
      load(R"([{"match": {"client_id_prefix": "a"}, "backends": ["a1", "a2", "b1", "d1"]}])");
  CHECK(*lb::pool_for(lb::plan_routes(all), -1) == std::vector<bool>(4, true));
}

TEST_CASE("routes: errors name the key") {
  auto r = conf::load_string(R"({"listeners": [{"name": "mqtt", "bind": "127.0.0.1:1883"}],
    "backends": [{"name": "b1", "address": "127.0.0.1:1"}],
    "routes": [{"match": {}, "backends": ["b1"]},
               {"match": {"listener": "nope", "source": "10.0.0.0/33"}, "backends": ["zz"]},
               {"match": {"source": "300.1.1.1"}, "backends": []}]})");
  auto has = [&](const std::string& e) {
    for (const auto& x : r.errors)
      if (x == e) return true;
    return false;
  };
  CHECK(has("/routes/0/match: needs at least one of client_id_prefix, username, listener, source"));
  CHECK(has("/routes/1/match/listener: no listener named \"nope\""));
  CHECK(has("/routes/1/match/source: \"10.0.0.0/33\": prefix length above 32"));
  CHECK(has("/routes/1/backends/0: no backend named \"zz\""));
  CHECK(has("/routes/2/match/source: \"300.1.1.1\" is not an IP address or CIDR"));
  CHECK(has("/routes/2/backends: expected a non-empty array of backend names"));
}
