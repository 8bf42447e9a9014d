// Frontend rules: `tcp-request`, `use_backend`, the ACLs they name, frontend
// maxconn, and the idle timeouts (timeout client/server/tunnel).
#include <algorithm>
#include <map>
#include <set>

#include "import/haproxy_values.hpp"
#include "import/translate.hpp"

namespace importer {

namespace {

struct Cond {
  bool present = false;
  bool unless = false;
  std::string text;  // the condition, with the named ACLs' definitions appended
  std::vector<const Directive*> acls;
};

using Acls = std::map<std::string, std::vector<const Directive*>>;

Cond condition(const Directive& d, const Acls& acls) {
  Cond c;
  size_t k = 1;
  while (k < d.words.size() && d.words[k] != "if" && d.words[k] != "unless") ++k;
  if (k >= d.words.size()) return c;
  c.present = true;
  c.unless = d.words[k] == "unless";
  for (size_t i = k + 1; i < d.words.size(); ++i) {
    c.text += " " + d.words[i];
    std::string name = d.words[i];
    if (!name.empty() && name[0] == '!') name.erase(0, 1);
    auto it = acls.find(name);
    if (it == acls.end()) continue;
    for (const Directive* a : it->second) {
      c.acls.push_back(a);
      for (size_t j = 2; j < a->words.size(); ++j) c.text += " " + a->words[j];
    }
  }
  return c;
}

bool reads_payload(const std::string& t) {
  return contains_ci(t, "req.payload") || contains_ci(t, "mqtt_") || contains_ci(t, "req.len") ||
         contains_ci(t, "req_len");
}

// The N of `sc0_conn_cur gt N` / `src_conn_cur ge N`: the per-IP connection limit.
std::optional<uint64_t> per_ip_limit(const Directive& d) {
  for (size_t i = 0; i + 2 < d.words.size(); ++i) {
    if (!contains_ci(d.words[i], "conn_cur")) continue;
    auto n = parse_uint(d.words[i + 2]);
    if (!n) return std::nullopt;
    if (d.words[i + 1] == "gt") return *n;
    if (d.words[i + 1] == "ge" && *n > 0) return *n - 1;
  }
  return std::nullopt;
}

struct Rules {
  Ctx& c;
  const Section& p;
  bool frontend;  // false: the rules of the pool backend
  Acls acls;
  // For each ACL line: the rules that use it (translated exactly or not).
  std::map<const Directive*, std::vector<std::pair<bool, size_t>>> acl_use;
  bool validity_reject = false;
  bool accept_valid = false;
  bool passthrough = false;  // a rule reads the TLS ClientHello
  const Directive* inspect = nullptr;
  std::set<const Directive*> tracks_used = {};  // track-sc lines a translated limit relies on

  void use(const Cond& cond, bool exact, size_t line) {
    for (const Directive* a : cond.acls) acl_use[a].push_back({exact, line});
  }

  void content(const Directive& d) {
    const std::string& action = d.arg(2);
    if (action.rfind("track-sc", 0) == 0) return;  // decided once all rules are read
    const Cond cond = condition(d, acls);
    if (reads_payload(cond.text) && !c.reads_connect) c.reads_connect = &d;
    const bool accept = action == "accept", reject = action == "reject";
    // Only such a rule makes HAProxy wait (up to inspect-delay) for data.
    if ((accept || reject) && (reads_payload(cond.text) || contains_ci(cond.text, "ssl_")))
      c.content_waits = true;
    if (contains_ci(cond.text, "ssl_hello_type") || contains_ci(cond.text, "ssl_sni")) {
      passthrough = true;
      c.notes.ignored(d, "part of TLS passthrough (see this frontend's bind): not translated");
      return use(cond, false, d.line);
    }
    if ((accept || reject) && contains_ci(cond.text, "mqtt_is_valid")) {
      if (reject) {
        validity_reject = true;
        c.notes.exact(d);  // mqttlb closes every first packet that is not a valid CONNECT
        return use(cond, true, d.line);
      }
      accept_valid = true;
      c.notes.approx(d,
                     "HAProxy forwarded connections failing this test once inspect-delay ran "
                     "out; mqttlb closes every client whose first packet is not a valid "
                     "CONNECT (counted in mqttlb_connections_rejected_total)");
      return use(cond, false, d.line);
    }
    if (accept && (!cond.present ||
                   (reads_payload(cond.text) && !contains_ci(cond.text, "mqtt_field_value")))) {
      c.notes.exact(d);  // "wait until data is there": mqttlb waits for the whole CONNECT
      return use(cond, true, d.line);
    }
    if (reject && contains_ci(cond.text, "conn_rate")) {
      return use(cond, translate_conn_rate(c, p, d, tracks_used), d.line);
    }
    if (reject) {
      c.notes.ignored(d,
                      "refusing clients by their CONNECT fields or address is not translated: "
                      "mqttlb accepts these clients now");
      return use(cond, false, d.line);
    }
    if (accept) {
      c.notes.approx(d,
                     "mqttlb accepts every client that sends a valid CONNECT: the condition is "
                     "not translated");
      return use(cond, false, d.line);
    }
    c.notes.ignored(d, "variables, captures and tracking for logs or rate limits: not translated");
    use(cond, false, d.line);
  }

  void connection(const Directive& d) {
    const std::string& action = d.arg(2);
    const Cond cond = condition(d, acls);
    if (action == "expect-proxy" || action == "expect-netscaler-cip") {
      c.notes.error(d,
                    "mqttlb does not read PROXY/NetScaler headers from clients, so every "
                    "connection through the load balancer in front would be refused");
      return use(cond, false, d.line);
    }
    if (action.rfind("track-sc", 0) == 0) return;  // decided once all rules are read
    if (action == "reject" && contains_ci(cond.text, "conn_cur")) {
      if (auto n = per_ip_limit(d); n && *n > 0) {
        c.set_ranged(c.limits, "max_connections_per_ip", *n, 1, 10'000'000, d,
                     "per-address connection limit");
        c.notes.approx(d,
                       "per client address: HAProxy counted the connections its stick table "
                       "tracked, mqttlb counts open connections per IP "
                       "(limits.max_connections_per_ip)");
        for (const auto& t : p.body)
          if (t.kw() == "tcp-request" && t.arg(2).rfind("track-sc", 0) == 0 && t.arg(3) == "src")
            tracks_used.insert(&t);
        return use(cond, false, d.line);
      }
    }
    if (contains_ci(cond.text, "conn_rate")) {
      return use(cond, translate_conn_rate(c, p, d, tracks_used), d.line);
    } else if (contains_ci(cond.text, "_rate")) {
      c.notes.ignored(d,
                      "rate limits on other counters than the connection rate of the client "
                      "address: not translated (mqttlb has limits.connect_rate and "
                      "limits.flap, docs/config.md)");
    } else if (action == "reject" || action == "accept") {
      c.notes.ignored(d,
                      "address allow/deny rules: not translated (filter addresses in the "
                      "firewall)");
    } else {
      c.notes.ignored(d, "connection actions (marks, variables, tracking): not translated");
    }
    use(cond, false, d.line);
  }

  void route(const Directive& d) {
    const Cond cond = condition(d, acls);
    // plan_routes() noted the use_backend lines of translated frontends.
    if (c.route_rules.count(&d)) return use(cond, false, d.line);
    c.notes.ignored(d, "use_backend outside a frontend: HAProxy ignores it here");
    use(cond, false, d.line);
  }

  // `rate-limit sessions N`: HAProxy paced accepts on this frontend.
  void session_rate() {
    const Directive* r = find_last(p, "rate-limit");
    if (!r) return;
    auto n = parse_uint(r->arg(2));
    if (r->arg(1) != "sessions" || !n || *n == 0) return;
    ojson& cr = c.limits["connect_rate"];
    const uint64_t sum =
        (cr.contains("global_per_s") ? cr["global_per_s"].get<uint64_t>() : 0) + *n;
    cr["global_per_s"] = std::min<uint64_t>(sum, 10'000'000);
    std::string m =
        "HAProxy stopped accepting beyond this many new sessions per second on this frontend "
        "(the rest waited in the accept backlog); mqttlb refuses them "
        "(limits.connect_rate.global_per_s: CONNACK 0x03 on a plain listener, closed on TLS), "
        "counting all listeners together";
    if (cr.contains("burst"))
      m += "; its bucket holds " + std::to_string(cr["burst"].get<uint64_t>()) +
           " (limits.connect_rate.burst, the per-address rate's)";
    c.notes.approx(*r, m);
  }

  void run() {
    for (const auto& d : p.body)
      if (d.kw() == "acl") acls[d.arg(1)].push_back(&d);
    for (const auto& d : p.body) {
      const std::string& k = d.kw();
      if (k == "mode" || k == "default_backend") {
        c.notes.exact(d);
      } else if (k == "use_backend") {
        route(d);
      } else if (k == "tcp-request" && d.arg(1) == "inspect-delay") {
        inspect = &d;
        c.inspect_delay = true;
        if (auto t = parse_time_ms(d.arg(2)))
          c.set_ranged(c.limits, "connect_timeout_ms", *t, 100, 600'000, d, "inspect-delay (ms)");
      } else if (k == "tcp-request" && d.arg(1) == "content") {
        content(d);
      } else if (k == "tcp-request" && (d.arg(1) == "connection" || d.arg(1) == "session")) {
        connection(d);
      }
    }
    for (const auto& d : p.body)
      if (d.kw() == "tcp-request" && d.arg(2).rfind("track-sc", 0) == 0) {
        if (tracks_used.count(&d))
          c.notes.exact(d);
        else
          c.notes.ignored(d, "tracking that no translated limit uses: not translated");
      }
    for (const auto& [a, uses] : acl_use) {
      bool all_exact = true;
      size_t line = 0;
      for (const auto& [exact, l] : uses)
        if (!exact) all_exact = false, line = l;
      if (all_exact || c.routed_acls.count(a->line))
        c.notes.exact(*a);
      else
        c.notes.ignored(*a, "used by line " + std::to_string(line) + ", which is not translated");
    }
    for (const auto& d : p.body)
      if (d.kw() == "acl" && !acl_use.count(&d))
        c.notes.ignored(d, "no translated rule uses this ACL");
    if (inspect && passthrough)
      c.notes.ignored(*inspect,
                      "part of TLS passthrough (see this frontend's bind): not translated");
    else if (inspect && !c.content_waits)
      c.notes.approx(*inspect,
                     "no `tcp-request content` rule reads the payload, so HAProxy did "
                     "not wait at all; mqttlb waits for the whole CONNECT up to this "
                     "long (limits.connect_timeout_ms)");
    else if (inspect && !validity_reject && !accept_valid)
      c.notes.approx(*inspect,
                     "once inspect-delay ran out HAProxy forwarded whatever had "
                     "arrived; mqttlb closes a client whose CONNECT is not complete "
                     "by then (limits.connect_timeout_ms)");
    if (!frontend) return;
    session_rate();
    if (const Directive* m = find_last(p, "maxconn")) {
      if (auto n = parse_uint(m->arg(1))) {
        c.fe_maxconn += *n;
        c.fe_maxconn_count++;
        c.notes.approx(*m,
                       "HAProxy counted maxconn per frontend and let the excess wait in the "
                       "accept queue; mqttlb has one limit for all listeners and closes the "
                       "excess at accept (limits.max_connections)");
      }
    }
  }
};

}  // namespace

void translate_frontend_rules(Ctx& c, const Section& p) {
  Rules r{c, p, true, {}, {}};
  r.run();
}

void translate_backend_rules(Ctx& c, const Section& p) {
  Rules r{c, p, false, {}, {}};
  r.run();
}

void translate_idle(Ctx& c) {
  const Section* fe = c.mqtt_proxies.empty() ? nullptr : c.mqtt_proxies[0];
  const Directive* client = fe ? find_last(*fe, "timeout", "client") : nullptr;
  const Directive* server = c.pool ? find_last(*c.pool, "timeout", "server") : nullptr;
  const Directive* tunnel = c.pool ? find_last(*c.pool, "timeout", "tunnel") : nullptr;
  auto ms = [](const Directive* d) { return d ? parse_time_ms(d->arg(2)) : std::nullopt; };
  // An established TCP connection: HAProxy closes it after `timeout tunnel`
  // of silence when set, else after the smaller of client and server.
  const Directive* eff = tunnel;
  if (!ms(eff)) {
    eff = ms(client) ? client : nullptr;
    if (ms(server) && (!eff || *ms(server) < *ms(eff))) eff = server;
  }
  for (const Directive* d : {client, server, tunnel}) {
    if (!d || d == eff) continue;
    if (eff && eff == tunnel)
      c.notes.exact(*d);  // HAProxy, too, uses only the tunnel timeout once connected
    else
      c.notes.approx(*d, "mqttlb has one idle rule for both sides of a session; line " +
                             std::to_string(eff ? eff->line : 0) + " gives its keep-alive 0 cap");
  }
  if (!eff || !ms(eff)) return;
  const uint64_t t = *ms(eff);
  const uint64_t s = (t + 999) / 1000;
  c.set_ranged(c.limits, "keepalive0_idle_cap_s", s, 1, 604'800, *eff, "idle timeout (s)");
  std::string m = "HAProxy closed connections silent for " + ms_text(t) +
                  "; mqttlb closes a session silent for 1.5 x the client's keep-alive + "
                  "limits.idle_grace_ms, and clients with keep-alive 0 after "
                  "limits.keepalive0_idle_cap_s (" +
                  std::to_string(s) + ")";
  if (t <= 90'000)
    m += "; this timeout cut idle clients with keep-alive 60 s before their PINGREQ, mqttlb "
         "does not";
  c.notes.approx(*eff, m);
}

}  // namespace importer
