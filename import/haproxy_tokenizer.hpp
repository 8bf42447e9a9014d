// HAProxy's configuration line syntax, and nothing else: words, quoting,
// escapes, `#` comments, environment variables inside double quotes, section
// headers (HAProxy configuration.txt 2.1-2.3; the behaviour of its
// parse_line()). Pure: text in, words out; no I/O, no globals. Fuzzed by
// tests/fuzz/fuzz_haproxy_tokenizer.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace importer {

// Looks up an environment variable; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// HAProxy's MAX_LINE_ARGS: a line with more words is refused.
constexpr size_t kMaxWords = 64;

struct EnvRef {
  std::string name;
  bool set = false;        // false: expanded to its default, or to nothing
  bool defaulted = false;  // ${NAME-default} used its default
};

struct Line {
  size_t number = 0;               // 1-based physical line number
  std::vector<std::string> words;  // unquoted and unescaped; empty: blank or comment line
  std::vector<EnvRef> env;         // variables expanded (inside double quotes)
  std::string error;               // non-empty: HAProxy refuses this line (and why)
  size_t error_column = 0;         // 0-based byte offset of the problem
  // The line ends with an unquoted lone `\`: HAProxy has no line continuation
  // (guides copy it from configuration.txt's formatting). The `\` is not in words.
  bool trailing_backslash = false;
};

// Splits one physical line (without its '\n'; reading stops at '\r', '\n' or
// NUL like HAProxy's parser). `env` may be empty: every variable is then unset.
Line tokenize_line(std::string_view text, size_t number, const EnvLookup& env);

// Splits `text` on '\n' and tokenizes every physical line; result[i].number == i + 1.
std::vector<Line> tokenize(std::string_view text, const EnvLookup& env);

// `w` written so that tokenize_line() reads it back as exactly one word `w`
// (plain when it has no special character, else double-quoted with escapes).
std::string quote_word(std::string_view w);
// Words quoted and joined by spaces, cut to about `max_chars` with "...".
std::string join_words(const std::vector<std::string>& words, size_t max_chars = 72);

// Full-width and typographic look-alikes that guides copied from rich-text
// pages carry into configs (U+FF01..U+FF5E, U+3000, U+00A0, curly quotes,
// dashes, zero-width space, BOM). HAProxy reads them as ordinary bytes, so
// `bind *：1883` is an invalid address there.
struct Replacement {
  size_t column = 0;       // 0-based byte offset in the original line
  uint32_t codepoint = 0;  // what was found
  char ascii = 0;          // what it became; 0 = removed
};
// Returns `line` with every look-alike replaced by its ASCII character (or
// removed), appending one Replacement per change. Other bytes, including
// invalid UTF-8, are kept as they are.
std::string normalize_lookalikes(std::string_view line, std::vector<Replacement>& out);

enum class SectionKind { Global, Defaults, Frontend, Backend, Listen, Other };
// The section a line opens, from its first word (global, defaults, frontend,
// backend, listen; peers, resolvers, userlist, ... are Other), or nullopt.
std::optional<SectionKind> section_header(const std::vector<std::string>& words);

}  // namespace importer
