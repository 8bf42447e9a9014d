// HAProxy ACLs and conditions (configuration.txt 7.1, 7.2), as the importer
// reads them: `acl NAME FETCH [-i] [-m METHOD] [-f FILE] [--] PATTERNS...`
// and `if|unless TERM... [|| TERM...]` with `!NAME` and `{ anonymous }`
// terms. Plus the pieces a route is made of: anchored literal regexes and
// CIDR blocks. Pure: words in, structure out; no I/O, no globals. Fuzzed by
// tests/fuzz/fuzz_haproxy_acl.cpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace importer::acl {

// One ACL test: a fetch, its flags and its patterns (any pattern matches).
struct Test {
  size_t line = 0;  // the `acl` line; 0 for an anonymous `{ ... }` test
  std::string fetch;
  std::string method;  // from `-m`, else "" (the fetch's default match)
  bool icase = false;
  bool from_file = false;  // `-f FILE`: patterns HAProxy read from a file
  std::vector<std::string> patterns;
};

// A term of a condition: a named ACL (every `acl` line of that name: any
// matches) or an anonymous test, possibly negated.
struct Term {
  bool negated = false;
  std::string name;     // empty for an anonymous test
  bool defined = true;  // false: no `acl` line of this name (a predefined ACL or a typo)
  std::vector<Test> tests;
};

struct Condition {
  bool present = false;  // the rule has `if` or `unless`
  bool unless = false;
  // Disjunctive form as written: any group matches when all its terms do.
  std::vector<std::vector<Term>> any;
  std::string error;  // set: HAProxy refuses it (unbalanced braces, empty group)
};

using Definitions = std::map<std::string, std::vector<Test>>;

// Parses `words[first..]` as FETCH [flags] PATTERNS (the part after `acl NAME`).
Test parse_test(const std::vector<std::string>& words, size_t first, size_t line);
// Records `acl NAME ...` (words[0] == "acl"); a repeated name adds patterns.
void define(Definitions& defs, const std::vector<std::string>& words, size_t line);
// The condition of a rule: from its first `if`/`unless` word to the end.
Condition condition_of(const std::vector<std::string>& words, const Definitions& defs);

// What an ACL's fetch reads, for routing and rate limits.
enum class Key { ClientId, Username, Source, Sni, DstPort, Other };
Key key_of(std::string_view fetch);

// An anchored literal regex: "^tenant-a/" -> "tenant-a/" (whole = false),
// "^dev-1$" -> "dev-1" (whole = true); `\.` style escapes of a literal are
// undone. nullopt when the regex matches anything else than such a literal.
std::optional<std::string> literal_regex(std::string_view re, bool& whole);

// An IPv4/IPv6 address or CIDR block, the netmask form included
// ("10.0.0.0/255.0.0.0"). Bits past the prefix are cleared.
struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};
  unsigned bits = 0;
  std::string text() const;  // "10.0.0.0/8", "2001:db8::/32"; a whole address without "/n"
};
std::optional<Cidr> parse_cidr(std::string_view s);
// The smaller of two blocks when one holds the other, else nullopt.
std::optional<Cidr> intersect(const Cidr& a, const Cidr& b);

}  // namespace importer::acl
