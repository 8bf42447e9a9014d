// translate(): which HAProxy sections become what, global settings, the
// metrics frontend, the notes for everything else, and validation of the
// result with conf::load_string (what `mqttlb --check` runs).
#include "import/translate.hpp"

#include <algorithm>
#include <cctype>

#include "conf/loader.hpp"
#include "import/haproxy_values.hpp"

namespace importer {

bool contains_ci(std::string_view hay, std::string_view needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) ==
           std::tolower(static_cast<unsigned char>(b));
  });
  return it != hay.end();
}

std::string ms_text(uint64_t ms) {
  if (ms && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + " h";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

void Ctx::set_ranged(ojson& obj, const char* key, uint64_t v, uint64_t lo, uint64_t hi,
                     const Directive& d, const std::string& what) {
  const uint64_t x = std::clamp(v, lo, hi);
  obj[key] = x;
  if (x != v)
    notes.approx(d, what + " " + std::to_string(v) + " is outside mqttlb's range " +
                        std::to_string(lo) + ".." + std::to_string(hi) + ": " + std::to_string(x) +
                        " used");
  else
    notes.exact(d);
}

std::string Ctx::path(const std::string& base, const std::string& p) {
  if (base.empty() || p.empty() || p[0] == '/' || p[0] == '@') return p;
  return base.back() == '/' ? base + p : base + "/" + p;
}

bool Ctx::cert_and_key(const std::string& crt, std::string& cert, std::string& key,
                       std::string& err, std::string& note) const {
  cert = crt;
  if (opt.list_dir) {
    if (auto files = opt.list_dir(crt)) {
      // HAProxy loads every file of the directory in alphabetical order, not
      // the reserved extensions nor dot files; the first is the default.
      std::vector<std::string> certs;
      for (const auto& f : *files) {
        const auto slash = f.rfind('/');
        const std::string base = slash == std::string::npos ? f : f.substr(slash + 1);
        bool reserved = base.empty() || base[0] == '.';
        for (const char* ext : {".key", ".issuer", ".ocsp", ".sctl"}) {
          const std::string e = ext;
          if (base.size() >= e.size() && base.compare(base.size() - e.size(), e.size(), e) == 0)
            reserved = true;
        }
        if (!reserved) certs.push_back(f);
      }
      if (certs.empty()) {
        err = "certificate directory '" + crt + "' holds no certificate";
        return false;
      }
      cert = certs[0];
      if (certs.size() > 1)
        note = "'" + crt + "' is a directory of " + std::to_string(certs.size()) +
               " certificates chosen by SNI; mqttlb serves one certificate per listener: '" + cert +
               "' (HAProxy's default, the first) is used";
    }
  }
  auto pem = opt.read_file ? opt.read_file(cert) : std::nullopt;
  if (!pem) {
    err = "cannot read certificate '" + cert +
          "' here: run the import where the certificates are (mqttlb --check loads them)";
    return false;
  }
  if (pem->find("PRIVATE KEY-----") != std::string::npos) {
    key = cert;  // one PEM holds both: mqttlb's loader reads each from it
    return true;
  }
  auto k = opt.read_file(cert + ".key");
  if (k && k->find("PRIVATE KEY-----") != std::string::npos) {
    key = cert + ".key";
    return true;
  }
  err = "'" + cert + "' holds no private key, and '" + cert + ".key' (where HAProxy also looks) " +
        "cannot be read";
  return false;
}

bool has_servers(const Section& s) {
  return std::any_of(s.body.begin(), s.body.end(), [](const Directive& d) {
    return d.kw() == "server" || d.kw() == "server-template";
  });
}

const Section* find_backend(const Model& m, const std::string& name) {
  for (const auto& s : m.sections)
    if ((s.kind == SectionKind::Backend || s.kind == SectionKind::Listen) && s.name == name)
      return &s;
  return nullptr;
}

std::vector<std::string> server_addresses(const Section& s) {
  std::vector<std::string> v;
  for (const auto& d : s.body)
    if (d.kw() == "server") v.push_back(d.arg(2));
  std::sort(v.begin(), v.end());
  return v;
}

// The backend a frontend (or listen) sends its clients to.
const Section* backend_of(const Model& m, const Section& p) {
  if (p.kind == SectionKind::Listen && has_servers(p)) return &p;
  if (const Directive* d = find_last(p, "default_backend")) return find_backend(m, d->arg(1));
  for (const auto& d : p.body)
    if (d.kw() == "use_backend") return find_backend(m, d.arg(1));
  return nullptr;
}

namespace {

bool is_proxy(const Section& s) {
  return s.kind == SectionKind::Frontend || s.kind == SectionKind::Backend ||
         s.kind == SectionKind::Listen;
}

bool is_prometheus(const Section& s) {
  for (const auto& d : s.body)
    if (d.kw() == "http-request" && d.arg(1) == "use-service" && d.arg(2) == "prometheus-exporter")
      return true;
  return false;
}

void skip_section(Ctx& c, const Section& s, const std::string& why) {
  c.notes.ignored(s.header, why);
  for (const auto& d : s.body) c.notes.exact(d);
}

void translate_global(Ctx& c, const Section& g) {
  c.translated.insert(&g);
  for (const auto& d : g.body) {
    const std::string& k = d.kw();
    if (k == "crt-base") {
      c.crt_base = d.arg(1), c.notes.exact(d);
    } else if (k == "ca-base") {
      c.ca_base = d.arg(1), c.notes.exact(d);
    } else if (k == "ssl-server-verify") {
      c.server_verify = d.arg(1) != "none", c.notes.exact(d);
    } else if (k == "nbthread") {
      if (auto n = parse_uint(d.arg(1))) c.workers = *n, c.notes.exact(d);
    } else if (k == "maxconn") {
      if (auto n = parse_uint(d.arg(1))) {
        c.global_maxconn = *n;
        c.notes.approx(d,
                       "HAProxy leaves connections over maxconn waiting in the kernel's "
                       "accept queue; mqttlb closes them at accept (limits.max_connections)");
      }
    } else if (k == "ssl-default-bind-options" || k == "ssl-default-server-options") {
      // Only what mqttlb does anyway (TLS 1.2 minimum) is exact.
      bool same = true;
      for (size_t i = 1; i < d.words.size(); ++i) {
        const std::string& o = d.words[i];
        if (o == "ssl-min-ver" && d.arg(i + 1) == "TLSv1.2")
          ++i;
        else if (o != "no-sslv3" && o != "no-tlsv10" && o != "no-tlsv11")
          same = false;
      }
      if (same) c.notes.exact(d);
    } else if (k == "hard-stop-after") {
      if (auto t = parse_time_ms(d.arg(1)))
        c.set_ranged(c.limits, "shutdown_grace_ms", *t, 0, 3'600'000, d, "hard-stop-after (ms)");
    }
  }
}

void translate_metrics(Ctx& c, const Section& s) {
  c.translated.insert(&s);
  for (const auto& d : s.body) {
    if (d.kw() == "bind") {
      auto a = parse_bind_addresses(d.arg(1));
      if (!a.error.empty() || a.endpoints.empty()) {
        c.notes.ignored(d, "metrics address not translated: " + a.error);
      } else if (c.metrics.contains("bind")) {
        c.notes.ignored(d, "mqttlb serves metrics on one address: " +
                               c.metrics["bind"].get<std::string>() + " is used");
      } else {
        c.metrics["bind"] = a.endpoints[0];
        c.origin["/metrics"] = d.line;
        if (d.words.size() > 2)
          c.notes.ignored(d, "bind options not translated: mqttlb serves /metrics over plain HTTP");
        else
          c.notes.exact(d);
      }
    } else if (d.kw() == "http-request" && d.arg(1) == "use-service") {
      c.notes.approx(d, "Prometheus metrics at http://" +
                            (c.metrics.contains("bind") ? c.metrics["bind"].get<std::string>()
                                                        : std::string("<metrics.bind>")) +
                            "/metrics, but mqttlb's families are named mqttlb_* "
                            "(docs/metrics.md): rewrite dashboards and alerts");
    } else if (d.kw() == "mode" || d.kw() == "option" || d.kw() == "no") {
      c.notes.exact(d);
    } else if (d.kw() == "http-request" || d.kw() == "acl") {
      c.notes.ignored(d,
                      "access control on the metrics endpoint not translated: mqttlb serves "
                      "/metrics to anyone who reaches metrics.bind (bind it to a private address)");
    }
  }
}

std::string other_section_reason(const Section& s) {
  const std::string& k = s.header.kw();
  if (k == "peers")
    return "peers: not translated; mqttlb instances share their affinity table through "
           "Redis (affinity_store, docs/scale-out.md), which HAProxy's peers give no address for";
  if (k == "resolvers")
    return "resolvers: not translated; mqttlb resolves backend host names when the config is "
           "loaded (start and SIGHUP), and discovery[] follows a DNS name's records "
           "(docs/scale-out.md)";
  if (k == "mailers") return "mailers: no e-mail alerts in mqttlb; alert on mqttlb_backend_up";
  if (k == "userlist") return "userlist: HTTP authentication, no mqttlb equivalent";
  if (k == "program") return "program: run helper programs as systemd units";
  if (k == "ring" || k == "log-forward") return k + ": mqttlb logs to stdout/stderr";
  return k + ": no mqttlb equivalent";
}

std::vector<const Directive*> all_directives(const Section& s) {
  std::vector<const Directive*> v{&s.header};
  for (const auto& d : s.body) v.push_back(&d);
  return v;
}

bool valid_utf8(const std::vector<std::string>& words) {
  for (const auto& w : words) {
    try {
      (void)nlohmann::json(w).dump();
    } catch (const nlohmann::json::type_error&) {
      return false;
    }
  }
  return true;
}

// Maps a --check error ("/listeners/0/tls/cert: ...") back to the HAProxy line.
size_t line_of(const Ctx& c, const std::string& err) {
  size_t best = 0, best_len = 0;
  for (const auto& [ptr, line] : c.origin)
    if (err.compare(0, ptr.size(), ptr) == 0 && ptr.size() > best_len &&
        (err.size() == ptr.size() || err[ptr.size()] == '/' || err[ptr.size()] == ':'))
      best = line, best_len = ptr.size();
  return best;
}

const Directive* directive_at(const Model& m, size_t line) {
  for (const auto& s : m.sections) {
    if (s.header.line == line) return &s.header;
    for (const auto& d : s.body)
      if (d.line == line) return &d;
  }
  return nullptr;
}

void choose_proxies(Ctx& c) {
  std::vector<const Section*> candidates;
  for (const auto& s : c.model.sections) {
    if (s.kind != SectionKind::Frontend && s.kind != SectionKind::Listen) continue;
    if (find_last(s, "disabled")) {
      skip_section(c, s, "this section is disabled: not translated");
    } else if (is_prometheus(s)) {
      if (c.metrics.contains("bind"))
        skip_section(c, s, "a second metrics frontend: mqttlb serves metrics on one address");
      else
        translate_metrics(c, s);
    } else if (mode_of(s) != "tcp") {
      skip_section(c, s, "mode " + mode_of(s) + ": not translated (mqttlb balances MQTT only)");
    } else {
      candidates.push_back(&s);
    }
  }
  for (const Section* p : candidates) {
    const Section* b = backend_of(c.model, *p);
    if (!b) {
      skip_section(c, *p, "no backend with servers (HAProxy refuses a frontend without one)");
      continue;
    }
    if (!c.pool) c.pool = b;
    // A frontend with other servers gets routes on its listeners (plan_routes).
    c.mqtt_proxies.push_back(p);
    if (b != c.pool && pool_alias(c, b) == c.pool) {
      c.translated.insert(b);
      if (std::find(c.aliases.begin(), c.aliases.end(), b) == c.aliases.end())
        c.aliases.push_back(b);
    }
  }
}

}  // namespace

Result translate(std::string_view text, const Options& opt) {
  Result r;
  Notes notes;
  Model m = parse_config(text, opt.env, notes);
  Ctx c(m, notes, opt);
  for (const auto& s : m.sections)
    if (s.kind == SectionKind::Global) translate_global(c, s);
  choose_proxies(c);
  for (const Section* p : c.mqtt_proxies) translate_listeners(c, *p);
  if (c.pool) {
    plan_routes(c);  // decides which other sections' servers become backends
    for (const Section* s : c.pools) collect_servers(c, *s);
    name_backends(c);
    translate_backends(c);
    translate_balance(c, *c.pool);
    translate_stick(c, *c.pool);
    translate_health(c, *c.pool);
    for (const Section* s : c.pools) c.translated.insert(s);
  }
  for (const Section* p : c.mqtt_proxies) {
    translate_frontend_rules(c, *p);
    c.translated.insert(p);
  }
  for (const Section* s : c.pools)
    if (s->kind == SectionKind::Backend) translate_backend_rules(c, *s);
  if (c.pool) compare_pools(c);
  translate_idle(c);
  // HAProxy waits for data only with an inspect-delay AND a content rule that
  // reads the payload (checked against HAProxy 2.6); otherwise it evaluates
  // the CONNECT fields on whatever the first packet brought, usually nothing.
  if (c.reads_connect && !(c.inspect_delay && c.content_waits)) {
    const std::string why =
        std::string(c.inspect_delay ? "`tcp-request inspect-delay` without a `tcp-request content` "
                                      "rule reading the payload: HAProxy did not wait"
                                    : "no `tcp-request inspect-delay`: HAProxy did not wait") +
        " for the CONNECT, so this saw no MQTT data";
    if (c.reads_connect->kw() == "use_backend")
      notes.approx(*c.reads_connect,
                   why +
                       " (client-id and user-name rules never matched: those clients went to "
                       "the default backend); mqttlb waits for the whole CONNECT, up to "
                       "limits.connect_timeout_ms, and routes them");
    else
      notes.approx(*c.reads_connect,
                   why +
                       " (affinity silently did nothing; a `reject unless mqtt_is_valid` rule "
                       "refused clients); mqttlb waits for the whole CONNECT, up to "
                       "limits.connect_timeout_ms");
  }
  // Sections nothing used, and what remains in the used ones.
  for (const auto& s : m.sections) {
    if (c.translated.count(&s) || notes.done(s.header)) continue;
    if (s.kind == SectionKind::Other) {
      skip_section(c, s, other_section_reason(s));
    } else if (s.kind == SectionKind::Defaults) {
      bool used = false;
      for (const Section* t : c.translated) {
        const Section* d = t->defaults;
        for (int depth = 0; d && depth < 8 && !used; ++depth, d = d->defaults) used = d == &s;
      }
      if (used)
        c.translated.insert(&s);
      else
        skip_section(c, s, "no translated section uses these defaults");
    } else if (is_proxy(s)) {
      skip_section(c, s, "not used by any translated frontend: not translated");
    }
  }
  for (const auto& s : m.sections) {
    if (!c.translated.count(&s)) continue;
    if (s.kind != SectionKind::Global) notes.exact(s.header);
    for (const auto& d : s.body)
      if (!notes.done(d)) note_leftover(c, d, s.kind);
  }
  // maxconn: the process's, and the frontends' (each counted separately by
  // HAProxy; mqttlb has one limit for all listeners).
  std::optional<uint64_t> maxconn = c.global_maxconn;
  if (c.fe_maxconn_count && c.fe_maxconn_count == c.mqtt_proxies.size())
    maxconn = maxconn ? std::min(*maxconn, c.fe_maxconn) : c.fe_maxconn;
  if (maxconn) c.limits["max_connections"] = std::min<uint64_t>(*maxconn, 10'000'000);
  if (c.listeners.empty())
    notes.error(c.mqtt_proxies.empty() ? Directive{0, {"(file)"}} : c.mqtt_proxies[0]->header,
                "no listener could be translated (see the notes on the bind lines, if any): "
                "mqttlb needs a `mode tcp` frontend with a TCP bind");
  if (c.backends.empty())
    notes.error(c.pool ? c.pool->header : Directive{0, {"(file)"}},
                "no backend could be translated: no `server` line in the backend");

  ojson cfg = ojson::object();
  cfg["listeners"] = c.listeners;
  cfg["backends"] = c.backends;
  ojson routes = ojson::array();
  emit_routes(c, routes);
  if (!routes.empty()) cfg["routes"] = routes;
  if (!c.balance.empty()) cfg["balance"] = c.balance;
  if (!c.health.empty()) cfg["health"] = c.health;
  if (!c.limits.empty()) cfg["limits"] = c.limits;
  if (!c.metrics.empty()) cfg["metrics"] = c.metrics;
  if (c.workers) cfg["workers"] = *c.workers;
  // JSON holds only UTF-8: a name or path with other bytes cannot be written.
  std::string text_out;
  try {
    text_out = cfg.dump();
  } catch (const nlohmann::json::type_error&) {
    for (const Section* s : c.translated)
      for (const Directive* d : all_directives(*s))
        if (!valid_utf8(d->words))
          notes.error(*d, "not valid UTF-8: a JSON config cannot hold this name or path");
    if (!notes.has_errors()) notes.error(Directive{0, {"(output)"}}, "output is not valid UTF-8");
  }
  if (!notes.has_errors() && opt.validate) {
    conf::LoadResult lr = conf::load_string(text_out);
    for (const auto& e : lr.errors) {
      const size_t line = line_of(c, e);
      const Directive* d = directive_at(m, line);
      notes.error(d ? *d : Directive{line, {"(output)"}}, "the translation fails validation: " + e);
    }
  }
  r.notes = notes.sorted();
  size_t approx = 0, ignored = 0, errors = 0;
  for (const auto& n : r.notes)
    (n.kind == NoteKind::Error ? errors : n.kind == NoteKind::Approximate ? approx : ignored)++;
  if (errors) {
    r.exit_code = 2;
    r.summary = "could not translate: " + std::to_string(errors) + " error(s)";
    return r;
  }
  r.config = std::move(cfg);
  r.exit_code = r.notes.empty() ? 0 : 1;
  r.summary = std::to_string(c.listeners.size()) + " listener(s), " +
              std::to_string(c.backends.size()) + " backend(s); " + std::to_string(approx) +
              " approximate, " + std::to_string(ignored) + " not translated";
  return r;
}

}  // namespace importer
