// The client side: `bind` lines -> listeners (TLS included), `tcp-request`
// rules, routing rules, per-frontend limits and idle timeouts.
#include <algorithm>
#include <map>
#include <set>

#include "import/haproxy_values.hpp"
#include "import/translate.hpp"

namespace importer {

namespace {

bool bind_takes_arg(const std::string& k) {
  static const std::set<std::string> a = {"crt",
                                          "crt-list",
                                          "ca-file",
                                          "ca-verify-file",
                                          "ca-sign-file",
                                          "ca-sign-pass",
                                          "crl-file",
                                          "verify",
                                          "alpn",
                                          "npn",
                                          "ciphers",
                                          "ciphersuites",
                                          "curves",
                                          "ecdhe",
                                          "ssl-min-ver",
                                          "ssl-max-ver",
                                          "name",
                                          "id",
                                          "maxconn",
                                          "backlog",
                                          "process",
                                          "thread",
                                          "nice",
                                          "mss",
                                          "interface",
                                          "namespace",
                                          "user",
                                          "group",
                                          "uid",
                                          "gid",
                                          "mode",
                                          "level",
                                          "severity-output",
                                          "tcp-ut",
                                          "proto",
                                          "crt-ignore-err",
                                          "ca-ignore-err",
                                          "accept-netscaler-cip",
                                          "expose-fd",
                                          "sigalgs",
                                          "client-sigalgs",
                                          "tls-ticket-keys",
                                          "quic-cc-algo",
                                          "label"};
  return a.count(k) != 0;
}

bool is_tls_option(const std::string& k) {
  static const std::set<std::string> a = {"alpn",
                                          "npn",
                                          "ciphers",
                                          "ciphersuites",
                                          "curves",
                                          "ecdhe",
                                          "ssl-max-ver",
                                          "no-tlsv12",
                                          "no-tlsv13",
                                          "force-sslv3",
                                          "force-tlsv10",
                                          "force-tlsv11",
                                          "force-tlsv12",
                                          "force-tlsv13",
                                          "prefer-client-ciphers",
                                          "no-tls-tickets",
                                          "tls-ticket-keys",
                                          "allow-0rtt",
                                          "strict-sni",
                                          "no-ca-names",
                                          "sigalgs",
                                          "client-sigalgs",
                                          "crt-ignore-err",
                                          "ca-ignore-err",
                                          "generate-certificates",
                                          "ca-sign-file",
                                          "ca-sign-pass",
                                          "ca-verify-file"};
  return a.count(k) != 0;
}

// A frontend that routes TLS without terminating it (reads the ClientHello).
bool is_tls_passthrough(const Section& p) {
  for (const auto& d : p.body) {
    if (d.kw() == "bind")
      for (const auto& w : d.words)
        if (w == "ssl") return false;
  }
  for (const auto& d : p.body) {
    if (d.kw() != "tcp-request" && d.kw() != "use_backend" && d.kw() != "acl") continue;
    for (const auto& w : d.words)
      if (contains_ci(w, "ssl_hello_type") || contains_ci(w, "ssl_sni") ||
          contains_ci(w, "ssl_ver"))
        return true;
  }
  return false;
}

std::string unique_name(const ojson& listeners, const std::string& want) {
  auto taken = [&](const std::string& n) {
    for (const auto& l : listeners)
      if (l["name"] == n) return true;
    return false;
  };
  if (!taken(want)) return want;
  for (int i = 2;; ++i)
    if (!taken(want + "-" + std::to_string(i))) return want + "-" + std::to_string(i);
}

int port_of(const std::string& ep) {
  return std::stoi(ep.substr(ep.rfind(':') + 1));
}

}  // namespace

void translate_listeners(Ctx& c, const Section& p) {
  const bool passthrough = is_tls_passthrough(p);
  size_t made = 0;  // listeners made from this proxy: the first is named after it
  for (const auto& d : p.body) {
    if (d.kw() != "bind") continue;
    const BindAddresses a = parse_bind_addresses(d.arg(1));
    if (!a.error.empty()) {
      c.notes.ignored(d, "not translated: " + a.error);
      continue;
    }
    std::string name, verify, ca, crl;
    bool ssl = false, accept_proxy = false;
    std::vector<std::string> crts, tls_ignored, sock_ignored;
    for (size_t i = 2; i < d.words.size(); ++i) {
      const std::string& k = d.words[i];
      const std::string arg = bind_takes_arg(k) && i + 1 < d.words.size() ? d.words[++i] : "";
      const std::string shown = arg.empty() ? k : k + " " + arg;
      if (k == "ssl") {
        ssl = true;
      } else if (k == "crt") {
        crts.push_back(Ctx::path(c.crt_base, arg));
      } else if (k == "ca-file") {
        ca = Ctx::path(c.ca_base, arg);
      } else if (k == "verify") {
        verify = arg;
      } else if (k == "crl-file") {
        crl = arg;
      } else if (k == "name") {
        name = arg;
      } else if (k == "accept-proxy") {
        accept_proxy = true;
      } else if (k == "no-sslv3" || k == "no-tlsv10" || k == "no-tlsv11" ||
                 (k == "ssl-min-ver" && arg == "TLSv1.2")) {
        // mqttlb's minimum is TLS 1.2 already.
      } else if (k == "ssl-min-ver") {
        tls_ignored.push_back(shown + (arg == "TLSv1.3" ? "" : " (mqttlb refuses TLS < 1.2)"));
      } else if (is_tls_option(k) || k == "crt-list") {
        tls_ignored.push_back(shown);
      } else {
        sock_ignored.push_back(shown);
      }
    }
    if (passthrough) {
      c.notes.ignored(d,
                      "TLS passthrough (this frontend routes on the TLS ClientHello): mqttlb "
                      "must terminate TLS to read the CONNECT; add `ssl crt <certificate>` to "
                      "this bind and let the brokers speak plain MQTT. Not translated");
      continue;
    }
    if (accept_proxy) {
      c.notes.error(d,
                    "accept-proxy: mqttlb does not read PROXY headers from clients, so every "
                    "connection through the load balancer in front would be refused");
      continue;
    }
    ojson tls;
    if (ssl) {
      if (crts.empty()) {
        c.notes.error(d,
                      "`ssl` without `crt`: give this listener a certificate (crt-list is not "
                      "translated)");
        continue;
      }
      std::string cert, key, err, note;
      if (!c.cert_and_key(crts[0], cert, key, err, note)) {
        c.notes.error(d, err);
        continue;
      }
      if (!note.empty()) c.notes.approx(d, note);
      if (crts.size() > 1)
        c.notes.approx(d, "mqttlb serves one certificate per listener: '" + crts[0] +
                              "' (HAProxy's default, the first crt) is used for every client");
      tls["cert"] = cert;
      tls["key"] = key;
      if (!ca.empty()) tls["ca"] = ca;
      if (verify == "optional" || verify == "required") {
        if (ca.empty()) {
          c.notes.error(d, "verify " + verify + " without ca-file (HAProxy refuses it too)");
          continue;
        }
        tls["verify_client"] = verify;
      }
      if (!crl.empty())
        c.notes.ignored(d, "crl-file " + crl +
                               " not translated: mqttlb does not check "
                               "revocation, revoked client certificates are "
                               "accepted");
    } else if (!crts.empty() || !ca.empty()) {
      c.notes.ignored(d, "certificate options without `ssl` (HAProxy ignores them too)");
    }
    if (!tls_ignored.empty()) {
      std::string list;
      for (const auto& t : tls_ignored) list += (list.empty() ? "" : ", ") + t;
      c.notes.ignored(d, "TLS options not translated: " + list +
                             " (mqttlb: TLS 1.2 and 1.3 with ECDHE + AEAD suites, docs/tls.md)");
    }
    if (!sock_ignored.empty()) {
      std::string list;
      for (const auto& t : sock_ignored) list += (list.empty() ? "" : ", ") + t;
      c.notes.ignored(d, "socket options not translated: " + list);
    }
    if (!a.note.empty()) c.notes.approx(d, a.note);
    for (size_t i = 0; i < a.endpoints.size(); ++i) {
      const std::string base = !name.empty() ? name : p.name.empty() ? "mqtt" : p.name;
      ojson l;
      const int port = port_of(a.endpoints[i]);
      l["name"] = unique_name(c.listeners, made++ == 0 ? base : base + "-" + std::to_string(port));
      l["bind"] = a.endpoints[i];
      if (!tls.empty()) l["tls"] = tls;
      c.origin["/listeners/" + std::to_string(c.listeners.size())] = d.line;
      c.proxy_listeners[&p].emplace_back(l["name"].get<std::string>(), port);
      c.listeners.push_back(l);
      c.listener_ports.push_back(port);
    }
    c.notes.exact(d);
  }
}

}  // namespace importer
