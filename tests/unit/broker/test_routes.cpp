// Cluster route table: which peers a topic goes to, shared groups by node,
// refcount-free set semantics per (peer, filter), peer removal and pruning,
// and agreement with filter_matches over a generated set.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "broker/routes.hpp"

using broker::RouteTable;

namespace {

struct Got {
  RouteTable::Mask plain = 0;
  std::map<std::string, RouteTable::Mask> groups;  // "group filter" -> peers
};

Got match(const RouteTable& t, std::string_view topic) {
  Got g;
  g.plain = t.match(
      topic, [&](const RouteTable::Group& x) { g.groups[x.name + " " + x.filter] |= x.peers; });
  return g;
}

}  // namespace

TEST_CASE("routes: peers per filter, shared groups apart") {
  RouteTable t;
  CHECK(t.add(0, "a/+"));
  CHECK(t.add(1, "a/#"));
  CHECK_FALSE(t.add(1, "a/#"));  // once per (peer, filter)
  CHECK(t.add(2, "$share/g/a/b"));
  CHECK(t.add(3, "$share/g/a/b"));
  CHECK(t.add(3, "$share/h/a/+"));
  CHECK_FALSE(t.add(4, "$share//a"));  // invalid share name
  CHECK_FALSE(t.add(64, "x"));         // beyond kMaxPeers
  CHECK(t.size() == 5);
  Got g = match(t, "a/b");
  CHECK(g.plain == 0b11);
  CHECK(g.groups == std::map<std::string, RouteTable::Mask>{{"g a/b", 0b1100}, {"h a/+", 0b1000}});
  CHECK(match(t, "a").plain == 0b10);  // "a/#" matches "a"
  CHECK(match(t, "$x/a").plain == 0);
  CHECK(t.remove(3, "$share/g/a/b"));
  CHECK_FALSE(t.remove(3, "$share/g/a/b"));
  CHECK_FALSE(t.remove(0, "nope/x"));
  CHECK(match(t, "a/b").groups.at("g a/b") == 0b100);
  t.remove_peer(1);
  CHECK(match(t, "a/b").plain == 0b1);
  CHECK(t.size() == 3);
  t.remove_peer(0);
  t.remove_peer(2);
  t.remove_peer(3);
  CHECK(t.size() == 0);
  CHECK(match(t, "a/b").groups.empty());
}

TEST_CASE("routes agree with filter_matches on every pair of a generated set") {
  const std::vector<std::string> filters = {"#",     "+",     "a",    "a/#", "a/+",
                                            "a/b",   "a/+/c", "+/b",  "+/+", "/+",
                                            "a/b/#", "$s/#",  "$s/+", "",    "a//b"};
  const std::vector<std::string> topics = {"a", "a/b", "a/c",  "a/b/c", "b",    "x/b",  "/a",
                                           "",  "a/",  "$s/a", "$s",    "a//b", "a/x/c"};
  RouteTable t;
  for (size_t i = 0; i < filters.size(); ++i) REQUIRE(t.add(unsigned(i), filters[i]));
  for (const auto& topic : topics) {
    RouteTable::Mask want = 0;
    for (size_t i = 0; i < filters.size(); ++i)
      if (broker::filter_matches(filters[i], topic)) want |= RouteTable::Mask(1) << i;
    CHECK_MESSAGE(match(t, topic).plain == want, topic);
  }
  for (size_t i = 0; i < filters.size(); ++i) REQUIRE(t.remove(unsigned(i), filters[i]));
  CHECK(t.size() == 0);
}
