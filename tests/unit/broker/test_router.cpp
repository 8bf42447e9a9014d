// Subscription trie and retained store: wildcard semantics ([MQTT-4.7]),
// $-topics, replace/remove/prune, and the trie agreeing with the reference
// matcher on every (filter, topic) pair of a generated set.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "broker/router.hpp"
#include "broker/session.hpp"

using broker::filter_matches;
using broker::Session;
using broker::SubOpts;
using broker::SubTrie;

namespace {

std::vector<std::pair<Session*, uint8_t>> matches(const SubTrie& t, std::string_view topic) {
  std::vector<std::pair<Session*, uint8_t>> out;
  t.match(topic, [&](const broker::SubEntry& e) { out.emplace_back(e.session, e.opts.qos); });
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("filter_matches follows the spec examples") {
  CHECK(filter_matches("sport/tennis/player1/#", "sport/tennis/player1"));
  CHECK(filter_matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
  CHECK(filter_matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
  CHECK(filter_matches("sport/#", "sport"));
  CHECK(filter_matches("#", "sport/x"));
  CHECK(filter_matches("sport/tennis/+", "sport/tennis/player1"));
  CHECK_FALSE(filter_matches("sport/tennis/+", "sport/tennis/player1/ranking"));
  CHECK_FALSE(filter_matches("sport/+", "sport"));
  CHECK(filter_matches("sport/+", "sport/"));
  CHECK(filter_matches("+/+", "/finance"));
  CHECK(filter_matches("/+", "/finance"));
  CHECK_FALSE(filter_matches("+", "/finance"));
  CHECK(filter_matches("+", ""));  // one empty level (not a valid topic name, but defined)
  // [MQTT-4.7.2-1]: wildcards at the first level do not match $-topics.
  CHECK_FALSE(filter_matches("#", "$SYS/monitor/Clients"));
  CHECK_FALSE(filter_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
  CHECK(filter_matches("$SYS/#", "$SYS/monitor/Clients"));
  CHECK(filter_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
  CHECK_FALSE(filter_matches("a/b", "a/b/c"));
  CHECK_FALSE(filter_matches("a/b/c", "a/b"));
}

TEST_CASE("trie add, replace, remove and prune") {
  SubTrie t;
  Session a, b;
  CHECK(t.add("a/+", &a, SubOpts{1}));
  CHECK(t.add("a/#", &b, SubOpts{2}));
  CHECK_FALSE(t.add("a/+", &a, SubOpts{2}));  // same filter again replaces
  CHECK(t.size() == 2);
  CHECK(matches(t, "a/x") ==
        std::vector<std::pair<Session*, uint8_t>>{
            std::min(std::make_pair(&a, uint8_t(2)), std::make_pair(&b, uint8_t(2))),
            std::max(std::make_pair(&a, uint8_t(2)), std::make_pair(&b, uint8_t(2)))});
  CHECK(matches(t, "a").size() == 1);  // "a/#" matches the parent level
  CHECK(t.remove("a/+", &a));
  CHECK_FALSE(t.remove("a/+", &a));
  CHECK_FALSE(t.remove("zz", &a));
  CHECK(matches(t, "a/x").size() == 1);
  CHECK(t.remove("a/#", &b));
  CHECK(t.size() == 0);
  CHECK(matches(t, "a/x").empty());
}

TEST_CASE("trie agrees with filter_matches on every pair") {
  const std::vector<std::string> levels = {"a", "b", "", "$s"};
  std::vector<std::string> topics;
  // All topics of 1..3 levels from `levels` ($ only first).
  for (auto& x : levels) {
    topics.push_back(x);
    for (auto& y : levels) {
      if (y == "$s") continue;
      topics.push_back(x + "/" + y);
      for (auto& z : levels)
        if (z != "$s") topics.push_back(x + "/" + y + "/" + z);
    }
  }
  std::vector<std::string> filters = {"#",     "+",    "+/+",  "a/#",   "+/#",
                                      "a/+/b", "$s/#", "$s/+", "/+",    "a//b",
                                      "+/b/#", "a/b",  "",     "b/+/+", "+/+/+/#"};
  SubTrie t;
  std::vector<Session> sessions(filters.size());
  for (size_t i = 0; i < filters.size(); ++i) t.add(filters[i], &sessions[i], SubOpts{});
  for (const auto& topic : topics) {
    std::set<Session*> want, got;
    for (size_t i = 0; i < filters.size(); ++i)
      if (filter_matches(filters[i], topic)) want.insert(&sessions[i]);
    t.match(topic, [&](const broker::SubEntry& e) { CHECK(got.insert(e.session).second); });
    INFO("topic '" << topic << "'");
    CHECK(got == want);
  }
}

TEST_CASE("retained store: set, replace, delete by empty payload, wildcard lookup") {
  broker::RetainedStore r;
  auto msg = [](std::string topic, std::string payload) {
    auto m = std::make_shared<broker::Message>();
    m->topic = std::move(topic);
    m->payload = std::move(payload);
    m->retain = true;
    return broker::MsgPtr(m);
  };
  r.set("a/b", msg("a/b", "1"));
  r.set("a/b", msg("a/b", "2"));
  r.set("a/c", msg("a/c", "3"));
  r.set("$s/x", msg("$s/x", "4"));
  CHECK(r.size() == 3);
  std::vector<std::string> got;
  r.match("a/+", [&](const broker::MsgPtr& m) { got.push_back(m->payload); });
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"2", "3"});
  got.clear();
  r.match("#", [&](const broker::MsgPtr& m) { got.push_back(m->payload); });
  CHECK(got.size() == 2);  // not "$s/x"
  r.set("a/b", msg("a/b", ""));
  CHECK(r.size() == 2);
  got.clear();
  r.match("a/b", [&](const broker::MsgPtr& m) { got.push_back(m->payload); });
  CHECK(got.empty());
}

TEST_CASE("shared subscriptions: parse, one member per message in turn, remove") {
  std::string_view g, f;
  CHECK(broker::parse_shared("a/b", g, f) == broker::Share::No);
  CHECK(broker::parse_shared("$share/grp/a/#", g, f) == broker::Share::Yes);
  CHECK(g == "grp");
  CHECK(f == "a/#");
  CHECK(broker::parse_shared("$share/grp", g, f) == broker::Share::Invalid);
  CHECK(broker::parse_shared("$share//a", g, f) == broker::Share::Invalid);
  CHECK(broker::parse_shared("$share/g+/a", g, f) == broker::Share::Invalid);
  CHECK(broker::parse_shared("$share/g/", g, f) == broker::Share::Invalid);

  SubTrie t;
  Session a, b, c, plain;
  t.add("s/+", &a, SubOpts{1}, "g");
  t.add("s/+", &b, SubOpts{1}, "g");
  t.add("s/+", &c, SubOpts{1}, "h");  // another group: gets every message
  t.add("s/+", &plain, SubOpts{0});
  std::vector<Session*> g_members;
  for (int i = 0; i < 4; ++i) {
    auto m = matches(t, "s/x");
    REQUIRE(m.size() == 3);
    int from_g = 0;
    for (auto& [s, q] : m) {
      if (s == &a || s == &b) {
        ++from_g;
        g_members.push_back(s);
      }
    }
    CHECK(from_g == 1);
  }
  CHECK(g_members == std::vector<Session*>{&a, &b, &a, &b});
  CHECK_FALSE(t.remove("s/+", &a));  // not an ordinary subscription
  CHECK(t.remove("s/+", &a, "g"));
  CHECK(matches(t, "s/x").size() == 3);  // b alone in g
  CHECK(t.remove("s/+", &b, "g"));
  CHECK(t.remove("s/+", &c, "h"));
  CHECK(t.remove("s/+", &plain));
  CHECK(t.size() == 0);
  CHECK(matches(t, "s/x").empty());
}
