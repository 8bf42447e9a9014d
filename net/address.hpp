// Socket address helpers shared by the balancer, the health checker and the
// load generator. Pure (no I/O, no name resolution).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace net {

// Numeric IPv4 or IPv6 host + port -> sockaddr. False if host is not numeric.
bool to_sockaddr(const std::string& host, uint16_t port, sockaddr_storage& out);
// Length to pass to bind/connect for this family.
socklen_t sockaddr_len(const sockaddr_storage& ss);
// "192.0.2.1", "2001:db8::1"; empty for other families.
std::string ip_string(const sockaddr_storage& ss);

// An IPv4 or IPv6 socket address in 28 bytes instead of sockaddr_storage's 128:
// what a long-lived session keeps of its peer (docs/benchmarks.md, idle
// memory). Other families are stored as AF_UNSPEC.
class CompactAddr {
 public:
  CompactAddr() { u_.v6 = {}; }
  CompactAddr(const sockaddr_storage& ss);  // NOLINT: implicit on purpose
  operator sockaddr_storage() const;        // NOLINT
  sa_family_t family() const { return u_.v4.sin_family; }
  uint16_t port() const;  // host order

 private:
  union {
    sockaddr_in v4;
    sockaddr_in6 v6;
  } u_;
};
// "192.0.2.1:1883", "[2001:db8::1]:1883"; empty for other families.
std::string endpoint_string(const CompactAddr& a);

}  // namespace net
