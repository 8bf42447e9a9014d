// Topic Names, Topic Filters and matching (MQTT 5.0 section 4.7, 3.1.1 section 4.7).
// Shared subscriptions ("$share/group/filter") are ordinary filter strings here:
// the broker strips the prefix before matching.
#include <string_view>

#include "mqtt/codec.hpp"

namespace mqtt {
namespace {

// Iterates the '/'-separated levels of a topic; "a/" has levels "a" and "",
// "" has one empty level.
class Levels {
 public:
  explicit Levels(std::string_view s) : s_(s) {}
  bool next(std::string_view& level) {
    if (done_) return false;
    const size_t end = s_.find('/', pos_);
    if (end == std::string_view::npos) {
      level = s_.substr(pos_);
      done_ = true;
    } else {
      level = s_.substr(pos_, end - pos_);
      pos_ = end + 1;
    }
    return true;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  bool done_ = false;
};

// Non-empty [MQTT-4.7.3-1], fits a UTF-8 Encoded String, valid UTF-8 [MQTT-4.7.3-2].
bool valid_topic_string(std::string_view t) {
  if (t.empty() || t.size() > 0xFFFF) return false;
  return valid_mqtt_utf8(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(t.data()), t.size()));
}

}  // namespace

bool valid_topic_name(std::string_view t) {
  // Wildcards are not allowed in Topic Names [MQTT-4.7.0-1] (3.1.1: [MQTT-4.7.1-1]).
  return valid_topic_string(t) && t.find_first_of("+#") == std::string_view::npos;
}

bool valid_topic_filter(std::string_view f) {
  if (!valid_topic_string(f)) return false;
  Levels levels(f);
  std::string_view level;
  bool after_hash = false;
  while (levels.next(level)) {
    if (after_hash) return false;  // '#' must be the last level [MQTT-4.7.1-1]
    if (level.find('#') != std::string_view::npos) {
      if (level != "#") return false;  // '#' occupies a whole level [MQTT-4.7.1-1]
      after_hash = true;
    } else if (level.find('+') != std::string_view::npos && level != "+") {
      return false;  // '+' occupies a whole level [MQTT-4.7.1-2]
    }
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  // Topics beginning with '$' are not matched by a leading wildcard [MQTT-4.7.2-1].
  if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
      (filter.front() == '+' || filter.front() == '#'))
    return false;
  Levels f(filter);
  Levels t(topic);
  std::string_view fl;
  std::string_view tl;
  while (f.next(fl)) {
    // '#' matches the parent level and any number of children: "sport/#" matches "sport".
    if (fl == "#") return true;
    if (!t.next(tl)) return false;
    if (fl != "+" && fl != tl) return false;  // '+' matches one level, even an empty one
  }
  return !t.next(tl);
}

}  // namespace mqtt
