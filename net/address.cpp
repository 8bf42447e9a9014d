#include "net/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace net {

bool to_sockaddr(const std::string& host, uint16_t port, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  auto* a4 = reinterpret_cast<sockaddr_in*>(&out);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    return true;
  }
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    return true;
  }
  return false;
}

socklen_t sockaddr_len(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

std::string ip_string(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  return buf;
}

CompactAddr::CompactAddr(const sockaddr_storage& ss) {
  u_.v6 = {};
  if (ss.ss_family == AF_INET)
    std::memcpy(&u_.v4, &ss, sizeof u_.v4);
  else if (ss.ss_family == AF_INET6)
    std::memcpy(&u_.v6, &ss, sizeof u_.v6);
  else
    u_.v4.sin_family = AF_UNSPEC;
}

CompactAddr::operator sockaddr_storage() const {
  sockaddr_storage ss{};
  if (family() == AF_INET)
    std::memcpy(&ss, &u_.v4, sizeof u_.v4);
  else if (family() == AF_INET6)
    std::memcpy(&ss, &u_.v6, sizeof u_.v6);
  return ss;
}

uint16_t CompactAddr::port() const {
  if (family() == AF_INET) return ntohs(u_.v4.sin_port);
  if (family() == AF_INET6) return ntohs(u_.v6.sin6_port);
  return 0;
}

std::string endpoint_string(const CompactAddr& a) {
  std::string ip = ip_string(a);
  if (ip.empty()) return ip;
  std::string port = std::to_string(a.port());
  return a.family() == AF_INET6 ? "[" + ip + "]:" + port : ip + ":" + port;
}

}  // namespace net
