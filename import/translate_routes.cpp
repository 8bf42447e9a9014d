// Routing: `use_backend BACKEND if ACL...` and the default backends of the
// other frontends -> mqttlb `routes` (docs/config.md "routes"). A route
// matches client id prefix, user name, listener and source address, all of
// its keys at once; the first route that matches wins, and a client that
// matches none goes to the default pool: the backends no route names. So the
// default backend's servers are never named by a route, and a route to the
// default backend is left out (exactly when no later rule could take its
// clients first).
#include <algorithm>

#include "import/haproxy_acl.hpp"
#include "import/translate.hpp"

namespace importer {

namespace {

using acl::Key;

// At most this many routes from one rule (conditions multiply out).
constexpr size_t kMaxRoutesPerRule = 64;

struct Match {
  std::optional<std::string> cid, user, listener;
  std::optional<acl::Cidr> source;
};

// Both at once, or nullopt when no client can match both.
std::optional<Match> combine(const Match& a, const Match& b) {
  Match m = a;
  if (b.cid) {
    if (!m.cid || b.cid->rfind(*m.cid, 0) == 0)
      m.cid = b.cid;
    else if (m.cid->rfind(*b.cid, 0) != 0)
      return std::nullopt;
  }
  if (b.user) {
    if (m.user && *m.user != *b.user) return std::nullopt;
    m.user = b.user;
  }
  if (b.listener) {
    if (m.listener && *m.listener != *b.listener) return std::nullopt;
    m.listener = b.listener;
  }
  if (b.source) {
    if (m.source) {
      auto x = acl::intersect(*m.source, *b.source);
      if (!x) return std::nullopt;
      m.source = x;
    } else {
      m.source = b.source;
    }
  }
  return m;
}

ojson to_json(const Match& m) {
  ojson j = ojson::object();
  if (m.cid) j["client_id_prefix"] = *m.cid;
  if (m.user) j["username"] = *m.user;
  if (m.listener) j["listener"] = *m.listener;
  if (m.source) j["source"] = m.source->text();
  return j;
}

using Listeners = std::vector<std::pair<std::string, int>>;

// What a rule's condition becomes.
struct Expansion {
  std::vector<Match> matches;        // any of them: the translated part
  std::set<std::string> approx;      // how the translated part differs
  std::vector<std::string> dropped;  // the parts not translated, and why
  std::set<size_t> acl_lines;        // `acl` lines of the translated part
  std::set<size_t> all_lines;        // every `acl` line the condition names
  bool payload = false;              // a test reads the CONNECT (HAProxy must wait for it)
};

std::string term_text(const acl::Term& t) {
  std::string s = t.negated ? "!" : "";
  if (!t.name.empty()) return s + t.name;
  const acl::Test& x = t.tests[0];
  s += "{ " + x.fetch;
  for (const auto& p : x.patterns) s += " " + p;
  return s + " }";
}

constexpr const char* kSni =
    "TLS SNI: mqttlb routes match the listener, not the SNI; give each SNI name a listener of "
    "its own (its own port or address) and route on \"listener\"";

// The alternatives one ACL test stands for (appended to `out`), or false
// with `why` when a route cannot express it.
bool atoms(const acl::Test& t, const Listeners& ls, std::vector<Match>& out,
           std::set<std::string>& approx, std::string& why) {
  const Key k = acl::key_of(t.fetch);
  if (t.from_file) {
    why = "patterns read from a file (-f) are not translated: write them as routes";
    return false;
  }
  if (k == Key::Sni) {
    why = kSni;
    return false;
  }
  if (k == Key::Other) {
    why = "`" + t.fetch +
          "`: mqttlb routes match the client id prefix, the user name, the listener and the "
          "source address only";
    return false;
  }
  if (t.patterns.empty()) {
    why = "`" + t.fetch + "` without a pattern";
    return false;
  }
  if (t.icase && (k == Key::ClientId || k == Key::Username))
    approx.insert("-i: mqttlb compares client ids and user names case-sensitively (as written)");
  for (const std::string& p : t.patterns) {
    Match m;
    if (k == Key::ClientId) {
      std::string prefix = p;
      bool whole = t.method.empty() || t.method == "str";
      if (t.method == "reg") {
        auto lit = acl::literal_regex(p, whole);
        if (!lit) {
          why = "-m reg " + p + ": only an anchored literal (^prefix) is a client id prefix";
          return false;
        }
        prefix = *lit;
      } else if (!whole && t.method != "beg") {
        why = "-m " + t.method + " on the client id: mqttlb routes match a prefix only";
        return false;
      }
      if (prefix.empty()) {
        why = "an empty client id pattern";
        return false;
      }
      if (whole)
        approx.insert("the client id \"" + prefix +
                      "\" exactly: mqttlb matches prefixes, so ids that only begin with it "
                      "are routed there too");
      m.cid = prefix;
    } else if (k == Key::Username) {
      std::string user = p;
      if (t.method == "reg") {
        bool whole = false;
        auto lit = acl::literal_regex(p, whole);
        if (!lit || !whole) {
          why = "-m reg " + p + ": mqttlb matches user names exactly (only ^name$ translates)";
          return false;
        }
        user = *lit;
      } else if (!t.method.empty() && t.method != "str") {
        why = "-m " + t.method + " on the user name: mqttlb matches user names exactly";
        return false;
      }
      m.user = user;
    } else if (k == Key::Source) {
      if (!t.method.empty() && t.method != "ip") {
        why = "-m " + t.method + " on the source address: not translated";
        return false;
      }
      auto c = acl::parse_cidr(p);
      if (!c) {
        why = "source \"" + p + "\" is not an address or CIDR block";
        return false;
      }
      m.source = *c;
    } else {  // DstPort: the listeners on that port
      if ((!t.method.empty() && t.method != "int") || p.empty() ||
          !std::all_of(p.begin(), p.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
          p.size() > 5) {
        why = "dst_port " + p + ": only a port number translates (to the listeners on it)";
        return false;
      }
      for (const auto& [name, port] : ls)
        if (std::to_string(port) == p) out.push_back(Match{{}, {}, name, {}});
      continue;
    }
    out.push_back(m);
  }
  return true;
}

Expansion expand(const acl::Condition& cond, const Listeners& ls, bool tag) {
  Expansion e;
  if (!cond.present) {
    e.dropped.push_back(
        "no condition: HAProxy sends every client reaching this rule there (later rules never "
        "apply); mqttlb has no catch-all route");
    return e;
  }
  if (!cond.error.empty()) {
    e.dropped.push_back("HAProxy refuses this condition: " + cond.error);
    return e;
  }
  if (cond.unless) {
    e.dropped.push_back("`unless`: mqttlb routes cannot negate a condition");
    return e;
  }
  for (const auto& group : cond.any) {
    std::vector<Match> conj{Match{}};
    if (tag) {  // several frontends: this rule sees only its own listeners
      std::vector<Match> own;
      for (const auto& l : ls) own.push_back(Match{{}, {}, l.first, {}});
      conj = own;
    }
    std::string why, text;
    std::set<std::string> approx;
    std::set<size_t> lines;
    for (const acl::Term& t : group) {
      text += (text.empty() ? "" : " ") + term_text(t);
      for (const acl::Test& x : t.tests) {
        if (x.line) e.all_lines.insert(x.line);
        const Key k = acl::key_of(x.fetch);
        if (k == Key::ClientId || k == Key::Username) e.payload = true;
      }
      if (!why.empty()) continue;
      if (t.negated) {
        why = "`" + term_text(t) + "`: mqttlb routes cannot negate a condition";
      } else if (!t.defined) {
        why = "no `acl " + t.name + "` in this section";
      } else {
        std::vector<Match> alts;
        for (const acl::Test& x : t.tests) {
          if (!atoms(x, ls, alts, approx, why)) break;
          if (x.line) lines.insert(x.line);
        }
        std::vector<Match> next;
        for (const Match& m : conj)
          for (const Match& a : alts)
            if (auto both = combine(m, a)) next.push_back(*both);
        if (why.empty() && next.size() > kMaxRoutesPerRule)
          why = "more than " + std::to_string(kMaxRoutesPerRule) + " routes";
        conj = std::move(next);
      }
    }
    if (!why.empty()) {
      e.dropped.push_back("`" + text + "`: " + why);
      continue;
    }
    // An empty `conj`: no client can match this group (HAProxy's neither).
    e.matches.insert(e.matches.end(), conj.begin(), conj.end());
    e.approx.insert(approx.begin(), approx.end());
    e.acl_lines.insert(lines.begin(), lines.end());
  }
  if (e.matches.size() > kMaxRoutesPerRule) {
    e.dropped.push_back("more than " + std::to_string(kMaxRoutesPerRule) + " routes");
    e.matches.clear();
  }
  return e;
}

struct Planned {
  const Directive* line;
  const Section* target;
  Expansion e;
};

bool overlaps(const Planned& a, const Planned& b) {
  if (!a.e.dropped.empty() && !b.e.matches.empty()) return true;  // unknown: assume they do
  for (const Match& x : a.e.matches)
    for (const Match& y : b.e.matches)
      if (combine(x, y)) return true;
  return false;
}

std::string joined(const std::set<std::string>& s) {
  std::string r;
  for (const auto& x : s) r += (r.empty() ? "" : "; ") + x;
  return r;
}

std::string joined(const std::vector<std::string>& v) {
  std::string r;
  for (const auto& x : v) r += (r.empty() ? "" : "; ") + x;
  return r;
}

void note_plan(Ctx& c, const std::vector<Planned>& plan) {
  const std::string dflt = "the default pool (the servers of '" + c.pool->name + "')";
  for (size_t i = 0; i < plan.size(); ++i) {
    const Planned& p = plan[i];
    const Directive& d = *p.line;
    if (p.target == c.pool) {
      // No route: these clients go to the default pool, unless a later
      // rule takes them first (mqttlb tries every route before the pool).
      bool later = false;
      for (size_t j = i + 1; j < plan.size(); ++j)
        if (plan[j].target != c.pool && overlaps(p, plan[j])) later = true;
      if (later)
        c.notes.approx(d, "no route to " + dflt +
                              " (its backends are those no route names): a client this rule "
                              "and a later one both match now goes to the later rule's backends");
      else
        c.notes.exact(d);
      // Its ACLs are accounted for: the default pool is where they lead.
      c.routed_acls.insert(p.e.all_lines.begin(), p.e.all_lines.end());
      continue;
    }
    if (p.e.matches.empty() && !p.e.dropped.empty()) {
      c.notes.ignored(d, "routing not translated: " + joined(p.e.dropped) +
                             ". These clients now go to the next route that matches, or to " +
                             dflt);
      continue;
    }
    for (const Match& m : p.e.matches) c.routes.push_back({p.line, p.target, to_json(m)});
    if (std::find(c.pools.begin(), c.pools.end(), p.target) == c.pools.end() &&
        !p.e.matches.empty())
      c.pools.push_back(p.target);
    c.routed_acls.insert(p.e.acl_lines.begin(), p.e.acl_lines.end());
    std::string m = joined(p.e.approx);
    if (!p.e.dropped.empty())
      m += (m.empty() ? "" : "; ") + std::string("part not translated: ") + joined(p.e.dropped) +
           " (those clients go to the next route that matches, or to " + dflt + ")";
    if (m.empty())
      c.notes.exact(d);
    else
      c.notes.approx(d, m);
  }
}

}  // namespace

const Section* pool_alias(const Ctx& c, const Section* s) {
  if (!s || !c.pool || s == c.pool) return s;
  return server_addresses(*s) == server_addresses(*c.pool) ? c.pool : s;
}

void plan_routes(Ctx& c) {
  c.pools.push_back(c.pool);
  const bool tag = c.mqtt_proxies.size() > 1;
  for (const Section* p : c.mqtt_proxies) {
    acl::Definitions defs;
    for (const auto& d : p->body)
      if (d.kw() == "acl") acl::define(defs, d.words, d.line);
    const Listeners& ls = c.proxy_listeners[p];
    std::vector<Planned> plan;
    for (const auto& d : p->body) {
      if (d.kw() != "use_backend") continue;
      c.route_rules.insert(&d);
      const std::string& name = d.arg(1);
      const Section* t = find_backend(c.model, name);
      if (name.find("%[") != std::string::npos) {
        c.notes.ignored(d,
                        "a backend name computed per client: mqttlb routes name their "
                        "backends; not translated");
      } else if (!t) {
        c.notes.error(d, "no backend named '" + name + "' (HAProxy refuses this too)");
      } else if (!has_servers(*t)) {
        c.notes.ignored(d, "backend '" + name +
                               "' has no server: HAProxy closed these "
                               "clients; mqttlb sends them to the next route that matches, or to "
                               "the default pool");
      } else if (tag && ls.empty()) {
        c.notes.ignored(d, "no listener of this frontend was translated: not translated");
      } else {
        if (t != c.pool && pool_alias(c, t) == c.pool &&
            std::find(c.aliases.begin(), c.aliases.end(), t) == c.aliases.end()) {
          c.aliases.push_back(t);
          c.translated.insert(t);
        }
        plan.push_back({&d, pool_alias(c, t), expand(acl::condition_of(d.words, defs), ls, tag)});
        if (plan.back().e.payload && !c.reads_connect) c.reads_connect = &d;
      }
    }
    const Section* own = backend_of(c.model, *p);
    const Directive* dflt = find_last(*p, "default_backend");
    if (!dflt && p->kind == SectionKind::Frontend && own)
      c.notes.approx(
          p->header,
          "no default_backend: HAProxy closed clients no use_backend "
          "rule matched; mqttlb sends them to " +
              std::string(p == c.mqtt_proxies[0] ? "the default pool" : "this frontend's") + " ('" +
              own->name + "')");
    // Another frontend's own pool: a route per listener, after its rules.
    if (own && pool_alias(c, own) != c.pool) {
      Planned pl{dflt ? dflt : &p->header, own, {}};
      for (const auto& l : ls) pl.e.matches.push_back(Match{{}, {}, l.first, {}});
      if (!ls.empty()) plan.push_back(std::move(pl));
    }
    note_plan(c, plan);
  }
}

void emit_routes(Ctx& c, ojson& out) {
  for (const auto& r : c.routes) {
    const auto it = c.pool_backends.find(r.target);
    if (it == c.pool_backends.end() || it->second.empty()) {
      c.notes.ignored(*r.line, "backend '" + r.target->name +
                                   "' has no server that could be translated: no route");
      continue;
    }
    c.origin["/routes/" + std::to_string(out.size())] = r.line->line;
    ojson j;
    j["match"] = r.match;
    j["backends"] = it->second;
    out.push_back(j);
  }
}

}  // namespace importer
