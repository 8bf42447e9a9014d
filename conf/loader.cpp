#include "conf/loader.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "conf/reader.hpp"

namespace conf {

using json = nlohmann::json;

std::string Endpoint::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

using namespace reader;

namespace reader {
void load_backend_fields(Errors& e, Obj& o, Backend& b) {
  b.weight_given = o.find("weight") != nullptr;
  b.admin_given = o.find("admin") != nullptr;
  o.get_uint("weight", b.weight, 1, 256);
  o.get_enum("proxy_protocol", b.proxy_protocol,
             {{"none", ProxyProtocol::None}, {"v1", ProxyProtocol::V1}, {"v2", ProxyProtocol::V2}});
  o.get_enum("admin", b.admin,
             {{"ready", BackendAdmin::Ready},
              {"drain", BackendAdmin::Drain},
              {"maint", BackendAdmin::Maint}});
  o.get_uint("websocket_port", b.websocket_port, 1, 65535);
  if (const json* t = o.find("tls")) {
    Obj to(e, *t, o.at("tls"), {"ca", "verify", "sni", "cert", "key"});
    if (to.valid()) {
      BackendTls tls;
      to.get_string("ca", tls.ca);
      to.get_bool("verify", tls.verify);
      to.get_string("sni", tls.sni);
      to.get_string("cert", tls.cert);
      to.get_string("key", tls.key);
      if (tls.cert.empty() != tls.key.empty())
        e.add(to.ptr(), "\"cert\" and \"key\" must be given together");
      b.tls = tls;
    }
  }
}
}  // namespace reader

namespace {

void load_listeners(Errors& e, const json& arr, const std::string& ptr, Config& c) {
  if (!arr.is_array()) {
    e.add(ptr, std::string("expected an array, got ") + type_name(arr));
    return;
  }
  if (arr.empty()) e.add(ptr, "at least one listener is required");
  std::set<std::string> names, binds;
  for (size_t i = 0; i < arr.size(); ++i) {
    Obj o(e, arr[i], child(ptr, i), {"name", "bind", "tls", "websocket", "identity"});
    if (!o.valid()) continue;
    Listener l;
    if (o.require("name") && o.get_string("name", l.name, true) && !names.insert(l.name).second)
      e.add(o.at("name"), "duplicate listener name \"" + l.name + "\"");
    if (o.require("bind") && o.get_endpoint("bind", l.bind) && !binds.insert(l.bind.str()).second)
      e.add(o.at("bind"), "address " + l.bind.str() + " is already used by another listener");
    if (const json* t = o.find("tls")) {
      Obj to(e, *t, o.at("tls"),
             {"cert", "key", "ca", "verify_client", "identity", "record_layer"});
      if (to.valid()) {
        ListenerTls tls;
        if (to.require("cert")) to.get_string("cert", tls.cert, true);
        if (to.require("key")) to.get_string("key", tls.key, true);
        to.get_string("ca", tls.ca);
        to.get_enum("verify_client", tls.verify_client,
                    {{"none", ListenerTls::Verify::None},
                     {"optional", ListenerTls::Verify::Optional},
                     {"required", ListenerTls::Verify::Required}});
        to.get_enum("record_layer", tls.record_layer,
                    {{"mqttlb", ListenerTls::RecordLayer::Mqttlb},
                     {"openssl", ListenerTls::RecordLayer::OpenSsl}});
        // The identity object sits in `tls`, or beside it on the listener
        // (the same thing, SPEC.md's "listener identity"); not both.
        const json* id = to.find("identity");
        std::string id_at = id ? to.at("identity") : std::string();
        if (const json* lid = o.find("identity")) {
          if (id) e.add(o.at("identity"), "given twice: here and in tls.identity");
          id = lid;
          id_at = o.at("identity");
        }
        if (id) {
          Obj io(e, *id, id_at, {"from", "enforce"});
          io.get_enum("from", tls.identity_from,
                      {{"cn", ListenerTls::IdentityFrom::Cn},
                       {"san-dns", ListenerTls::IdentityFrom::SanDns},
                       {"san-uri", ListenerTls::IdentityFrom::SanUri}});
          io.get_enum("enforce", tls.identity_enforce,
                      {{"off", ListenerTls::Enforce::Off},
                       {"match", ListenerTls::Enforce::Match},
                       {"rewrite", ListenerTls::Enforce::Rewrite}});
          if (tls.identity_enforce != ListenerTls::Enforce::Off &&
              tls.verify_client == ListenerTls::Verify::None)
            e.add(io.at("enforce"),
                  "needs client certificates (verify_client optional or required)");
        }
        if (tls.verify_client != ListenerTls::Verify::None && tls.ca.empty())
          e.add(to.at("verify_client"),
                "needs \"ca\" (the CA file client certificates are verified against)");
        l.tls = tls;
      }
    }
    if (o.find("identity") && !o.find("tls"))
      e.add(o.at("identity"), "needs \"tls\": the identity comes from the client certificate");
    if (const json* w = o.find("websocket")) {
      Obj wo(e, *w, o.at("websocket"), {"path", "to_backend", "max_handshake_bytes"});
      if (wo.valid()) {
        ListenerWebSocket ws;
        if (wo.get_string("path", ws.path, true) &&
            (ws.path[0] != '/' || ws.path.find_first_of("? \t\r\n#") != std::string::npos))
          e.add(wo.at("path"),
                "\"" + ws.path + "\" is not a request path (starts with /, no query, no spaces)");
        wo.get_enum("to_backend", ws.to_backend,
                    {{"mqtt", ListenerWebSocket::ToBackend::Mqtt},
                     {"websocket", ListenerWebSocket::ToBackend::WebSocket}});
        wo.get_uint("max_handshake_bytes", ws.max_handshake_bytes, 512, 65536);
        l.websocket = ws;
      }
    }
    c.listeners.push_back(std::move(l));
  }
}

void load_backends(Errors& e, const json& arr, const std::string& ptr, Config& c) {
  if (!arr.is_array()) {
    e.add(ptr, std::string("expected an array, got ") + type_name(arr));
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < arr.size(); ++i) {
    Obj o(e, arr[i], child(ptr, i),
          {"name", "address", "weight", "proxy_protocol", "tls", "admin", "websocket_port"});
    if (!o.valid()) continue;
    Backend b;
    if (o.require("name") && o.get_string("name", b.name, true) && !names.insert(b.name).second)
      e.add(o.at("name"), "duplicate backend name \"" + b.name + "\"");
    if (o.require("address")) o.get_endpoint("address", b.address);
    load_backend_fields(e, o, b);
    c.backends.push_back(std::move(b));
  }
}

// A listener that forwards WebSocket to brokers needs a WebSocket port on
// every backend its clients can reach: any of them (routes or not), and those
// that discovery will add.
void check_websocket_backends(Errors& e, const Config& c) {
  for (size_t i = 0; i < c.listeners.size(); ++i) {
    const auto& ws = c.listeners[i].websocket;
    if (!ws || ws->to_backend != ListenerWebSocket::ToBackend::WebSocket) continue;
    const std::string at = "/listeners/" + std::to_string(i) + "/websocket/to_backend";
    for (size_t b = 0; b < c.backends.size(); ++b)
      if (c.backends[b].websocket_port == 0)
        e.add(at,
              "\"websocket\" needs every backend's websocket_port (the broker's WebSocket "
              "port); /backends/" +
                  std::to_string(b) + " (" + c.backends[b].name + ") has none");
    for (size_t d = 0; d < c.discovery.size(); ++d)
      if (c.discovery[d].templ.websocket_port == 0)
        e.add(at, "\"websocket\" needs websocket_port in /discovery/" + std::to_string(d) +
                      "/template");
  }
}

void load_balance(Errors& e, const json& j, const std::string& ptr, Balance& b) {
  Obj o(e, j, ptr,
        {"algorithm", "affinity", "affinity_max_entries", "affinity_ttl_s", "hash_balance_factor",
         "retries", "backend_connect_timeout_ms", "retry_backoff_ms", "affinity_max_bytes"});
  if (!o.valid()) return;
  o.get_enum("algorithm", b.algorithm,
             {{"leastconn", Algorithm::LeastConn},
              {"round-robin", Algorithm::RoundRobin},
              {"consistent-hash", Algorithm::ConsistentHash}});
  o.get_enum("affinity", b.affinity, {{"none", Affinity::None}, {"client-id", Affinity::ClientId}});
  o.get_uint("affinity_max_entries", b.affinity_max_entries, 1, 100'000'000);
  o.get_uint("affinity_ttl_s", b.affinity_ttl_s, 1, 31'536'000);
  o.get_double("hash_balance_factor", b.hash_balance_factor, 0.01, 10.0);
  o.get_uint("retries", b.retries, 0, 16);
  o.get_uint("backend_connect_timeout_ms", b.backend_connect_timeout_ms, 10, 600'000);
  o.get_uint("retry_backoff_ms", b.retry_backoff_ms, 0, 60'000);
  o.get_uint("affinity_max_bytes", b.affinity_max_bytes, 1ull << 20, 1ull << 40);
}

void load_health(Errors& e, const json& j, const std::string& ptr, Health& h) {
  Obj o(e, j, ptr,
        {"interval_ms", "timeout_ms", "rise", "fall", "mode", "protocol_level", "keep_alive_s",
         "username", "password", "accept_refusal", "client_id_prefix", "slowstart_ms", "on_down",
         "shutdown_spread_ms", "enabled"});
  if (!o.valid()) return;
  o.get_bool("enabled", h.enabled);
  o.get_uint("interval_ms", h.interval_ms, 100, 3'600'000);
  o.get_uint("timeout_ms", h.timeout_ms, 10, 600'000);
  o.get_uint("rise", h.rise, 1, 100);
  o.get_uint("fall", h.fall, 1, 100);
  o.get_enum("mode", h.mode,
             {{"persistent", CheckMode::Persistent}, {"reconnect", CheckMode::Reconnect}});
  uint32_t level = h.protocol_level;
  if (const json* v = o.find("protocol_level")) {
    if (v->is_number_integer() && (v->get<int64_t>() == 4 || v->get<int64_t>() == 5))
      level = v->get<uint32_t>();
    else
      e.add(o.at("protocol_level"), "must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0)");
  }
  h.protocol_level = static_cast<uint8_t>(level);
  o.get_uint("keep_alive_s", h.keep_alive_s, 1, 65'535);
  o.get_opt_string("username", h.username);
  o.get_opt_string("password", h.password);
  o.get_bool("accept_refusal", h.accept_refusal);
  o.get_string("client_id_prefix", h.client_id_prefix);
  if (h.client_id_prefix.size() > 16)
    e.add(o.at("client_id_prefix"), "longer than 16 bytes (check ids must fit MQTT 3.1's 23)");
  o.get_uint("slowstart_ms", h.slowstart_ms, 0, 3'600'000);
  o.get_enum("on_down", h.on_down,
             {{"keep", OnDown::Keep}, {"shutdown-sessions", OnDown::ShutdownSessions}});
  o.get_uint("shutdown_spread_ms", h.shutdown_spread_ms, 0, 3'600'000);
  if (h.timeout_ms > h.interval_ms && o.find("timeout_ms"))
    e.add(o.at("timeout_ms"), std::to_string(h.timeout_ms) + " must not exceed interval_ms (" +
                                  std::to_string(h.interval_ms) + ")");
}

void load_limits(Errors& e, const json& j, const std::string& ptr, Limits& l) {
  Obj o(
      e, j, ptr,
      {"max_connections", "max_connections_per_ip", "max_connect_bytes", "connect_timeout_ms",
       "idle_grace_ms", "keepalive0_idle_cap_s", "shutdown_grace_ms", "backend_connack_timeout_ms",
       "backend_max_connecting", "backend_queue", "backend_queue_timeout_ms", "memory_budget_bytes",
       "drain_timeout_ms", "connect_rate", "flap", "tls_handshake_rate"});
  if (!o.valid()) return;
  o.get_uint("max_connections", l.max_connections, 0, 10'000'000);
  o.get_uint("max_connections_per_ip", l.max_connections_per_ip, 0, 10'000'000);
  o.get_uint("max_connect_bytes", l.max_connect_bytes, 1024, 1024 * 1024);
  o.get_uint("connect_timeout_ms", l.connect_timeout_ms, 100, 600'000);
  o.get_uint("idle_grace_ms", l.idle_grace_ms, 0, 3'600'000);
  o.get_uint("keepalive0_idle_cap_s", l.keepalive0_idle_cap_s, 1, 604'800);
  o.get_uint("shutdown_grace_ms", l.shutdown_grace_ms, 0, 3'600'000);
  o.get_uint("backend_connack_timeout_ms", l.backend_connack_timeout_ms, 50, 600'000);
  o.get_uint("backend_max_connecting", l.backend_max_connecting, 1, 1'000'000);
  o.get_uint("backend_queue", l.backend_queue, 0, 10'000'000);
  o.get_uint("backend_queue_timeout_ms", l.backend_queue_timeout_ms, 10, 600'000);
  o.get_uint("memory_budget_bytes", l.memory_budget_bytes, 0, 1ull << 44);
  o.get_uint("drain_timeout_ms", l.drain_timeout_ms, 0, 86'400'000);
  o.get_uint("tls_handshake_rate", l.tls_handshake_rate, 0, 10'000'000);
  if (const json* j = o.find("connect_rate")) {
    Obj r(e, *j, o.at("connect_rate"),
          {"global_per_s", "per_ip_per_s", "burst", "ip_prefix_v4", "ip_prefix_v6"});
    r.get_uint("global_per_s", l.connect_rate.global_per_s, 0, 10'000'000);
    r.get_uint("per_ip_per_s", l.connect_rate.per_ip_per_s, 0, 10'000'000);
    r.get_uint("burst", l.connect_rate.burst, 0, 10'000'000);
    r.get_uint("ip_prefix_v4", l.connect_rate.ip_prefix_v4, 8, 32);
    r.get_uint("ip_prefix_v6", l.connect_rate.ip_prefix_v6, 16, 128);
  }
  if (const json* j = o.find("flap")) {
    Obj f(e, *j, o.at("flap"), {"max_connects", "window_s", "penalty_s", "max_penalty_s"});
    f.get_uint("max_connects", l.flap.max_connects, 0, 1'000'000);
    f.get_uint("window_s", l.flap.window_s, 1, 86'400);
    f.get_uint("penalty_s", l.flap.penalty_s, 1, 86'400);
    f.get_uint("max_penalty_s", l.flap.max_penalty_s, 1, 604'800);
  }
  if (l.memory_budget_bytes != 0 && l.memory_budget_bytes < (1ull << 20))
    e.add(o.at("memory_budget_bytes"),
          std::to_string(l.memory_budget_bytes) + " is below 1 MiB (0 disables the budget)");
}

// "10.0.0.0/8", "2001:db8::/32", "192.0.2.7" (a single address).
bool parse_cidr(const std::string& text, std::array<uint8_t, 16>& addr, uint8_t& bits,
                std::string& err) {
  std::string host = text;
  int len = -1;
  if (auto slash = text.find('/'); slash != std::string::npos) {
    host = text.substr(0, slash);
    std::string n = text.substr(slash + 1);
    if (n.empty() || n.size() > 3 || n.find_first_not_of("0123456789") != std::string::npos) {
      err = "\"" + text + "\": bad prefix length";
      return false;
    }
    len = std::stoi(n);
  }
  in_addr a4;
  in6_addr a6;
  addr.fill(0);
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    if (len > 32) {
      err = "\"" + text + "\": prefix length above 32";
      return false;
    }
    addr[10] = addr[11] = 0xff;  // v4-mapped
    std::memcpy(addr.data() + 12, &a4, 4);
    bits = static_cast<uint8_t>(96 + (len < 0 ? 32 : len));
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    if (len > 128) {
      err = "\"" + text + "\": prefix length above 128";
      return false;
    }
    std::memcpy(addr.data(), &a6, 16);
    bits = static_cast<uint8_t>(len < 0 ? 128 : len);
    return true;
  }
  err = "\"" + text + "\" is not an IP address or CIDR";
  return false;
}

void load_routes(Errors& e, const json& arr, const std::string& ptr, Config& c) {
  if (!arr.is_array()) {
    e.add(ptr, std::string("expected an array, got ") + type_name(arr));
    return;
  }
  std::set<std::string> names;
  for (const auto& b : c.backends) names.insert(b.name);
  for (size_t i = 0; i < arr.size(); ++i) {
    Obj o(e, arr[i], child(ptr, i), {"match", "backends"});
    if (!o.valid()) continue;
    Route r;
    if (o.require("match")) {
      Obj m(e, *o.find("match"), o.at("match"),
            {"client_id_prefix", "username", "listener", "source"});
      if (m.valid()) {
        m.get_opt_string("client_id_prefix", r.client_id_prefix);
        m.get_opt_string("username", r.username);
        m.get_opt_string("listener", r.listener);
        std::string src;
        if (m.get_string("source", src)) {
          std::array<uint8_t, 16> a;
          uint8_t bits = 0;
          std::string err;
          if (parse_cidr(src, a, bits, err)) {
            r.source = std::make_pair(a, bits);
            r.source_text = src;
          } else {
            e.add(m.at("source"), err);
          }
        }
        if (r.listener) {
          bool known = false;
          for (const auto& l : c.listeners) known |= l.name == *r.listener;
          if (!known) e.add(m.at("listener"), "no listener named \"" + *r.listener + "\"");
        }
        if (!r.client_id_prefix && !r.username && !r.listener && !m.find("source"))
          e.add(o.at("match"),
                "needs at least one of client_id_prefix, username, listener, source");
      }
    }
    if (o.require("backends")) {
      const json& b = *o.find("backends");
      if (!b.is_array() || b.empty()) {
        e.add(o.at("backends"), "expected a non-empty array of backend names");
      } else {
        for (size_t k = 0; k < b.size(); ++k) {
          if (!b[k].is_string()) {
            e.add(child(o.at("backends"), k), "expected a backend name");
            continue;
          }
          std::string n = b[k].get<std::string>();
          if (!names.count(n)) e.add(child(o.at("backends"), k), "no backend named \"" + n + "\"");
          r.backends.push_back(n);
        }
      }
    }
    c.routes.push_back(std::move(r));
  }
}

bool loopback(const std::string& host) {
  return host == "::1" || host.rfind("127.", 0) == 0 || host == "localhost";
}

void load_admin(Errors& e, const json& j, const std::string& ptr, Admin& a) {
  Obj o(e, j, ptr, {"bind", "token_file"});
  if (!o.valid()) return;
  std::string bind;
  if (o.require("bind") && o.get_string("bind", bind, true)) {
    if (bind.rfind("unix:", 0) == 0) {
      a.unix_path = bind.substr(5);
      if (a.unix_path.empty() || a.unix_path.size() > 100)
        e.add(o.at("bind"), "unix socket path must be 1..100 bytes");
    } else {
      std::string err;
      auto ep = parse_endpoint(bind, err, e.resolve);
      if (ep)
        a.bind = *ep;
      else
        e.add(o.at("bind"), err);
    }
  }
  o.get_string("token_file", a.token_file, true);
  // Anyone who can reach it could drain the fleet: off loopback, a token is required.
  if (a.bind && !loopback(a.bind->host) && a.token_file.empty())
    e.add(o.at("token_file"),
          "required when admin.bind is not a loopback address (" + a.bind->str() + ")");
}

}  // namespace

std::optional<Endpoint> parse_endpoint(const std::string& s, std::string& err, bool resolve) {
  std::string host, port_s;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      err = "\"" + s + "\" is not [IPv6]:port";
      return std::nullopt;
    }
    host = s.substr(1, close - 1);
    port_s = s.substr(close + 2);
    in6_addr a6;
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
      err = "\"" + host + "\" is not an IPv6 address";
      return std::nullopt;
    }
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      err = "\"" + s + "\" is not host:port";
      return std::nullopt;
    }
    host = s.substr(0, colon);
    port_s = s.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      err = "\"" + s + "\": write IPv6 addresses as [addr]:port";
      return std::nullopt;
    }
  }
  if (port_s.empty() || port_s.size() > 6 ||
      port_s.find_first_not_of("0123456789") != std::string::npos) {
    err = "port \"" + port_s + "\" is not a number";
    return std::nullopt;
  }
  unsigned long port = std::stoul(port_s);
  if (port < 1 || port > 65535) {
    err = "port " + port_s + " out of range 1..65535";
    return std::nullopt;
  }
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, host.c_str(), &a4) != 1 && inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
    if (host.empty() || host.size() > 253 ||
        host.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
            std::string::npos) {
      err = "\"" + host + "\" is not an IP address or a host name";
      return std::nullopt;
    }
    if (!resolve) return Endpoint{host, static_cast<uint16_t>(port)};
    // A name: resolve once, now (never on the data path).
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) {
      err = "cannot resolve host \"" + host + "\"";
      return std::nullopt;
    }
    const addrinfo* pick = res;
    for (const addrinfo* p = res; p; p = p->ai_next)
      if (p->ai_family == AF_INET) {
        pick = p;
        break;
      }
    char buf[INET6_ADDRSTRLEN] = {};
    if (pick->ai_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(pick->ai_addr)->sin_addr, buf, sizeof buf);
    else
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(pick->ai_addr)->sin6_addr, buf,
                sizeof buf);
    freeaddrinfo(res);
    host = buf;
  }
  return Endpoint{host, static_cast<uint16_t>(port)};
}

namespace {
// Deepest [ / { nesting outside strings. nlohmann parses iteratively but frees
// a document recursively: a hostile file must not overflow the stack.
size_t nesting(const std::string& t) {
  size_t depth = 0, max = 0;
  bool str = false, esc = false;
  for (char c : t) {
    if (str) {
      if (esc)
        esc = false;
      else if (c == '\\')
        esc = true;
      else if (c == '"')
        str = false;
    } else if (c == '"') {
      str = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max) max = depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return max;
}
constexpr size_t kMaxNesting = 64;
constexpr size_t kMaxConfigBytes = 16 << 20;
}  // namespace

LoadResult load_string(const std::string& text, const LoadOptions& opts) {
  LoadResult r;
  Errors e(r.errors, opts.resolve_names);
  if (text.size() > kMaxConfigBytes) {
    e.add("", "config larger than 16 MiB");
    return r;
  }
  if (nesting(text) > kMaxNesting) {
    e.add("", "JSON nested deeper than " + std::to_string(kMaxNesting) + " levels");
    return r;
  }
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& ex) {  // parse_error, and out_of_range for numbers like 1e4444
    e.add("", std::string("invalid JSON: ") + ex.what());
    return r;
  }
  Config c;
  Obj root(
      e, doc, "",
      {"listeners", "backends", "balance", "health", "limits", "metrics", "admin", "evacuation",
       "upgrade", "routes", "workers", "affinity_store", "discovery", "forwarding"});
  if (!root.valid()) return r;
  if (root.require("listeners")) load_listeners(e, *root.find("listeners"), "/listeners", c);
  // Backends come from the file, from DNS (discovery[]), or both; at least one source.
  if (const json* j = root.find("discovery")) load_discovery(e, *j, "/discovery", c);
  if (const json* j = root.find("backends")) {
    load_backends(e, *j, "/backends", c);
    if (j->is_array() && j->empty() && c.discovery.empty())
      e.add("/backends", "at least one backend is required (or a discovery[] entry)");
  } else if (c.discovery.empty()) {
    root.require("backends");
  }
  if (const json* j = root.find("affinity_store"))
    load_affinity_store(e, *j, "/affinity_store", c.affinity_store);
  if (const json* j = root.find("balance")) load_balance(e, *j, "/balance", c.balance);
  if (const json* j = root.find("health")) load_health(e, *j, "/health", c.health);
  if (const json* j = root.find("limits")) load_limits(e, *j, "/limits", c.limits);
  if (const json* j = root.find("metrics")) {
    Obj m(e, *j, "/metrics", {"bind"});
    Endpoint ep;
    if (m.valid() && m.get_endpoint("bind", ep)) c.metrics.bind = ep;
  }
  if (const json* j = root.find("admin")) load_admin(e, *j, "/admin", c.admin);
  if (const json* j = root.find("evacuation")) {
    Obj o(e, *j, "/evacuation", {"rate_per_s", "deadline_s"});
    o.get_uint("rate_per_s", c.evacuation.rate_per_s, 1, 1'000'000);
    o.get_uint("deadline_s", c.evacuation.deadline_s, 1, 86'400);
  }
  if (const json* j = root.find("upgrade")) {
    Obj o(e, *j, "/upgrade", {"evict_rate_per_s", "deadline_s"});
    o.get_uint("evict_rate_per_s", c.upgrade.evict_rate_per_s, 1, 1'000'000);
    o.get_uint("deadline_s", c.upgrade.deadline_s, 1, 86'400);
  }
  if (const json* j = root.find("routes")) load_routes(e, *j, "/routes", c);
  check_websocket_backends(e, c);
  root.get_uint("workers", c.workers, 0, 256);
  root.get_enum("forwarding", c.forwarding,
                {{"userspace", Forwarding::Userspace},
                 {"kernel", Forwarding::Kernel},
                 {"auto", Forwarding::Auto}});
  r.parsed = c;
  if (r.errors.empty()) r.config = std::move(c);
  return r;
}

LoadResult load_file(const std::string& path, const LoadOptions& opts) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    LoadResult r;
    r.errors.push_back("/: cannot read file " + path);
    return r;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  return load_string(ss.str(), opts);
}

}  // namespace conf
