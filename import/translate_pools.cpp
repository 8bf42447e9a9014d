// The other pools' sections (targets of routes) against the default pool's:
// mqttlb has one balance, affinity and health setting for every pool, taken
// from the default backend (translate_balance.cpp, translate_health.cpp).
// What another section sets alike is exact; what it sets otherwise is noted.
#include <algorithm>

#include "import/haproxy_values.hpp"
#include "import/translate.hpp"

namespace importer {

namespace {

struct Knob {
  const char* kw;
  const char* second;  // "" or the second word (`option X`, `timeout X`)
};

constexpr Knob kKnobs[] = {
    {"balance", ""},           {"hash-type", ""},         {"hash-balance-factor", ""},
    {"retries", ""},           {"option", "redispatch"},  {"timeout", "connect"},
    {"timeout", "server"},     {"timeout", "tunnel"},     {"timeout", "check"},
    {"option", "tcp-check"},   {"option", "httpchk"},     {"option", "ssl-hello-chk"},
    {"option", "mysql-check"}, {"option", "redis-check"}, {"option", "ldap-check"},
    {"option", "smtpchk"},     {"option", "pgsql-check"}, {"option", "external-check"},
};

using Words = std::vector<std::vector<std::string>>;

// A section's own lines of `kw`, else those it inherits (tcp-check and
// http-check rules of a section replace its defaults'; stick rules exist
// only in the section itself).
std::vector<const Directive*> lines_of(const Section& s, const char* kw) {
  std::vector<const Directive*> own;
  for (const auto& d : s.body)
    if (d.kw() == kw) own.push_back(&d);
  if (!own.empty() || std::string_view(kw) == "stick") return own;
  return find_all(s, kw);
}

Words words_of(const std::vector<const Directive*>& v) {
  Words w;
  for (const Directive* d : v) w.push_back(d->words);
  return w;
}

std::string shown(const Knob& k) {
  return *k.second ? std::string(k.kw) + " " + k.second : std::string(k.kw);
}

const Directive* table_of(const Ctx& c, const Section& s) {
  const Section* sec = &s;
  for (const auto& d : s.body)
    if (d.kw() == "stick")
      for (size_t i = 2; i + 1 < d.words.size(); ++i)
        if (d.words[i] == "table")
          if (const Section* t = find_backend(c.model, d.words[i + 1])) sec = t;
  const Directive* table = nullptr;
  for (const auto& d : sec->body)
    if (d.kw() == "stick-table") table = &d;
  return table;
}

// A stick-table's words without its size.
std::vector<std::string> shape(const Directive& t) {
  std::vector<std::string> v;
  for (size_t i = 1; i < t.words.size(); ++i) {
    if (t.words[i] == "size") {
      ++i;
      continue;
    }
    v.push_back(t.words[i]);
  }
  return v;
}

void compare_sticks(Ctx& c, const Section& p, const Section& s) {
  const auto mine = lines_of(s, "stick"), theirs = lines_of(p, "stick");
  const std::string who = "backend '" + p.name + "'";
  if (mine.empty()) {
    if (const Directive* t = table_of(c, s); t && !c.notes.done(*t))
      c.notes.ignored(*t, "no `stick` rule uses this table");
    if (!theirs.empty())
      c.notes.approx(s.header, "mqttlb's client-id affinity (from " + who +
                                   ") applies to these backends too; HAProxy kept none here");
    return;
  }
  if (theirs.empty()) {
    for (const Directive* d : mine)
      c.notes.ignored(*d, "mqttlb has one affinity setting for every pool, and " + who +
                              " (the default pool) has none: not translated");
    if (const Directive* t = table_of(c, s)) c.notes.ignored(*t, "see the stick rule");
    return;
  }
  for (size_t i = 0; i < mine.size(); ++i) {
    if (i < theirs.size() && mine[i]->words == theirs[i]->words)
      c.notes.exact(*mine[i]);
    else
      c.notes.approx(*mine[i], "mqttlb keeps every pool's clients by client id, as line " +
                                   std::to_string(theirs[0]->line) + " of " + who + " says");
  }
  const Directive* t = table_of(c, s);
  const Directive* pt = table_of(c, p);
  if (!t || !pt || t == pt) return;
  // One table for every pool: it holds all their entries.
  std::string m = "mqttlb keeps one affinity table for every pool";
  if (shape(*t) != shape(*pt))
    m += "; its settings are line " + std::to_string(pt->line) + "'s (" + who + ")";
  for (size_t i = 1; i + 1 < t->words.size(); ++i)
    if (t->words[i] == "size" && c.balance.contains("affinity_max_entries"))
      if (auto n = parse_size(t->words[i + 1])) {
        const uint64_t sum =
            std::min<uint64_t>(c.balance["affinity_max_entries"].get<uint64_t>() + *n, 100'000'000);
        c.balance["affinity_max_entries"] = sum;
        m += "; affinity_max_entries is the sum of the tables' sizes (" + std::to_string(sum) + ")";
      }
  c.notes.approx(*t, m);
}

// An alias's servers are the pool's (same addresses): the same words after
// the name are exact, other parameters are the pool's.
void compare_servers(Ctx& c, const Section& p, const Section& s) {
  for (const auto& d : s.body) {
    if (d.kw() != "server") continue;
    const Directive* twin = nullptr;
    for (const auto& x : p.body)
      if (x.kw() == "server" && x.arg(2) == d.arg(2)) twin = &x;
    if (twin &&
        std::equal(d.words.begin() + 2, d.words.end(), twin->words.begin() + 2, twin->words.end()))
      c.notes.exact(d);
    else if (twin)
      c.notes.approx(d, "the same broker as line " + std::to_string(twin->line) + " of backend '" +
                            p.name + "', whose parameters are used");
  }
  for (const Directive* d : find_all(s, "default-server"))
    if (!c.notes.done(*d))
      c.notes.approx(*d, "the servers of backend '" + p.name + "' are used, with its parameters");
}

}  // namespace

void compare_pools(Ctx& c) {
  const Section& p = *c.pool;
  std::vector<const Section*> others(c.pools.begin(), c.pools.end());
  others.insert(others.end(), c.aliases.begin(), c.aliases.end());
  for (const Section* s : others) {
    if (s == c.pool) continue;
    const bool alias = std::find(c.aliases.begin(), c.aliases.end(), s) != c.aliases.end();
    if (alias) compare_servers(c, p, *s);
    const std::string who = "backend '" + p.name + "'";
    for (const Knob& k : kKnobs) {
      const Directive* mine = find_last(*s, k.kw, k.second);
      const Directive* theirs = find_last(p, k.kw, k.second);
      const auto a = mine ? mine->words : std::vector<std::string>{};
      const auto b = theirs ? theirs->words : std::vector<std::string>{};
      if (a == b) {
        if (mine) c.notes.exact(*mine);
        continue;
      }
      const std::string what = theirs ? "`" + join_words(theirs->words) + "` (line " +
                                            std::to_string(theirs->line) + ", " + who + ")"
                                      : "no `" + shown(k) + "` (as " + who + ")";
      const std::string m = (mine ? std::string() : "no `" + shown(k) + "` here; ") +
                            "mqttlb has one such setting for every pool: the default pool's " +
                            what + " is used";
      c.notes.approx(mine ? *mine : s->header, m);
    }
    for (const char* kw : {"tcp-check", "http-check"}) {
      const auto mine = lines_of(*s, kw), theirs = lines_of(p, kw);
      if (words_of(mine) == words_of(theirs)) {
        for (const Directive* d : mine) c.notes.exact(*d);
        continue;
      }
      const std::string m = "mqttlb checks every backend alike: the " + std::string(kw) +
                            " rules of " + who + " are used";
      if (mine.empty())
        c.notes.approx(s->header, m);
      else
        for (const Directive* d : mine) c.notes.approx(*d, m);
    }
    compare_sticks(c, p, *s);
  }
}

}  // namespace importer
