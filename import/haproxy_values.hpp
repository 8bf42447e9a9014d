// HAProxy argument formats the importer reads: times, sizes, integers,
// addresses, hex strings (configuration.txt 2.5, 2.6, 11.1). Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace importer {

// "10s", "500" (ms), "1m", "2h", "1d", "100us" (rounded up to 1 ms) -> milliseconds.
std::optional<uint64_t> parse_time_ms(std::string_view s);
// "100k" (x 1024), "1m" (x 2^20), "2g" (x 2^30), "500" -> count.
std::optional<uint64_t> parse_size(std::string_view s);
// Plain decimal, no sign, at most 2^53.
std::optional<uint64_t> parse_uint(std::string_view s);
// "101600044d51..." -> bytes; nullopt when the length is odd or a character is not hex.
std::optional<std::string> decode_hex(std::string_view s);

// One address as mqttlb writes it: "host:port" or "[v6]:port".
std::string endpoint(const std::string& host, uint16_t port);

// A `bind` address list ("*:1883", ":8883", "10.0.0.1:1883,10.0.0.2:1883",
// "ipv6@:::1883", "[::]:1883", "1883-1885" ranges). Each entry becomes one
// endpoint; `*`, empty and "0.0.0.0" hosts are the IPv4 wildcard, "::" IPv6's.
struct BindAddresses {
  std::vector<std::string> endpoints;
  std::string error;  // set: not translatable (unix socket, fd@, bad port ...)
  std::string note;   // set: translated approximately (e.g. a port range cut)
};
BindAddresses parse_bind_addresses(std::string_view spec);

// A `server` address: "10.0.0.1:1883", "broker-1:1883", "10.0.0.1" (no port:
// the client's destination port), "10.0.0.1:+1" (destination port + 1).
struct ServerAddress {
  std::string host;
  enum class Port { Fixed, Same, Offset } port_kind = Port::Fixed;
  int port = 0;  // Fixed: the port; Offset: the signed offset
  std::string error;
};
ServerAddress parse_server_address(std::string_view spec);

}  // namespace importer
