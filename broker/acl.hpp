// Topic access control (`--acl FILE`), Mosquitto-like: one rule per line,
//   topic deny|read|write|readwrite FILTER     (`topic FILTER` = readwrite)
// '#' starts a comment line; blank lines are ignored. There are no users, so
// every rule applies to every client. With a file, access is denied unless a
// rule grants it, and a matching `deny` wins over any grant. Pure: no I/O
// (main.cpp reads the file), loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace broker {

// Whether every topic matched by `sub` is also matched by `rule` (both valid
// filters): "a/+" covers "a/b" and "a/+", "a/#" covers "a" and "a/b/#", "+"
// does not cover "#". A rule starting with a wildcard does not cover a filter
// starting with '$' (such a rule matches no $-topic [MQTT-4.7.2-1]).
bool filter_covers(std::string_view rule, std::string_view sub);

class Acl {
 public:
  enum Access : uint8_t { Deny = 0, Read = 1, Write = 2, ReadWrite = 3 };
  struct Rule {
    Access access;
    std::string filter;
  };

  // Parses the file's text. On failure returns false and sets `error` to
  // "line N: what" (the first error).
  bool parse(std::string_view text, std::string& error);

  // Subscribing to `filter` (without any $share/ prefix): some read rule
  // covers it and no deny rule covers it. A deny rule that only overlaps it
  // ("#" against "deny a/b") leaves the subscription, and the denied topics are
  // filtered per message by can_read.
  bool can_subscribe(std::string_view filter) const;
  // Receiving a message on `topic` (subscriptions and retained messages).
  bool can_read(std::string_view topic) const { return allowed(topic, Read); }
  // Publishing to `topic` (PUBLISH and wills).
  bool can_write(std::string_view topic) const { return allowed(topic, Write); }

  const std::vector<Rule>& rules() const { return rules_; }

 private:
  bool allowed(std::string_view topic, Access want) const;
  std::vector<Rule> rules_;
};

}  // namespace broker
