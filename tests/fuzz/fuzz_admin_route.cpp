// libFuzzer target: the admin API's routing and percent-decoding
// (lb/admin_route.cpp), which see every request target sent to the admin
// port. The first input byte picks the method (GET, HEAD, POST, DELETE, PUT,
// or the next bytes up to a space), the rest is the raw path.
//  - route_admin: no crash; the answer is matched (0), 400, 404 or 405, a 405
//    lists the allowed methods and a match of a per-object path has a name;
//  - a matched client id or backend name, percent-encoded again byte by byte,
//    routes back to the same operation and the same id (round trip);
//  - percent_decode: never longer than its input, identity without '%', and
//    decode(encode-every-byte(x)) == x;
//  - percent_escape_for_log: only printable ASCII out, bounded length.
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "lb/admin_route.hpp"

namespace {

std::string encode_all(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    out.push_back('%');
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* methods[] = {"GET", "HEAD", "POST", "DELETE", "PUT"};
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string method;
  if (data[0] % 6 < 5) {
    method = methods[data[0] % 6];
  } else {
    size_t sp = in.find(' ');
    method = std::string(in.substr(0, sp));
    in = sp == std::string_view::npos ? std::string_view() : in.substr(sp + 1);
  }
  const std::string path(in);

  lb::AdminRoute r = lb::route_admin(method, path);
  FUZZ_CHECK(r.error == 0 || r.error == 400 || r.error == 404 || r.error == 405);
  FUZZ_CHECK((r.error == 405) == !r.allow.empty());
  if (r.error == 0) {
    using Op = lb::AdminOp;
    const bool client = r.op == Op::Client || r.op == Op::Kick;
    const bool backend =
        r.op == Op::SetBackend || r.op == Op::Evacuate || r.op == Op::CancelEvacuation;
    FUZZ_CHECK((client || backend) == !r.arg.empty());
    if (client) {
      lb::AdminRoute again = lb::route_admin(method, "/api/v1/clients/" + encode_all(r.arg));
      FUZZ_CHECK(again.error == 0 && again.op == r.op && again.arg == r.arg);
    }
    if (backend) {
      std::string p = "/api/v1/backends/" + encode_all(r.arg);
      if (r.op != Op::SetBackend) p += "/evacuate";
      lb::AdminRoute again = lb::route_admin(method, p);
      FUZZ_CHECK(again.error == 0 && again.op == r.op && again.arg == r.arg);
    }
  }
  FUZZ_CHECK(lb::admin_path_is_public(path) == (path == "/healthz" || path == "/readyz"));

  auto d = lb::percent_decode(path);
  if (d) {
    FUZZ_CHECK(d->size() <= path.size());
    auto back = lb::percent_decode(encode_all(*d));
    FUZZ_CHECK(back && *back == *d);
  }
  if (path.find('%') == std::string::npos) FUZZ_CHECK(d && *d == path);

  std::string esc = lb::percent_escape_for_log(path, 64);
  FUZZ_CHECK(esc.size() <= 64 + 2 + 3);
  for (unsigned char c : esc) FUZZ_CHECK(c > 0x20 && c < 0x7F);
  return 0;
}
