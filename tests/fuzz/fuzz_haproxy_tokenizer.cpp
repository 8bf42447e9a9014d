// libFuzzer target for the HAProxy line tokenizer and value parsers of
// `mqttlb import-haproxy` (import/haproxy_tokenizer.hpp, haproxy_values.hpp).
// Asserts, for any input:
//  - no crash / sanitizer report; one Line per physical line, numbered 1..n;
//    at most kMaxWords words; deterministic (the same input twice, the same
//    result);
//  - round trip: the words of a line without error or variables, written
//    back with quote_word() and spaces, tokenize to exactly the same words;
//  - per line, tokenize() agrees with tokenize_line() on that line alone;
//  - look-alike normalisation: idempotent (its output normalises to itself
//    with no replacement), ASCII input is untouched, replacement columns
//    increase and stay inside the input;
//  - the value parsers (time, size, hex, bind and server addresses) accept
//    or refuse every word without crashing, and what they accept is sane.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "import/haproxy_tokenizer.hpp"
#include "import/haproxy_values.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

using importer::Line;

// Variables: names starting with 'U' are unset; others expand to a value
// derived from the name, with a space (so `[*]` splits it), bounded in size.
std::optional<std::string> fake_env(const std::string& name) {
  if (!name.empty() && name[0] == 'U') return std::nullopt;
  return std::string(name.rbegin(), name.rend()) + " v";
}

bool same(const Line& a, const Line& b) {
  if (a.words != b.words || a.error != b.error || a.error_column != b.error_column ||
      a.trailing_backslash != b.trailing_backslash || a.env.size() != b.env.size())
    return false;
  for (size_t i = 0; i < a.env.size(); ++i)
    if (a.env[i].name != b.env[i].name || a.env[i].set != b.env[i].set ||
        a.env[i].defaulted != b.env[i].defaulted)
      return false;
  return true;
}

void check_values(const std::string& w) {
  if (auto t = importer::parse_time_ms(w)) FUZZ_CHECK(*t <= (1ull << 53));
  importer::parse_size(w);
  if (auto h = importer::decode_hex(w)) FUZZ_CHECK(h->size() * 2 == w.size());
  auto b = importer::parse_bind_addresses(w);
  if (b.error.empty()) {
    FUZZ_CHECK(!b.endpoints.empty());
    for (const auto& e : b.endpoints) FUZZ_CHECK(e.find(':') != std::string::npos);
  } else {
    FUZZ_CHECK(b.endpoints.size() <= 64 * (w.size() + 1));
  }
  auto s = importer::parse_server_address(w);
  if (s.error.empty() && s.port_kind == importer::ServerAddress::Port::Fixed)
    FUZZ_CHECK(s.port >= 1 && s.port <= 65535);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const importer::EnvLookup env = fake_env;
  const auto lines = importer::tokenize(text, env);
  const auto again = importer::tokenize(text, env);
  FUZZ_CHECK(lines.size() == again.size());
  size_t newlines = 0;
  for (char ch : text) newlines += ch == '\n';
  FUZZ_CHECK(lines.size() == newlines + 1);

  size_t start = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Line& l = lines[i];
    FUZZ_CHECK(same(l, again[i]));
    FUZZ_CHECK(l.number == i + 1);
    FUZZ_CHECK(l.words.size() <= importer::kMaxWords);
    const size_t nl = text.find('\n', start);
    const std::string_view phys = text.substr(start, nl == text.npos ? text.npos : nl - start);
    start = nl == text.npos ? text.size() : nl + 1;
    FUZZ_CHECK(same(l, importer::tokenize_line(phys, i + 1, env)));
    if (!l.error.empty()) FUZZ_CHECK(l.error_column <= phys.size());

    // Round trip (a sentinel word last: a trailing empty word is dropped).
    if (l.error.empty() && l.env.empty() && l.words.size() < importer::kMaxWords) {
      std::string rebuilt;
      for (const auto& w : l.words) rebuilt += importer::quote_word(w) + " ";
      rebuilt += "end";
      const Line back = importer::tokenize_line(rebuilt, 1, {});
      FUZZ_CHECK(back.error.empty());
      FUZZ_CHECK(back.words.size() == l.words.size() + 1);
      for (size_t k = 0; k < l.words.size(); ++k) FUZZ_CHECK(back.words[k] == l.words[k]);
    }
    for (const auto& w : l.words) check_values(w);
    importer::section_header(l.words);

    // Look-alikes.
    std::vector<importer::Replacement> reps;
    const std::string norm = importer::normalize_lookalikes(phys, reps);
    std::vector<importer::Replacement> reps2;
    FUZZ_CHECK(importer::normalize_lookalikes(norm, reps2) == norm);
    FUZZ_CHECK(reps2.empty());
    bool ascii = true;
    for (unsigned char ch : phys) ascii = ascii && ch < 0x80;
    if (ascii) FUZZ_CHECK(norm == phys && reps.empty());
    for (size_t k = 0; k < reps.size(); ++k) {
      FUZZ_CHECK(reps[k].column < phys.size());
      if (k) FUZZ_CHECK(reps[k].column > reps[k - 1].column);
    }
    FUZZ_CHECK(norm.size() <= phys.size());
  }
  (void)importer::join_words(lines.empty() ? std::vector<std::string>{} : lines[0].words, 20);
  return 0;
}
