// Routing rules (docs/config.md "routes"): which backends may take a client.
// Pure. Routes are tried in order; the first whose every condition matches
// gives the pool; a client matching none goes to the default pool: the
// backends no route names (all of them when every backend is in some route).
// Balancing, affinity and health apply within the pool; a pool with no
// healthy backend refuses the client (tenants do not spill into each other).
#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"

namespace lb {

struct RoutePlan {
  std::vector<std::vector<bool>> pools;  // per route, per backend (config order)
  std::vector<bool> default_pool;
  bool empty() const { return pools.empty(); }
};

RoutePlan plan_routes(const conf::Config& cfg);

// The index of the first route that matches, or -1.
int match_route(const std::vector<conf::Route>& routes, std::string_view client_id,
                const std::optional<std::string>& username, std::string_view listener,
                const sockaddr_storage& peer);

// The client's pool in `plan` (null: no routes configured, every backend).
const std::vector<bool>* pool_for(const RoutePlan& plan, int route);

}  // namespace lb
