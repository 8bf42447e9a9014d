// The server side: `server` / `default-server` lines -> backends.
#include <algorithm>
#include <map>
#include <set>

#include "import/haproxy_values.hpp"
#include "import/translate.hpp"

namespace importer {

const Param* Server::find(std::string_view kw) const {
  for (const auto& p : params)
    if (p.kw == kw) return &p;
  return nullptr;
}

namespace {

bool server_takes_arg(const std::string& k) {
  static const std::set<std::string> a = {"weight",
                                          "inter",
                                          "fastinter",
                                          "downinter",
                                          "rise",
                                          "fall",
                                          "port",
                                          "addr",
                                          "maxconn",
                                          "maxqueue",
                                          "minconn",
                                          "slowstart",
                                          "ca-file",
                                          "crt",
                                          "crl-file",
                                          "sni",
                                          "verify",
                                          "verifyhost",
                                          "ciphers",
                                          "ciphersuites",
                                          "alpn",
                                          "npn",
                                          "check-alpn",
                                          "check-sni",
                                          "check-proto",
                                          "proto",
                                          "cookie",
                                          "id",
                                          "observe",
                                          "on-error",
                                          "on-marked-down",
                                          "on-marked-up",
                                          "error-limit",
                                          "agent-port",
                                          "agent-inter",
                                          "agent-send",
                                          "agent-addr",
                                          "init-addr",
                                          "resolvers",
                                          "resolve-prefer",
                                          "resolve-opts",
                                          "resolve-net",
                                          "source",
                                          "namespace",
                                          "pool-max-conn",
                                          "pool-purge-delay",
                                          "pool-low-conn",
                                          "max-reuse",
                                          "proxy-v2-options",
                                          "redir",
                                          "track",
                                          "ssl-min-ver",
                                          "ssl-max-ver",
                                          "tcp-ut",
                                          "ws",
                                          "log-proto",
                                          "socks4",
                                          "curves",
                                          "sigalgs",
                                          "client-sigalgs",
                                          "hash-key",
                                          "shard",
                                          "set-proxy-v2-tlv-fmt"};
  return a.count(k) != 0;
}

// Keywords the health translation reads (translate_health.cpp).
bool is_check_param(const std::string& k) {
  static const std::set<std::string> a = {
      "check",       "inter",          "fastinter",    "downinter",        "rise",
      "fall",        "port",           "addr",         "check-ssl",        "check-send-proxy",
      "slowstart",   "on-marked-down", "on-marked-up", "agent-check",      "agent-port",
      "agent-inter", "agent-send",     "agent-addr",   "observe",          "on-error",
      "error-limit", "check-alpn",     "check-proto",  "check-via-socks4", "check-sni"};
  return a.count(k) != 0;
}

// Applies one line's parameters: a later value replaces an earlier one,
// `no-X` removes X.
void apply(std::vector<Param>& params, const Directive& d, size_t first) {
  for (size_t i = first; i < d.words.size(); ++i) {
    Param p{d.words[i], "", &d};
    if (server_takes_arg(p.kw) && i + 1 < d.words.size()) p.arg = d.words[++i];
    if (p.kw.rfind("no-", 0) == 0 && p.kw != "no-ssl-reuse" && p.kw != "no-verifyhost" &&
        p.kw.rfind("no-tls", 0) != 0 && p.kw != "no-sslv3") {
      const std::string base = p.kw.substr(3);
      params.erase(std::remove_if(params.begin(), params.end(),
                                  [&](const Param& q) { return q.kw == base; }),
                   params.end());
      continue;
    }
    params.erase(
        std::remove_if(params.begin(), params.end(), [&](const Param& q) { return q.kw == p.kw; }),
        params.end());
    params.push_back(p);
  }
}

}  // namespace

void collect_servers(Ctx& c, const Section& pool) {
  std::vector<Param> defaults;
  for (const Directive* d : find_all(pool, "default-server")) {
    apply(defaults, *d, 1);
    c.notes.exact(*d);
  }
  for (const auto& d : pool.body) {
    if (d.kw() == "server-template") {
      c.notes.ignored(d,
                      "server templates (DNS discovery) are not translated: write a "
                      "discovery[] entry for the DNS name (docs/scale-out.md) or list the "
                      "brokers as `server` lines");
      continue;
    }
    if (d.kw() != "server") continue;
    Server s;
    s.line = &d;
    s.section = &pool;
    s.name = d.arg(1);
    s.params = defaults;
    apply(s.params, d, 3);
    const ServerAddress a = parse_server_address(d.arg(2));
    if (!a.error.empty()) {
      c.notes.error(d, a.error);
      continue;
    }
    int port = a.port;
    if (a.port_kind != ServerAddress::Port::Fixed) {
      if (c.listener_ports.empty()) {
        c.notes.error(d,
                      "no port: HAProxy uses each client's destination port, and no listener "
                      "was translated");
        continue;
      }
      const int lp = c.listener_ports[0];
      port = a.port_kind == ServerAddress::Port::Same ? lp : lp + a.port;
      if (port < 1 || port > 65535) {
        c.notes.error(d, "port offset gives port " + std::to_string(port));
        continue;
      }
      const bool one_port = std::all_of(c.listener_ports.begin(), c.listener_ports.end(),
                                        [&](int p) { return p == lp; });
      if (!one_port)
        c.notes.approx(d,
                       "no fixed port: HAProxy used each client's destination port; mqttlb "
                       "connects to " +
                           std::to_string(port) + " (the first listener's)");
    }
    s.address = endpoint(a.host, static_cast<uint16_t>(port));
    c.servers.push_back(std::move(s));
  }
}

void name_backends(Ctx& c) {
  // HAProxy names servers per backend section; mqttlb's names are global. A
  // section with a name an earlier section took has all its servers named
  // SECTION-NAME (a name repeated within one section stays: HAProxy refuses
  // it, and so does --check).
  std::map<std::string, const Section*> taken;
  std::set<const Section*> prefixed;
  for (const Server& s : c.servers) {
    auto it = taken.find(s.name);
    if (it != taken.end() && it->second != s.section) prefixed.insert(s.section);
    if (it == taken.end()) taken.emplace(s.name, s.section);
  }
  taken.clear();
  for (Server& s : c.servers) {
    std::string n = s.name;
    if (prefixed.count(s.section)) {
      n = s.section->name + "-" + s.name;
      for (int i = 2; taken.count(n) && taken[n] != s.section; ++i)
        n = s.section->name + "-" + s.name + "-" + std::to_string(i);
    }
    taken.emplace(n, s.section);
    s.name = n;
    c.pool_backends[s.section].push_back(n);
  }
}

namespace {

std::string sni_of(Ctx& c, const Param& p) {
  const std::string& e = p.arg;
  if (e.rfind("str(", 0) == 0 && e.back() == ')') return e.substr(4, e.size() - 5);
  c.notes.approx(*p.origin, "sni " + e + ": mqttlb sends a fixed server name, not the client's " +
                                "(none set: the address host)");
  return "";
}

ojson backend_tls(Ctx& c, const Server& s) {
  ojson tls = ojson::object();
  const Param* verify = s.find("verify");
  const bool verify_on = verify ? verify->arg != "none" : c.server_verify;
  const Param* ca = s.find("ca-file");
  if (ca && ca->arg != "@system-ca") tls["ca"] = Ctx::path(c.ca_base, ca->arg);
  if (!verify_on) tls["verify"] = false;
  if (verify_on && !ca)
    c.notes.approx(*s.line,
                   "certificate verified without ca-file (HAProxy refuses that): mqttlb "
                   "verifies the broker against the system store");
  std::string sni;
  if (const Param* p = s.find("sni")) sni = sni_of(c, *p);
  if (const Param* p = s.find("verifyhost")) {
    if (sni.empty()) {
      sni = p->arg;
      c.notes.approx(*p->origin, "verifyhost " + p->arg +
                                     ": mqttlb checks the certificate "
                                     "against tls.sni and also sends it as SNI");
    } else if (sni != p->arg) {
      c.notes.approx(*p->origin,
                     "verifyhost differs from sni: mqttlb checks the certificate "
                     "against the SNI name " +
                         sni);
    }
  }
  if (!sni.empty()) tls["sni"] = sni;
  if (const Param* p = s.find("crt")) {
    std::string cert, key, err, note;
    if (!c.cert_and_key(Ctx::path(c.crt_base, p->arg), cert, key, err, note)) {
      c.notes.error(*p->origin, err);
    } else {
      tls["cert"] = cert;
      tls["key"] = key;
    }
  }
  return tls;
}

}  // namespace

void translate_backends(Ctx& c) {
  for (const Server& s : c.servers) {
    ojson b;
    b["name"] = s.name;
    b["address"] = s.address;
    std::string admin = "ready";
    for (const Param& p : s.params) {
      const std::string& k = p.kw;
      const Directive& at = *p.origin;
      if (k == "weight") {
        auto w = parse_uint(p.arg);
        if (!w) {
          c.notes.error(at, "weight \"" + p.arg + "\" is not a number");
        } else if (*w == 0) {
          admin = "drain";
          c.notes.approx(at,
                         "weight 0: HAProxy still sent clients it remembered here; mqttlb's "
                         "admin drain sends none");
        } else if (*w != 1) {
          c.set_ranged(b, "weight", *w, 1, 256, at, "weight");
        }
      } else if (k == "backup") {
        if (admin == "ready") admin = "drain";
        c.notes.approx(at,
                       "backup servers: mqttlb has none; this backend is translated with "
                       "admin drain (no new clients): set \"ready\" to use it normally");
      } else if (k == "disabled") {
        admin = "maint";
      } else if (k == "send-proxy") {
        b["proxy_protocol"] = "v1";
      } else if (k == "send-proxy-v2") {
        b["proxy_protocol"] = "v2";
      } else if (k == "send-proxy-v2-ssl" || k == "send-proxy-v2-ssl-cn") {
        b["proxy_protocol"] = "v2";
        c.notes.approx(at, k + ": mqttlb sends PROXY v2 without the TLS fields");
      } else if (k == "ssl") {
        b["tls"] = backend_tls(c, s);
      } else if (k == "maxconn" || k == "maxqueue" || k == "minconn") {
        c.notes.ignored(at, k + " " + p.arg +
                                ": no per-backend connection limit or queue in "
                                "mqttlb yet");
      } else if (k == "init-addr" || k == "resolvers" || k.rfind("resolve-", 0) == 0) {
        c.notes.ignored(at, k + ": mqttlb resolves backend host names when the config is loaded "
                                "(start and SIGHUP)");
      } else if (!is_check_param(k) && k != "enabled" && k != "verify" && k != "ca-file" &&
                 k != "sni" && k != "verifyhost" && k != "crt") {
        c.notes.ignored(
            at, (p.arg.empty() ? k : k + " " + p.arg) + ": no mqttlb equivalent (not translated)");
      }
    }
    if (admin != "ready") b["admin"] = admin;
    c.origin["/backends/" + std::to_string(c.backends.size())] = s.line->line;
    c.backends.push_back(b);
    c.notes.exact(*s.line);
  }
}

}  // namespace importer
