// The health keys mqttlb's config loader accepts for this module:
// health.enabled and backends[].admin (docs/health.md), with their errors.
#include <doctest/doctest.h>

#include <string>

#include "conf/loader.hpp"

namespace {
std::string doc(const std::string& backend_extra, const std::string& health) {
  return R"({"listeners":[{"name":"mqtt","bind":"127.0.0.1:1883"}],
             "backends":[{"name":"b1","address":"127.0.0.1:1884")" +
         backend_extra + R"(}], "health": {)" + health + "}}";
}
}  // namespace

TEST_CASE("health.enabled defaults to true and accepts false") {
  auto r = conf::load_string(doc("", ""));
  REQUIRE(r.ok());
  CHECK(r.config->health.enabled);
  r = conf::load_string(doc("", R"("enabled": false)"));
  REQUIRE(r.ok());
  CHECK_FALSE(r.config->health.enabled);
  r = conf::load_string(doc("", R"("enabled": "no")"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.errors[0].rfind("/health/enabled", 0) == 0);
}

TEST_CASE("backends[].admin: ready (default), drain, maint; anything else is an error") {
  auto r = conf::load_string(doc("", ""));
  REQUIRE(r.ok());
  CHECK(r.config->backends[0].admin == conf::BackendAdmin::Ready);
  r = conf::load_string(doc(R"(, "admin": "drain")", ""));
  REQUIRE(r.ok());
  CHECK(r.config->backends[0].admin == conf::BackendAdmin::Drain);
  r = conf::load_string(doc(R"(, "admin": "maint")", ""));
  REQUIRE(r.ok());
  CHECK(r.config->backends[0].admin == conf::BackendAdmin::Maint);
  r = conf::load_string(doc(R"(, "admin": "off")", ""));
  REQUIRE_FALSE(r.ok());
  CHECK(r.errors[0].rfind("/backends/0/admin", 0) == 0);
}
