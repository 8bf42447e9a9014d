// The admin API's routing table (docs/admin-api.md), independent of the HTTP
// library: a method and a raw (still percent-encoded) request path map to one
// AdminOps call, or to 404/405/400. Pure: no I/O, no globals; fuzzed
// (tests/fuzz/fuzz_admin_route.cpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lb {

enum class AdminOp {
  Healthz,
  Readyz,
  Status,
  Backends,
  SetBackend,
  Evacuate,
  CancelEvacuation,
  Client,
  Kick,
  Reload,
  Config,
  Upgrade,
  Page,
  Metrics,
};

struct AdminRoute {
  // 0: matched (op, arg); else the HTTP status to answer with: 404 (no such
  // path), 405 (path exists, method does not: `allow` lists the methods),
  // 400 (bad percent-encoding in the path).
  int error = 0;
  AdminOp op = AdminOp::Healthz;
  std::string arg;    // the backend name or client id, percent-decoded
  std::string allow;  // "GET, HEAD", "POST", "POST, DELETE", ...
};

// `path` is the request target without the query, exactly as received.
// HEAD is accepted wherever GET is.
AdminRoute route_admin(std::string_view method, std::string_view path);

// True for the two paths that never need the token (probes: /healthz, /readyz).
bool admin_path_is_public(std::string_view path);

// True for POST and DELETE (every mutation is audited).
bool admin_method_mutates(std::string_view method);

// RFC 3986 percent-decoding ("%2F" -> "/"; '+' stays '+'). nullopt when a '%'
// is not followed by two hex digits. Any byte may come out (NUL, non-UTF-8).
std::optional<std::string> percent_decode(std::string_view s);

// A raw path made safe for one audit line: printable ASCII (0x21..0x7E) is
// kept, every other byte becomes %XX (so a path cannot forge a second line);
// longer than max_bytes: cut, with "...".
std::string percent_escape_for_log(std::string_view s, size_t max_bytes = 512);

}  // namespace lb
