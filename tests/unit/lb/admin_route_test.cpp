#include "lb/admin_route.hpp"

#include <doctest/doctest.h>

using lb::AdminOp;
using lb::route_admin;

TEST_CASE("admin routes: every path with its methods") {
  struct Case {
    const char* method;
    const char* path;
    AdminOp op;
    const char* arg;
  };
  const Case ok[] = {
      {"GET", "/", AdminOp::Page, ""},
      {"HEAD", "/healthz", AdminOp::Healthz, ""},
      {"GET", "/readyz", AdminOp::Readyz, ""},
      {"GET", "/metrics", AdminOp::Metrics, ""},
      {"GET", "/api/v1/status", AdminOp::Status, ""},
      {"GET", "/api/v1/backends", AdminOp::Backends, ""},
      {"POST", "/api/v1/backends/b1", AdminOp::SetBackend, "b1"},
      {"POST", "/api/v1/backends/b%201/evacuate", AdminOp::Evacuate, "b 1"},
      {"DELETE", "/api/v1/backends/b1/evacuate", AdminOp::CancelEvacuation, "b1"},
      {"POST", "/api/v1/backends/evacuate", AdminOp::SetBackend, "evacuate"},
      {"GET", "/api/v1/clients/sensor%2F42", AdminOp::Client, "sensor/42"},
      {"GET", "/api/v1/clients/a/b c", AdminOp::Client, "a/b c"},
      {"DELETE", "/api/v1/clients/%C3%BC+x", AdminOp::Kick, "\xC3\xBC+x"},
      {"POST", "/api/v1/reload", AdminOp::Reload, ""},
      {"GET", "/api/v1/config", AdminOp::Config, ""},
      {"POST", "/api/v1/upgrade", AdminOp::Upgrade, ""},
  };
  for (const auto& c : ok) {
    CAPTURE(c.path);
    auto r = route_admin(c.method, c.path);
    CHECK(r.error == 0);
    CHECK(r.op == c.op);
    CHECK(r.arg == c.arg);
  }
}

TEST_CASE("admin routes: 404, 405 with Allow, 400 for a bad escape") {
  for (const char* p : {"/nope", "/api/v1", "/api/v1/backends/", "/api/v1/backends/a/b",
                        "/api/v1/backends//evacuate", "/api/v1/clients/", "/healthz/",
                        "/api/v1/backends/b1/evacuate/x"})
    CHECK(route_admin("GET", p).error == 404);
  auto r = route_admin("GET", "/api/v1/reload");
  CHECK(r.error == 405);
  CHECK(r.allow == "POST");
  CHECK(route_admin("GET", "/api/v1/backends/b1").allow == "POST");
  CHECK(route_admin("GET", "/api/v1/backends/b1/evacuate").allow == "POST, DELETE");
  CHECK(route_admin("PUT", "/api/v1/clients/x").allow == "GET, HEAD, DELETE");
  CHECK(route_admin("POST", "/healthz").allow == "GET, HEAD");
  CHECK(route_admin("GET", "/api/v1/clients/%zz").error == 400);
  CHECK(route_admin("POST", "/api/v1/backends/%4/evacuate").error == 400);
}

TEST_CASE("percent-decoding and the audit escape") {
  CHECK(lb::percent_decode("a%2Fb%20c+d") == "a/b c+d");
  CHECK(lb::percent_decode("%00").value() == std::string(1, '\0'));
  CHECK(!lb::percent_decode("%"));
  CHECK(!lb::percent_decode("%4"));
  CHECK(!lb::percent_decode("%g0"));
  CHECK(lb::percent_escape_for_log("/a b\r\n%41") == "/a%20b%0D%0A%41");
  CHECK(lb::percent_escape_for_log(std::string(100, 'x'), 10) == std::string(10, 'x') + "...");
  CHECK(lb::admin_path_is_public("/healthz"));
  CHECK(lb::admin_path_is_public("/readyz"));
  CHECK(!lb::admin_path_is_public("/healthz?x"));
  CHECK(lb::admin_method_mutates("POST"));
  CHECK(lb::admin_method_mutates("DELETE"));
  CHECK(!lb::admin_method_mutates("GET"));
}
