// Topic Names, Topic Filters and matching: the examples of MQTT 5.0 section 4.7
// (same as 3.1.1 section 4.7) plus the edge cases a broker gets wrong.
#include <doctest/doctest.h>

#include <string>

#include "mqtt/codec.hpp"

using mqtt::topic_matches;
using mqtt::valid_topic_filter;
using mqtt::valid_topic_name;

TEST_CASE("valid_topic_name: non-empty UTF-8 without wildcards") {
  for (const char* ok : {"sport/tennis/player1", "/", "a", "/finance", "sport/", "$SYS/broker",
                         "$share/g/a", "caf\xC3\xA9", "a b/c"}) {
    CAPTURE(ok);
    CHECK(valid_topic_name(ok));
  }
  for (const char* bad : {"", "sport/+", "sport/#", "+", "#", "sport+", "a#b",
                          "\xC0\x80",      // overlong NUL
                          "\xED\xA0\x80",  // surrogate U+D800
                          "bad\xFF"}) {
    CAPTURE(bad);
    CHECK_FALSE(valid_topic_name(bad));
  }
  CHECK_FALSE(valid_topic_name(std::string("a\0b", 3)));  // U+0000 [MQTT-1.5.4-2]
  CHECK(valid_topic_name(std::string(65535, 'a')));
  CHECK_FALSE(valid_topic_name(std::string(65536, 'a')));  // does not fit a UTF-8 string
}

TEST_CASE("valid_topic_filter: wildcards occupy whole levels, '#' last") {
  for (const char* ok :
       {"sport/tennis/player1/#", "sport/#", "#", "+", "+/tennis/#", "sport/+/player1", "/+", "+/+",
        "sport/+", "a//b", "/", "$SYS/#", "$share/group/sport/+", "$share/group/#"}) {
    CAPTURE(ok);
    CHECK(valid_topic_filter(ok));
  }
  for (const char* bad : {"", "sport/tennis#", "sport/tennis/#/ranking", "sport+", "sport/+x",
                          "#/a", "##", "++", "a/#/", "\xC3"}) {
    CAPTURE(bad);
    CHECK_FALSE(valid_topic_filter(bad));
  }
}

TEST_CASE("topic_matches: the section 4.7 examples") {
  struct Row {
    const char* filter;
    const char* topic;
    bool match;
  };
  const Row rows[] = {
      // 4.7.1.2 multi-level wildcard
      {"sport/tennis/player1/#", "sport/tennis/player1", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
      {"sport/tennis/player1/#", "sport/tennis/player2", false},
      {"sport/#", "sport", true},  // '#' also matches the parent level
      {"sport/#", "sport/", true},
      {"sport/#", "sports", false},
      {"#", "sport/tennis", true},
      {"#", "/", true},
      // 4.7.1.3 single-level wildcard
      {"sport/tennis/+", "sport/tennis/player1", true},
      {"sport/tennis/+", "sport/tennis/player2", true},
      {"sport/tennis/+", "sport/tennis/player1/ranking", false},
      {"sport/+", "sport", false},
      {"sport/+", "sport/", true},  // '+' matches an empty level
      {"+/+", "/finance", true},
      {"/+", "/finance", true},
      {"+", "/finance", false},
      {"a/+/c", "a//c", true},
      {"+/+/+", "a//c", true},
      {"+/tennis/#", "sport/tennis", true},
      {"+/tennis/#", "sport/tennis/x/y", true},
      {"+/tennis/#", "sport/golf", false},
      // 4.7.2 topics beginning with '$'
      {"#", "$SYS/monitor/Clients", false},
      {"+/monitor/Clients", "$SYS/monitor/Clients", false},
      {"$SYS/#", "$SYS/monitor/Clients", true},
      {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
      {"$SYS/#", "$SYS", true},
      {"a/#", "a/$x", true},  // only a leading '$' is special
      // exact levels, case-sensitive (4.7.3)
      {"sport/tennis", "sport/tennis", true},
      {"ACCOUNTS", "Accounts", false},
      {"a/b", "a/b/c", false},
      {"a/b/c", "a/b", false},
      {"a/b", "a/b/", false},
      {"a", "a", true},
  };
  for (const Row& r : rows) {
    CAPTURE(r.filter);
    CAPTURE(r.topic);
    CHECK(valid_topic_filter(r.filter));
    CHECK(valid_topic_name(r.topic));
    CHECK(topic_matches(r.filter, r.topic) == r.match);
  }
}
