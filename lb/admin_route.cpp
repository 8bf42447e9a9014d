#include "lb/admin_route.hpp"

namespace lb {

namespace {

constexpr std::string_view kBackends = "/api/v1/backends/";
constexpr std::string_view kClients = "/api/v1/clients/";
constexpr std::string_view kEvacuate = "/evacuate";

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_get(std::string_view m) {
  return m == "GET" || m == "HEAD";
}

// One path with the methods it takes: GET (and HEAD), POST, DELETE.
struct Methods {
  std::optional<AdminOp> get, post, del;
};

AdminRoute pick(std::string_view method, const Methods& m, std::string arg) {
  AdminRoute r;
  r.arg = std::move(arg);
  std::optional<AdminOp> op = is_get(method)       ? m.get
                              : method == "POST"   ? m.post
                              : method == "DELETE" ? m.del
                                                   : std::nullopt;
  if (op) {
    r.op = *op;
    return r;
  }
  r.error = 405;
  auto add = [&r](const char* s) { r.allow += (r.allow.empty() ? "" : ", ") + std::string(s); };
  if (m.get) add("GET"), add("HEAD");
  if (m.post) add("POST");
  if (m.del) add("DELETE");
  return r;
}

AdminRoute error(int status) {
  AdminRoute r;
  r.error = status;
  return r;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string percent_escape_for_log(std::string_view s, size_t max_bytes) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c > 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
  }
  return out;
}

bool admin_path_is_public(std::string_view path) {
  return path == "/healthz" || path == "/readyz";
}

bool admin_method_mutates(std::string_view method) {
  return method == "POST" || method == "DELETE";
}

AdminRoute route_admin(std::string_view method, std::string_view path) {
  using Op = AdminOp;
  struct Fixed {
    std::string_view path;
    Methods m;
  };
  static const Fixed fixed[] = {
      {"/", {Op::Page, {}, {}}},
      {"/healthz", {Op::Healthz, {}, {}}},
      {"/readyz", {Op::Readyz, {}, {}}},
      {"/metrics", {Op::Metrics, {}, {}}},
      {"/api/v1/status", {Op::Status, {}, {}}},
      {"/api/v1/backends", {Op::Backends, {}, {}}},
      {"/api/v1/reload", {{}, Op::Reload, {}}},
      {"/api/v1/config", {Op::Config, {}, {}}},
      {"/api/v1/upgrade", {{}, Op::Upgrade, {}}},
  };
  for (const auto& f : fixed)
    if (path == f.path) return pick(method, f.m, "");

  if (path.substr(0, kClients.size()) == kClients) {
    // The id is everything after the prefix, '/' included (ids may contain it,
    // encoded or not).
    auto id = percent_decode(path.substr(kClients.size()));
    if (!id) return error(400);
    if (id->empty()) return error(404);
    return pick(method, {Op::Client, {}, Op::Kick}, std::move(*id));
  }
  if (path.substr(0, kBackends.size()) == kBackends) {
    std::string_view rest = path.substr(kBackends.size());
    Methods m{{}, Op::SetBackend, {}};
    if (rest.size() > kEvacuate.size() &&
        rest.substr(rest.size() - kEvacuate.size()) == kEvacuate) {
      rest = rest.substr(0, rest.size() - kEvacuate.size());
      m = {{}, Op::Evacuate, Op::CancelEvacuation};
    }
    // A name is one segment: a raw '/' left in it is a path we do not have.
    if (rest.empty() || rest.find('/') != std::string_view::npos) return error(404);
    auto name = percent_decode(rest);
    if (!name) return error(400);
    return pick(method, m, std::move(*name));
  }
  return error(404);
}

}  // namespace lb
