#include "broker/routes.hpp"

#include <algorithm>

namespace broker {

RouteTable::RouteTable() : root_(std::make_unique<Node>()) {}
RouteTable::~RouteTable() = default;

const RouteTable::Node* RouteTable::Node::kid(std::string_view k) const {
  auto it = kids.find(k);
  return it == kids.end() ? nullptr : it->second.get();
}

bool RouteTable::add(unsigned peer, std::string_view full) {
  if (peer >= kMaxPeers) return false;
  std::string_view group, filter = full;
  if (parse_shared(full, group, filter) == Share::Invalid) return false;
  Node* n = root_.get();
  size_t pos = 0;
  for (;;) {
    const size_t slash = filter.find('/', pos);
    const std::string_view level =
        filter.substr(pos, slash == std::string_view::npos ? slash : slash - pos);
    auto it = n->kids.find(level);
    if (it == n->kids.end())
      it = n->kids.emplace(std::string(level), std::make_unique<Node>()).first;
    n = it->second.get();
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  const Mask bit = Mask(1) << peer;
  Mask* m = &n->plain;
  if (!group.empty()) {
    auto g = std::find_if(n->groups.begin(), n->groups.end(),
                          [&](const Group& x) { return x.name == group; });
    if (g == n->groups.end()) {
      n->groups.push_back({std::string(filter), std::string(group), 0, 0});
      g = n->groups.end() - 1;
    }
    m = &g->peers;
  }
  if (*m & bit) return false;
  *m |= bit;
  ++count_;
  return true;
}

bool RouteTable::remove(unsigned peer, std::string_view full) {
  if (peer >= kMaxPeers) return false;
  std::string_view group, filter = full;
  if (parse_shared(full, group, filter) == Share::Invalid) return false;
  std::vector<std::pair<Node*, std::string>> path;
  Node* n = root_.get();
  size_t pos = 0;
  for (;;) {
    const size_t slash = filter.find('/', pos);
    std::string level(filter.substr(pos, slash == std::string_view::npos ? slash : slash - pos));
    auto it = n->kids.find(level);
    if (it == n->kids.end()) return false;
    path.emplace_back(n, std::move(level));
    n = it->second.get();
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  const Mask bit = Mask(1) << peer;
  if (group.empty()) {
    if (!(n->plain & bit)) return false;
    n->plain &= ~bit;
  } else {
    auto g = std::find_if(n->groups.begin(), n->groups.end(),
                          [&](const Group& x) { return x.name == group; });
    if (g == n->groups.end() || !(g->peers & bit)) return false;
    g->peers &= ~bit;
    if (!g->peers) n->groups.erase(g);
  }
  --count_;
  for (auto p = path.rbegin(); p != path.rend(); ++p) {  // prune empty nodes
    auto k = p->first->kids.find(p->second);
    if (!k->second->empty()) break;
    p->first->kids.erase(k);
  }
  return true;
}

size_t RouteTable::clear(Node* n, Mask bit) {
  size_t gone = 0;
  if (n->plain & bit) {
    n->plain &= ~bit;
    ++gone;
  }
  for (auto g = n->groups.begin(); g != n->groups.end();) {
    if (g->peers & bit) {
      g->peers &= ~bit;
      ++gone;
    }
    g = g->peers ? g + 1 : n->groups.erase(g);
  }
  for (auto k = n->kids.begin(); k != n->kids.end();) {
    gone += clear(k->second.get(), bit);
    k = k->second->empty() ? n->kids.erase(k) : std::next(k);
  }
  return gone;
}

void RouteTable::remove_peer(unsigned peer) {
  if (peer < kMaxPeers) count_ -= clear(root_.get(), Mask(1) << peer);
}

}  // namespace broker
