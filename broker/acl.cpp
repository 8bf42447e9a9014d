#include "broker/acl.hpp"

#include "broker/router.hpp"
#include "mqtt/codec.hpp"

namespace broker {
namespace {

// Splits off the next '/'-level of `s` at `pos`; false when none is left.
bool next_level(std::string_view s, size_t& pos, bool& done, std::string_view& level) {
  if (done) return false;
  const size_t end = s.find('/', pos);
  if (end == std::string_view::npos) {
    level = s.substr(pos);
    done = true;
  } else {
    level = s.substr(pos, end - pos);
    pos = end + 1;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

bool filter_covers(std::string_view rule, std::string_view sub) {
  if (!sub.empty() && sub[0] == '$' && !rule.empty() && (rule[0] == '+' || rule[0] == '#'))
    return false;
  size_t rp = 0, sp = 0;
  bool rdone = false, sdone = false;
  std::string_view rl, sl;
  for (;;) {
    const bool have_r = next_level(rule, rp, rdone, rl);
    if (have_r && rl == "#") return true;  // covers this level, its parent and all below
    const bool have_s = next_level(sub, sp, sdone, sl);
    if (!have_r || !have_s) return !have_r && !have_s;
    if (sl == "#") return false;  // only a '#' rule covers a '#' subscription
    if (rl != "+" && rl != sl) return false;
  }
}

bool Acl::parse(std::string_view text, std::string& error) {
  rules_.clear();
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line[0] == '#') continue;
    auto fail = [&](const std::string& what) {
      error = "line " + std::to_string(line_no) + ": " + what;
      rules_.clear();
      return false;
    };
    const size_t sp = line.find_first_of(" \t");
    if (line.substr(0, sp) != "topic")
      return fail("expected 'topic [deny|read|write|readwrite] FILTER', got '" + std::string(line) +
                  "' (users and patterns are not supported)");
    if (sp == std::string_view::npos) return fail("'topic' without a filter");
    std::string_view rest = trim(line.substr(sp));
    // Mosquitto: the access word is optional (readwrite); the filter is the
    // rest of the line and may contain spaces.
    Access access = ReadWrite;
    const size_t sp2 = rest.find_first_of(" \t");
    if (sp2 != std::string_view::npos) {
      const std::string_view word = rest.substr(0, sp2);
      bool known = true;
      if (word == "deny")
        access = Deny;
      else if (word == "read")
        access = Read;
      else if (word == "write")
        access = Write;
      else if (word == "readwrite")
        access = ReadWrite;
      else
        known = false;
      if (known) rest = trim(rest.substr(sp2));
    } else if (rest == "deny" || rest == "read" || rest == "write" || rest == "readwrite") {
      return fail("'topic " + std::string(rest) + "' without a filter");
    }
    if (!mqtt::valid_topic_filter(rest))
      return fail("invalid topic filter '" + std::string(rest) + "'");
    rules_.push_back({access, std::string(rest)});
  }
  return true;
}

bool Acl::allowed(std::string_view topic, Access want) const {
  bool granted = false;
  for (const Rule& r : rules_) {
    if (!filter_matches(r.filter, topic)) continue;
    if (r.access == Deny) return false;
    if (r.access & want) granted = true;
  }
  return granted;
}

bool Acl::can_subscribe(std::string_view filter) const {
  bool granted = false;
  for (const Rule& r : rules_) {
    if (!filter_covers(r.filter, filter)) continue;
    if (r.access == Deny) return false;
    if (r.access & Read) granted = true;
  }
  return granted;
}

}  // namespace broker
