#include "import/haproxy_values.hpp"

#include <arpa/inet.h>

namespace importer {

namespace {

constexpr uint64_t kMaxExact = 1ull << 53;

// Leading decimal digits of s (at least one), the rest in `rest`.
std::optional<uint64_t> leading_number(std::string_view s, std::string_view& rest) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + static_cast<uint64_t>(s[i] - '0');
    if (v > kMaxExact) return std::nullopt;
    ++i;
  }
  if (i == 0) return std::nullopt;
  rest = s.substr(i);
  return v;
}

std::optional<uint64_t> times(uint64_t v, uint64_t k) {
  if (v > kMaxExact / k) return std::nullopt;
  return v * k;
}

bool is_ipv6(const std::string& h) {
  in6_addr a;
  return inet_pton(AF_INET6, h.c_str(), &a) == 1;
}

std::optional<int> port_number(std::string_view s) {
  std::string_view rest;
  auto v = leading_number(s, rest);
  if (!v || !rest.empty() || *v < 1 || *v > 65535) return std::nullopt;
  return static_cast<int>(*v);
}

// Splits "host:port" at the last colon, accepting "[v6]:port". HAProxy also
// reads an unbracketed IPv6 address followed by ":port" (":::1883").
bool split_host_port(std::string_view a, std::string& host, std::string& port) {
  if (!a.empty() && a[0] == '[') {
    const size_t close = a.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(a.substr(1, close - 1));
    if (close + 1 == a.size()) {
      port.clear();
      return true;
    }
    if (a[close + 1] != ':') return false;
    port = std::string(a.substr(close + 2));
    return true;
  }
  const size_t colon = a.rfind(':');
  if (colon == std::string_view::npos) {
    host = std::string(a);
    port.clear();
    return true;
  }
  host = std::string(a.substr(0, colon));
  port = std::string(a.substr(colon + 1));
  return true;
}

}  // namespace

std::optional<uint64_t> parse_time_ms(std::string_view s) {
  std::string_view unit;
  auto v = leading_number(s, unit);
  if (!v) return std::nullopt;
  if (unit.empty() || unit == "ms") return v;
  if (unit == "us") return (*v + 999) / 1000;
  if (unit == "s") return times(*v, 1000);
  if (unit == "m") return times(*v, 60'000);
  if (unit == "h") return times(*v, 3'600'000);
  if (unit == "d") return times(*v, 86'400'000);
  return std::nullopt;
}

std::optional<uint64_t> parse_size(std::string_view s) {
  std::string_view unit;
  auto v = leading_number(s, unit);
  if (!v) return std::nullopt;
  if (unit.empty()) return v;
  if (unit == "k" || unit == "K") return times(*v, 1ull << 10);
  if (unit == "m" || unit == "M") return times(*v, 1ull << 20);
  if (unit == "g" || unit == "G") return times(*v, 1ull << 30);
  return std::nullopt;
}

std::optional<uint64_t> parse_uint(std::string_view s) {
  std::string_view rest;
  auto v = leading_number(s, rest);
  if (!v || !rest.empty()) return std::nullopt;
  return v;
}

std::optional<std::string> decode_hex(std::string_view s) {
  if (s.size() % 2) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 2);
  for (size_t i = 0; i < s.size(); i += 2) {
    int v = 0;
    for (size_t k = 0; k < 2; ++k) {
      const char c = s[i + k];
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out += static_cast<char>(v);
  }
  return out;
}

std::string endpoint(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

BindAddresses parse_bind_addresses(std::string_view spec) {
  BindAddresses r;
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t comma = spec.find(',', start);
    std::string_view a =
        spec.substr(start, comma == std::string_view::npos ? spec.npos : comma - start);
    start = comma == std::string_view::npos ? spec.size() + 1 : comma + 1;
    bool want_v6 = false;
    for (std::string_view p : {"ipv4@", "tcp4@", "tcp@", "ipv6@", "tcp6@"}) {
      if (a.substr(0, p.size()) == p) {
        want_v6 = p[3] == '6';
        a.remove_prefix(p.size());
        break;
      }
    }
    if (a.find('@') != std::string_view::npos || (!a.empty() && a[0] == '/')) {
      r.error = "\"" + std::string(a) + "\" is not a TCP address (mqttlb listens on TCP only)";
      return r;
    }
    std::string host, port;
    if (!split_host_port(a, host, port) || port.empty()) {
      r.error = "\"" + std::string(a) + "\" has no port";
      return r;
    }
    int first = 0, last = 0;
    const size_t dash = port.find('-');
    auto p1 = port_number(std::string_view(port).substr(0, dash));
    auto p2 = dash == std::string::npos ? p1 : port_number(std::string_view(port).substr(dash + 1));
    if (!p1 || !p2 || *p2 < *p1) {
      r.error = "port \"" + port + "\" is not a port or port range";
      return r;
    }
    first = *p1, last = *p2;
    if (last != first)
      r.note = "port range " + port + ": one listener per port (" +
               std::to_string(last - first + 1) + " listeners)";
    if (last - first >= 64) {
      r.error = "port range " + port + " is wider than 64 ports";
      return r;
    }
    if (host.empty() || host == "*") host = want_v6 ? "::" : "0.0.0.0";
    if (want_v6 && !is_ipv6(host) && host != "::") {
      r.error = "\"" + host + "\" is not an IPv6 address";
      return r;
    }
    for (int p = first; p <= last; ++p)
      r.endpoints.push_back(endpoint(host, static_cast<uint16_t>(p)));
  }
  return r;
}

ServerAddress parse_server_address(std::string_view spec) {
  ServerAddress r;
  std::string_view a = spec;
  for (std::string_view p : {"ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@"})
    if (a.substr(0, p.size()) == p) a.remove_prefix(p.size());
  if (a.find('@') != std::string_view::npos || (!a.empty() && a[0] == '/')) {
    r.error = "\"" + std::string(spec) + "\" is not a TCP address";
    return r;
  }
  std::string port;
  if (!split_host_port(a, r.host, port) || r.host.empty()) {
    r.error = "\"" + std::string(spec) + "\" is not host:port";
    return r;
  }
  // An unbracketed IPv6 address without a port ("fe80::1") splits badly; take it whole.
  if (r.host.find(':') != std::string::npos && !is_ipv6(r.host) && is_ipv6(std::string(a))) {
    r.host = std::string(a);
    port.clear();
  }
  if (port.empty()) {
    r.port_kind = ServerAddress::Port::Same;
    return r;
  }
  if (port[0] == '+' || port[0] == '-') {
    auto off = parse_uint(std::string_view(port).substr(1));
    if (!off || *off > 65535) {
      r.error = "port offset \"" + port + "\" is not a number";
      return r;
    }
    r.port_kind = ServerAddress::Port::Offset;
    r.port = port[0] == '-' ? -static_cast<int>(*off) : static_cast<int>(*off);
    return r;
  }
  auto p = port_number(port);
  if (!p) {
    r.error = "port \"" + port + "\" out of range 1..65535";
    return r;
  }
  r.port = *p;
  return r;
}

}  // namespace importer
