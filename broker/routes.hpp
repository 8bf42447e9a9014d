// What the other nodes of a cluster subscribe to: the filters each peer has
// announced (RouteAdd/RouteDel, refcounted on the sender, so each (peer,
// filter) is here once). Matching a topic says which peers need a message and
// which shared groups have members where. Pure: no I/O; loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/router.hpp"

namespace broker {

class RouteTable {
 public:
  using Mask = uint64_t;  // bit p = peer index p
  static constexpr unsigned kMaxPeers = 64;

  // A shared subscription group (GROUP of $share/GROUP/FILTER) and the peers
  // with members in it.
  struct Group {
    std::string filter, name;
    Mask peers = 0;
    mutable uint32_t next = 0;  // round robin over the nodes serving it
  };

  RouteTable();
  ~RouteTable();
  // `full` as subscribed: "F" or "$share/G/F". add: false when already there
  // or invalid; remove: false when it was not there.
  bool add(unsigned peer, std::string_view full);
  bool remove(unsigned peer, std::string_view full);
  void remove_peer(unsigned peer);
  size_t size() const { return count_; }

  // Returns the peers with a matching non-shared route and calls
  // group(const Group&) for every matching shared group.
  template <typename G>
  Mask match(std::string_view topic, G&& group) const {
    Mask m = 0;
    walk_matches(root_.get(), topic, [&](const Node* n) {
      m |= n->plain;
      for (const auto& g : n->groups) group(g);
    });
    return m;
  }

 private:
  struct Node {
    std::unordered_map<std::string, std::unique_ptr<Node>, StrHash, std::equal_to<>> kids;
    Mask plain = 0;
    std::vector<Group> groups;
    const Node* kid(std::string_view k) const;
    bool empty() const { return !plain && groups.empty() && kids.empty(); }
  };
  // Clears `peer` below n; returns how many routes went.
  static size_t clear(Node* n, Mask bit);

  std::unique_ptr<Node> root_;
  size_t count_ = 0;
};

}  // namespace broker
