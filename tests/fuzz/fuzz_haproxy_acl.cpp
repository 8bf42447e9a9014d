// libFuzzer target for the ACL/condition parser of `mqttlb import-haproxy`
// (import/haproxy_acl.hpp) and for the translation that rests on it (routes,
// rate limits: import::translate without validation, which would resolve
// host names). Asserts, for any input:
//  - no crash / sanitizer report; conditions without error have no empty group;
//  - literal_regex: a literal it returns, escaped and anchored again, reads
//    back as the same literal (prefix or whole);
//  - parse_cidr: its text() parses back to the same block; a block
//    intersected with itself is itself;
//  - translate: exit 0/1/2; every route of a written config matches on at
//    least one key and names at least one backend, each of them one that exists.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <string_view>

#include "import/haproxy_acl.hpp"
#include "import/haproxy_import.hpp"
#include "import/haproxy_tokenizer.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

namespace acl = importer::acl;

bool same(const acl::Cidr& a, const acl::Cidr& b) {
  return a.v6 == b.v6 && a.bits == b.bits && a.bytes == b.bytes;
}

void check_word(const std::string& w) {
  bool whole = false;
  if (auto lit = acl::literal_regex(w, whole)) {
    FUZZ_CHECK(!lit->empty());
    std::string re = "^";
    for (char ch : *lit) {
      if (std::strchr(".[]()*+?{}|^$\\", ch) != nullptr && ch != '\0') re += '\\';
      re += ch;
    }
    if (whole) re += '$';
    bool whole2 = !whole;
    auto back = acl::literal_regex(re, whole2);
    FUZZ_CHECK(back && *back == *lit && whole2 == whole);
  }
  if (auto c = acl::parse_cidr(w)) {
    FUZZ_CHECK(c->bits <= (c->v6 ? 128u : 32u));
    auto back = acl::parse_cidr(c->text());
    FUZZ_CHECK(back && same(*back, *c));
    auto self = acl::intersect(*c, *c);
    FUZZ_CHECK(self && same(*self, *c));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto lines = importer::tokenize(text, {});
  acl::Definitions defs;
  for (const auto& l : lines) {
    if (l.words.empty()) continue;
    acl::define(defs, l.words, l.number);
    const acl::Condition c = acl::condition_of(l.words, defs);
    if (c.present && c.error.empty())
      for (const auto& group : c.any) {
        FUZZ_CHECK(!group.empty());
        for (const auto& t : group) FUZZ_CHECK(!t.name.empty() || t.tests.size() == 1);
      }
    for (const auto& w : l.words) {
      check_word(w);
      (void)acl::key_of(w);
    }
  }

  importer::Options o;
  o.validate = false;  // conf::load_string resolves host names: not here
  const importer::Result r = importer::translate(text, o);
  FUZZ_CHECK(r.exit_code >= 0 && r.exit_code <= 2);
  if (r.exit_code == 2) return 0;
  std::set<std::string> names;
  for (const auto& b : r.config["backends"]) names.insert(b["name"].get<std::string>());
  if (r.config.contains("routes"))
    for (const auto& route : r.config["routes"]) {
      FUZZ_CHECK(!route["match"].empty());
      FUZZ_CHECK(!route["backends"].empty());
      for (const auto& b : route["backends"]) FUZZ_CHECK(names.count(b.get<std::string>()));
    }
  return 0;
}
