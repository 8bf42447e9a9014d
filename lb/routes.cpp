#include "lb/routes.hpp"

#include <netinet/in.h>

#include <cstring>

namespace lb {

RoutePlan plan_routes(const conf::Config& cfg) {
  RoutePlan p;
  const size_t n = cfg.backends.size();
  std::vector<bool> named(n, false);
  for (const auto& r : cfg.routes) {
    std::vector<bool> pool(n, false);
    for (const auto& name : r.backends)
      for (size_t i = 0; i < n; ++i)
        if (cfg.backends[i].name == name) pool[i] = named[i] = true;
    p.pools.push_back(std::move(pool));
  }
  p.default_pool.assign(n, false);
  bool any = false;
  for (size_t i = 0; i < n; ++i) any |= (p.default_pool[i] = !named[i]);
  if (!any) p.default_pool.assign(n, true);
  return p;
}

namespace {
bool in_cidr(const sockaddr_storage& peer, const std::array<uint8_t, 16>& net, uint8_t bits) {
  uint8_t a[16] = {};
  if (peer.ss_family == AF_INET) {
    a[10] = a[11] = 0xff;
    std::memcpy(a + 12, &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, 4);
  } else if (peer.ss_family == AF_INET6) {
    std::memcpy(a, &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr, 16);
  } else {
    return false;
  }
  for (unsigned i = 0; i < bits; ++i) {
    uint8_t mask = static_cast<uint8_t>(0x80 >> (i % 8));
    if ((a[i / 8] & mask) != (net[i / 8] & mask)) return false;
  }
  return true;
}
}  // namespace

int match_route(const std::vector<conf::Route>& routes, std::string_view client_id,
                const std::optional<std::string>& username, std::string_view listener,
                const sockaddr_storage& peer) {
  for (size_t i = 0; i < routes.size(); ++i) {
    const conf::Route& r = routes[i];
    if (r.client_id_prefix &&
        client_id.substr(0, r.client_id_prefix->size()) != *r.client_id_prefix)
      continue;
    if (r.username && (!username || *username != *r.username)) continue;
    if (r.listener && listener != *r.listener) continue;
    if (r.source && !in_cidr(peer, r.source->first, r.source->second)) continue;
    return static_cast<int>(i);
  }
  return -1;
}

const std::vector<bool>* pool_for(const RoutePlan& plan, int route) {
  if (plan.empty()) return nullptr;
  return route >= 0 ? &plan.pools[static_cast<size_t>(route)] : &plan.default_pool;
}

}  // namespace lb
