// The scale-out sections of the config (docs/scale-out.md): "affinity_store"
// (Redis shared by replicas) and "discovery" (backends from DNS). Same rules
// as loader.cpp: every error at once, each at its JSON pointer.
#include <arpa/inet.h>

#include "conf/reader.hpp"

namespace conf {

std::optional<RedisUrl> parse_redis_url(const std::string& s, std::string& err) {
  const std::string scheme = "redis://";
  if (s.rfind(scheme, 0) != 0) {
    err = "\"" + s + "\" does not start with redis://";
    return std::nullopt;
  }
  RedisUrl u;
  std::string rest = s.substr(scheme.size());
  // Userinfo: everything up to the last '@' (a password may contain '@').
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string info = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = info.find(':');
    if (colon == std::string::npos) {
      err = "credentials must be written user:password@ or :password@";
      return std::nullopt;
    }
    u.user = info.substr(0, colon);
    u.password = info.substr(colon + 1);
    if (u.password.empty()) {
      err = "empty password";
      return std::nullopt;
    }
  }
  std::string hostport = rest, db;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    hostport = rest.substr(0, slash);
    db = rest.substr(slash + 1);
  }
  std::string port;
  if (!hostport.empty() && hostport[0] == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) {
      err = "unterminated [IPv6] address";
      return std::nullopt;
    }
    u.host = hostport.substr(1, close - 1);
    std::string tail = hostport.substr(close + 1);
    if (!tail.empty()) {
      if (tail[0] != ':') {
        err = "\"" + tail + "\" after the address: expected :port";
        return std::nullopt;
      }
      port = tail.substr(1);
    }
    in6_addr a6;
    if (inet_pton(AF_INET6, u.host.c_str(), &a6) != 1) {
      err = "\"" + u.host + "\" is not an IPv6 address";
      return std::nullopt;
    }
  } else {
    auto colon = hostport.find(':');
    u.host = hostport.substr(0, colon);
    if (colon != std::string::npos) port = hostport.substr(colon + 1);
    if (u.host.empty() || u.host.size() > 253 ||
        u.host.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
            std::string::npos) {
      err = "\"" + u.host + "\" is not an IP address or a host name";
      return std::nullopt;
    }
  }
  auto number = [&](const std::string& t, uint64_t lo, uint64_t hi, const char* what,
                    uint64_t& out) {
    if (t.empty() || t.size() > 10 || t.find_first_not_of("0123456789") != std::string::npos) {
      err = std::string(what) + " \"" + t + "\" is not a number";
      return false;
    }
    out = std::stoull(t);
    if (out < lo || out > hi) {
      err = std::string(what) + " " + t + " out of range " + std::to_string(lo) + ".." +
            std::to_string(hi);
      return false;
    }
    return true;
  };
  uint64_t n = 0;
  if (!port.empty() || hostport.find(':') != std::string::npos) {
    if (!number(port, 1, 65535, "port", n)) return std::nullopt;
    u.port = static_cast<uint16_t>(n);
  }
  if (!db.empty()) {
    if (!number(db, 0, 1'000'000, "database", n)) return std::nullopt;
    u.db = static_cast<uint32_t>(n);
  }
  return u;
}

namespace reader {

void load_affinity_store(Errors& e, const json& j, const std::string& ptr, AffinityStore& a) {
  Obj o(e, j, ptr,
        {"redis", "key_prefix", "timeout_ms", "reconnect_max_ms", "queue", "resync_batch",
         "resync_interval_ms"});
  if (!o.valid()) return;
  if (o.require("redis") && o.get_string("redis", a.redis, true)) {
    std::string err;
    if (auto u = parse_redis_url(a.redis, err))
      a.url = *u;
    else
      e.add(o.at("redis"), err);
  }
  if (o.get_string("key_prefix", a.key_prefix) &&
      (a.key_prefix.size() > 64 || a.key_prefix.find_first_of(" *?[]\\") != std::string::npos))
    e.add(o.at("key_prefix"), "at most 64 bytes, without spaces or SCAN pattern characters *?[]\\");
  o.get_uint("timeout_ms", a.timeout_ms, 50, 60'000);
  o.get_uint("reconnect_max_ms", a.reconnect_max_ms, 100, 600'000);
  o.get_uint("queue", a.queue, 1, 1'000'000);
  o.get_uint("resync_batch", a.resync_batch, 1, 100'000);
  o.get_uint("resync_interval_ms", a.resync_interval_ms, 0, 60'000);
}

void load_discovery(Errors& e, const json& arr, const std::string& ptr, Config& c) {
  if (!arr.is_array()) {
    e.add(ptr, std::string("expected an array, got ") + type_name(arr));
    return;
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < arr.size(); ++i) {
    Obj o(e, arr[i], child(ptr, i),
          {"dns", "type", "port", "interval_ms", "timeout_ms", "resolvers", "template"});
    if (!o.valid()) continue;
    Discovery d;
    if (o.require("dns") && o.get_string("dns", d.dns, true) &&
        (d.dns.size() > 253 ||
         d.dns.find_first_not_of(
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
             std::string::npos))
      e.add(o.at("dns"), "\"" + d.dns + "\" is not a DNS name");
    o.get_enum("type", d.type,
               {{"A", Discovery::Type::A},
                {"AAAA", Discovery::Type::AAAA},
                {"SRV", Discovery::Type::SRV}});
    o.get_uint("port", d.port, 1, 65535);
    if (d.type == Discovery::Type::SRV && o.find("port"))
      e.add(o.at("port"), "not used with type SRV (each record carries its port)");
    o.get_uint("interval_ms", d.interval_ms, 100, 3'600'000);
    o.get_uint("timeout_ms", d.timeout_ms, 100, 60'000);
    if (const json* r = o.find("resolvers")) {
      if (!r->is_array()) {
        e.add(o.at("resolvers"), std::string("expected an array, got ") + type_name(*r));
      } else {
        for (size_t k = 0; k < r->size(); ++k) {
          const std::string at = child(o.at("resolvers"), k);
          if (!(*r)[k].is_string()) {
            e.add(at, std::string("expected a string, got ") + type_name((*r)[k]));
            continue;
          }
          std::string err;
          auto ep = parse_endpoint((*r)[k].get<std::string>(), err, false);
          in6_addr a6;
          in_addr a4;
          if (ep && inet_pton(AF_INET, ep->host.c_str(), &a4) != 1 &&
              inet_pton(AF_INET6, ep->host.c_str(), &a6) != 1)
            e.add(at, "a resolver must be a numeric ip:port");
          else if (!ep)
            e.add(at, err);
          else
            d.resolvers.push_back(*ep);
        }
      }
    }
    if (const json* t = o.find("template")) {
      Obj to(e, *t, o.at("template"),
             {"weight", "proxy_protocol", "tls", "admin", "websocket_port"});
      if (to.valid()) load_backend_fields(e, to, d.templ);
    }
    std::string id =
        d.dns + "/" + std::to_string(static_cast<int>(d.type)) + "/" + std::to_string(d.port);
    if (!seen.insert(id).second) e.add(o.at("dns"), "the same name, type and port twice");
    c.discovery.push_back(std::move(d));
  }
}

}  // namespace reader
}  // namespace conf
