// Topic ACL: filter coverage (subscriptions), rule precedence, file syntax.
#include <doctest/doctest.h>

#include <string>

#include "broker/acl.hpp"
#include "broker/router.hpp"

using broker::Acl;
using broker::filter_covers;

TEST_CASE("filter_covers: every topic of the subscription is matched by the rule") {
  CHECK(filter_covers("a/b", "a/b"));
  CHECK(filter_covers("a/+", "a/b"));
  CHECK(filter_covers("a/+", "a/+"));
  CHECK_FALSE(filter_covers("a/+", "a/#"));
  CHECK_FALSE(filter_covers("a/+", "a/b/c"));
  CHECK(filter_covers("a/#", "a"));  // "a/#" matches "a" [MQTT-4.7.1-2]
  CHECK(filter_covers("a/#", "a/b/#"));
  CHECK(filter_covers("a/#", "a/+/c"));
  CHECK(filter_covers("#", "#"));
  CHECK(filter_covers("#", "x/+/#"));
  CHECK_FALSE(filter_covers("a/b", "a/+"));
  CHECK_FALSE(filter_covers("a/b", "a"));
  CHECK_FALSE(filter_covers("a", "a/b"));
  CHECK_FALSE(filter_covers("+", "#"));
  CHECK_FALSE(filter_covers("a/+/#", "a/#"));  // "a/#" also matches "a"
  CHECK(filter_covers("+/+", "/x"));
  // A leading wildcard matches no $-topic [MQTT-4.7.2-1].
  CHECK_FALSE(filter_covers("#", "$SYS/x"));
  CHECK_FALSE(filter_covers("+/x", "$SYS/x"));
  CHECK(filter_covers("$SYS/#", "$SYS/x"));
}

TEST_CASE("filter_covers agrees with matching on concrete topics") {
  const char* filters[] = {"a", "a/b", "a/+", "a/#", "+", "+/b", "#", "+/+", "a/b/c", "/+", "$s/#"};
  const char* topics[] = {"a", "a/b", "a/c", "a/b/c", "b", "x/b", "/a", "", "$s/a", "a/"};
  for (const char* rule : filters)
    for (const char* t : topics)
      if (filter_covers(rule, t)) CHECK_MESSAGE(broker::filter_matches(rule, t), rule << " " << t);
  // A rule covering a filter matches every topic the filter matches.
  for (const char* rule : filters)
    for (const char* sub : filters)
      if (filter_covers(rule, sub))
        for (const char* t : topics)
          if (broker::filter_matches(sub, t))
            CHECK_MESSAGE(broker::filter_matches(rule, t), rule << " " << sub << " " << t);
}

TEST_CASE("acl: grants, deny wins, nothing granted is denied") {
  Acl a;
  std::string err;
  REQUIRE(
      a.parse("# comment\n\n  topic readwrite app/#\ntopic deny app/secret/#\r\n"
              "topic read ro/#\ntopic write wo/#\ntopic both/x\ntopic read with space/#\n",
              err));
  CHECK(a.rules().size() == 6);
  CHECK(a.rules()[4].access == Acl::ReadWrite);  // access word omitted
  CHECK(a.rules()[5].filter == "with space/#");
  CHECK(a.can_read("app/x"));
  CHECK(a.can_write("app/x"));
  CHECK_FALSE(a.can_read("app/secret/k"));
  CHECK_FALSE(a.can_write("app/secret"));  // "app/secret/#" matches "app/secret"
  CHECK(a.can_read("ro/1"));
  CHECK_FALSE(a.can_write("ro/1"));
  CHECK(a.can_write("wo/1"));
  CHECK_FALSE(a.can_read("wo/1"));
  CHECK(a.can_read("both/x"));
  CHECK_FALSE(a.can_read("elsewhere"));
  CHECK(a.can_subscribe("app/#"));  // overlaps the deny: filtered per message instead
  CHECK(a.can_subscribe("app/+/x"));
  CHECK_FALSE(a.can_subscribe("app/secret/+"));
  CHECK_FALSE(a.can_subscribe("#"));
  CHECK_FALSE(a.can_subscribe("wo/1"));
  CHECK(a.can_subscribe("ro/+"));
}

TEST_CASE("acl: syntax errors name their line") {
  Acl a;
  std::string err;
  CHECK_FALSE(a.parse("topic read a\nuser bob\n", err));
  CHECK(err.find("line 2:") == 0);
  CHECK_FALSE(a.parse("topic\n", err));
  CHECK(err == "line 1: 'topic' without a filter");
  CHECK_FALSE(a.parse("\n\ntopic read a/#/b\n", err));
  CHECK(err == "line 3: invalid topic filter 'a/#/b'");
  CHECK_FALSE(a.parse("topic deny\n", err));
  CHECK(a.rules().empty());
  CHECK(a.parse("", err));
  CHECK_FALSE(a.can_read("x"));  // an empty file grants nothing
}
