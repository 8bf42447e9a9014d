// Socket address helpers shared by the balancer, the health checker and the
// load generator. Pure (no I/O, no name resolution).
#pragma once

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

}  // namespace net
