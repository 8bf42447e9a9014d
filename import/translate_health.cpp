// Health: `check` and its server parameters, `timeout check`, and the check
// itself: a TCP connect, an HTTP or other protocol check, or `tcp-check`
// rules sending an MQTT CONNECT as hex (decoded with the mqtt/ parser).
#include <algorithm>
#include <span>

#include "import/haproxy_values.hpp"
#include "import/translate.hpp"
#include "mqtt/connect.hpp"

namespace importer {

namespace {

const Directive& origin(const Server& s, const char* kw) {
  const Param* p = s.find(kw);
  return p ? *p->origin : *s.line;
}

uint64_t param_time(const Server& s, const char* kw, uint64_t dflt) {
  const Param* p = s.find(kw);
  auto v = p ? parse_time_ms(p->arg) : std::nullopt;
  return v ? *v : dflt;
}

uint64_t param_uint(const Server& s, const char* kw, uint64_t dflt) {
  const Param* p = s.find(kw);
  auto v = p ? parse_uint(p->arg) : std::nullopt;
  return v ? *v : dflt;
}

// How a hand-encoded CONNECT went wrong.
enum class Slip { None, Length, Trailing };

// The CONNECT of a `tcp-check send-binary`. Hand-encoded hex often has a
// wrong Remaining Length (repaired here) or stray bytes after the packet.
std::optional<mqtt::ConnectInfo> decode_connect(const std::string& bytes, Slip& slip,
                                                std::string& why) {
  auto span = [](const std::string& s) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  mqtt::ConnectResult r = mqtt::parse_connect(span(bytes));
  if (r.status == mqtt::ParseStatus::Done) {
    if (r.info.packet_length < bytes.size()) {
      slip = Slip::Trailing;
      why = std::to_string(bytes.size() - r.info.packet_length) + " byte(s) follow the CONNECT";
    }
    return r.info;
  }
  why = r.status == mqtt::ParseStatus::NeedMore ? "the packet is shorter than its Remaining Length"
                                                : mqtt::to_string(r.error);
  // Re-encode the fixed header with the length of what is there.
  size_t i = 1;
  while (i < bytes.size() && i < 5 && (static_cast<uint8_t>(bytes[i]) & 0x80)) ++i;
  if (bytes.empty() || i >= bytes.size()) return std::nullopt;
  std::string body = bytes.substr(i + 1);
  std::string again(1, bytes[0]);
  for (size_t n = body.size();;) {
    uint8_t b = n % 128;
    n /= 128;
    again += static_cast<char>(b | (n ? 0x80 : 0));
    if (!n) break;
  }
  again += body;
  r = mqtt::parse_connect(span(again));
  if (r.status != mqtt::ParseStatus::Done || r.info.packet_length != again.size())
    return std::nullopt;
  slip = Slip::Length;
  return r.info;
}

struct TcpCheck {
  bool mqtt = false;  // a CONNECT was sent
  bool expects_connack = false;
  bool any_connack = false;  // `expect binary 2002`: refusals matched too
};

void connect_fields(Ctx& c, const Directive& d, const mqtt::ConnectInfo& ci) {
  ojson& h = c.health;
  if (ci.protocol_level == 4 || ci.protocol_level == 5) {
    h["protocol_level"] = ci.protocol_level;
  } else {
    c.notes.approx(d, "an MQTT 3.1 CONNECT: mqttlb checks with MQTT 3.1.1 (protocol_level 4)");
  }
  if (ci.username) h["username"] = *ci.username;
  if (ci.password) h["password"] = *ci.password;
  if (ci.keep_alive > 0)
    h["keep_alive_s"] = ci.keep_alive;
  else
    c.notes.approx(d, "keep-alive 0: mqttlb announces health.keep_alive_s (60)");
  if (!ci.client_id.empty()) {
    const std::string prefix = ci.client_id.substr(0, 16);
    h["client_id_prefix"] = prefix;
    c.notes.approx(d, "fixed check client id \"" + ci.client_id + "\": mqttlb's check ids are \"" +
                          prefix +
                          "\" + a random instance id + \"-\" + the backend name (one fixed "
                          "id makes two balancers take over each other's check session)");
  }
  if (!ci.clean_start) c.notes.approx(d, "clean session 0: mqttlb's check sessions are clean");
  if (ci.will) c.notes.ignored(d, "the check's will message is not translated");
  if (!ci.properties.empty())
    c.notes.ignored(d, "the CONNECT's MQTT 5 properties are not translated");
}

void expect_rule(Ctx& c, const Directive& d, TcpCheck& t) {
  size_t k = 2;
  bool negate = false;
  static const std::vector<std::string> kinds = {"binary",    "rbinary",   "string", "rstring",
                                                 "binary-lf", "string-lf", "custom"};
  while (k < d.words.size() && std::find(kinds.begin(), kinds.end(), d.words[k]) == kinds.end()) {
    if (d.words[k] == "!") negate = true;
    ++k;
  }
  std::string kind = d.arg(k), pattern = d.arg(k + 1);
  if (kind == "rbinary" && !pattern.empty() && pattern[0] == '^')
    kind = "binary", pattern.erase(0, 1);
  auto bytes = kind == "binary" && !negate ? decode_hex(pattern) : std::nullopt;
  if (bytes && bytes->size() >= 2 && static_cast<uint8_t>((*bytes)[0]) == 0x20) {
    t.expects_connack = true;
    if (bytes->size() >= 4 && (*bytes)[3] == 0) {
      c.notes.exact(d);  // CONNACK accepted: what mqttlb requires
    } else if (bytes->size() == 2) {
      t.any_connack = true;
      c.notes.approx(d,
                     "matched any CONNACK, refusals included; mqttlb counts refusals that "
                     "prove the broker alive (bad credentials, not authorized, identifier "
                     "rejected) but not \"server unavailable\" (health.accept_refusal)");
    } else {
      c.notes.approx(d,
                     "expects a CONNACK refusal: mqttlb requires CONNACK 0, or a refusal "
                     "that proves the broker alive with health.accept_refusal");
    }
  } else if (bytes && *bytes == std::string("\xd0\x00", 2)) {
    c.notes.exact(d);  // PINGRESP: mqttlb's check ends with PINGREQ/PINGRESP too
  } else {
    c.notes.approx(d,
                   "not an MQTT CONNACK/PINGRESP match: mqttlb's check requires CONNACK 0 "
                   "and a PINGRESP");
  }
}

// `tcp-check` rules. Returns whether they make an MQTT check.
TcpCheck tcp_check(Ctx& c, const std::vector<const Directive*>& rules) {
  TcpCheck t;
  bool sent = false;
  for (const Directive* dp : rules) {
    const Directive& d = *dp;
    const std::string& sub = d.arg(1);
    if (sub == "comment") {
      c.notes.exact(d);
    } else if (sub == "connect") {
      std::string extra;
      for (size_t i = 2; i < d.words.size(); ++i)
        if (d.words[i] != "default" && d.words[i] != "linger" && d.words[i] != "ssl" &&
            d.words[i] != "send-proxy")
          extra += " " + d.words[i];
      if (extra.empty())
        c.notes.exact(d);
      else
        c.notes.approx(d,
                       "connect options not translated:" + extra +
                           " (mqttlb checks each backend's own address, TLS and PROXY settings)");
    } else if (sub == "send-binary") {
      auto bytes = decode_hex(d.arg(2));
      if (!bytes) {
        c.notes.error(d, "\"" + d.arg(2) + "\" is not hex (HAProxy refuses it too)");
      } else if (!sent && !bytes->empty() && static_cast<uint8_t>((*bytes)[0]) == 0x10) {
        Slip slip = Slip::None;
        std::string why;
        if (auto ci = decode_connect(*bytes, slip, why)) {
          t.mqtt = true;
          if (slip == Slip::Length)
            c.notes.approx(d, "this CONNECT's Remaining Length is wrong (" + why +
                                  "): brokers never answered it, so HAProxy marked every server "
                                  "down; mqttlb sends a well-formed CONNECT with the same fields");
          else if (slip == Slip::Trailing)
            c.notes.approx(d, why +
                                  " (a hand-encoding slip): brokers read them as a malformed "
                                  "next packet and close the check session; mqttlb sends the "
                                  "CONNECT alone");
          else
            c.notes.exact(d);
          connect_fields(c, d, *ci);
        } else {
          c.notes.approx(
              d, "not a valid MQTT CONNECT (" + why +
                     "): brokers refused it, so "
                     "HAProxy marked every server down; mqttlb sends a well-formed CONNECT");
          t.mqtt = true;
        }
      } else if (*bytes == std::string("\xc0\x00", 2) || *bytes == std::string("\xe0\x00", 2)) {
        c.notes.exact(d);  // PINGREQ / DISCONNECT: part of mqttlb's check
      } else {
        c.notes.approx(d, "not an MQTT packet mqttlb's check sends (CONNECT, PINGREQ, DISCONNECT)");
      }
      sent = true;
    } else if (sub == "expect") {
      expect_rule(c, d, t);
    } else if (sub == "send" || sub == "send-lf" || sub == "send-binary-lf") {
      c.notes.approx(d, "a text payload: mqttlb's check speaks MQTT (CONNECT, PINGREQ)");
      sent = true;
    } else {
      c.notes.ignored(d, "tcp-check " + sub + ": not translated");
    }
  }
  return t;
}

}  // namespace

void translate_health(Ctx& c, const Section& pool) {
  std::vector<const Server*> checked, unchecked;
  for (const Server& s : c.servers) (s.find("check") ? checked : unchecked).push_back(&s);
  const Directive* tcpchk = find_last(pool, "option", "tcp-check");
  const Directive* other = nullptr;
  for (const char* o : {"httpchk", "ssl-hello-chk", "mysql-check", "redis-check", "ldap-check",
                        "smtpchk", "pgsql-check", "external-check", "spop-check"})
    if (const Directive* d = find_last(pool, "option", o)) other = d;
  std::vector<const Directive*> rules, own;
  for (const Directive* d : find_all(pool, "tcp-check"))
    (std::find_if(pool.body.begin(), pool.body.end(),
                  [&](const Directive& x) { return &x == d; }) != pool.body.end()
         ? own
         : rules)
        .push_back(d);
  if (!own.empty()) rules = own;  // a section's own rules replace the inherited ones
  const Directive* tcheck = find_last(pool, "timeout", "check");
  std::vector<const Directive*> check_lines = rules;
  for (const Directive* d : {tcpchk, other, tcheck})
    if (d) check_lines.push_back(d);
  for (const Directive* d : find_all(pool, "http-check")) check_lines.push_back(d);
  if (checked.empty()) {
    c.health["enabled"] = false;  // HAProxy: a server without `check` is always up
    for (const Directive* d : check_lines)
      c.notes.ignored(*d, "no server has `check`: HAProxy never ran this check");
    return;
  }
  const Server& first = *checked[0];
  const uint64_t inter = param_time(first, "inter", 2000);
  c.set_ranged(c.health, "interval_ms", inter, 100, 3'600'000, origin(first, "inter"),
               "inter (ms)");
  const uint64_t interval = c.health["interval_ms"].get<uint64_t>();
  // HAProxy: without `timeout check` the whole check must finish within
  // inter; with it, min(timeout connect, inter) to connect, then timeout check.
  uint64_t timeout = std::min<uint64_t>(interval, 600'000);
  if (tcheck) {
    if (auto t = parse_time_ms(tcheck->arg(2))) {
      const Directive* tc = find_last(pool, "timeout", "connect");
      auto conn = tc ? parse_time_ms(tc->arg(2)) : std::nullopt;
      const uint64_t total = std::min(conn ? *conn : interval, interval) + *t;
      timeout = std::clamp<uint64_t>(total, 10, std::min<uint64_t>(interval, 600'000));
      c.notes.approx(*tcheck, "HAProxy allowed min(timeout connect, inter) to connect plus " +
                                  ms_text(*t) + " for the reply; mqttlb's timeout_ms (" +
                                  std::to_string(timeout) +
                                  " ms) covers connect and CONNACK "
                                  "together, and not more than interval_ms");
    }
  }
  c.health["timeout_ms"] = timeout;
  c.set_ranged(c.health, "rise", param_uint(first, "rise", 2), 1, 100, origin(first, "rise"),
               "rise");
  c.set_ranged(c.health, "fall", param_uint(first, "fall", 3), 1, 100, origin(first, "fall"),
               "fall");
  for (const Server* s : checked) {
    const bool differs = param_time(*s, "inter", 2000) != inter ||
                         param_uint(*s, "rise", 2) != param_uint(first, "rise", 2) ||
                         param_uint(*s, "fall", 3) != param_uint(first, "fall", 3);
    if (differs)
      c.notes.approx(*s->line, "mqttlb checks every backend alike: inter, rise and fall of line " +
                                   std::to_string(first.line->line) + " are used");
    for (const char* k : {"fastinter", "downinter", "agent-check", "observe", "on-error",
                          "error-limit", "on-marked-up", "check-alpn", "check-proto", "check-sni"})
      if (const Param* p = s->find(k))
        c.notes.ignored(*p->origin, std::string(k) + ": not translated");
    for (const char* k : {"port", "addr"})
      if (const Param* p = s->find(k))
        c.notes.approx(*p->origin, std::string(k) + " " + p->arg +
                                       ": mqttlb checks each broker's MQTT address itself");
    if (s->find("check-ssl") && !s->find("ssl"))
      c.notes.approx(origin(*s, "check-ssl"),
                     "check-ssl without ssl: mqttlb checks the way it "
                     "connects (plain here)");
    if (s->find("check-send-proxy") && !s->find("send-proxy") && !s->find("send-proxy-v2"))
      c.notes.approx(origin(*s, "check-send-proxy"),
                     "check-send-proxy without send-proxy: "
                     "mqttlb's checks use the backend's PROXY setting");
  }
  for (const Server* s : unchecked)
    c.notes.approx(*s->line,
                   "no `check`: HAProxy never marked this server down; mqttlb checks "
                   "every backend");
  // slowstart and on-marked-down: one value for every backend in mqttlb.
  uint64_t slow = 0;
  size_t shutdown = 0;
  for (const Server& s : c.servers) {
    slow = std::max(slow, param_time(s, "slowstart", 0));
    if (const Param* p = s.find("on-marked-down")) {
      if (p->arg == "shutdown-sessions")
        ++shutdown;
      else
        c.notes.ignored(*p->origin, "on-marked-down " + p->arg + ": not translated");
    }
  }
  if (slow) {
    for (const Server& s : c.servers)
      if (param_time(s, "slowstart", 0) != slow)
        c.notes.approx(*s.line,
                       "mqttlb ramps every returning backend alike: slowstart " + ms_text(slow));
    c.set_ranged(c.health, "slowstart_ms", slow, 0, 3'600'000, *c.servers[0].line,
                 "slowstart (ms)");
  }
  if (shutdown) {
    c.health["on_down"] = "shutdown-sessions";
    c.health["shutdown_spread_ms"] = 0;  // HAProxy closes them all at once
    if (shutdown != c.servers.size())
      for (const Server& s : c.servers)
        if (!s.find("on-marked-down"))
          c.notes.approx(*s.line, "mqttlb applies on_down \"shutdown-sessions\" to every backend");
  }
  // What the check sends.
  const Directive& at = origin(first, "check");
  if (tcpchk || !rules.empty()) {
    if (tcpchk) c.notes.exact(*tcpchk);
    TcpCheck t = tcp_check(c, rules);
    if (t.mqtt) {
      c.health["mode"] = "reconnect";  // HAProxy opens a new connection for every check
      if (t.any_connack) c.health["accept_refusal"] = true;
      if (!t.expects_connack && !rules.empty())
        c.notes.approx(*rules.back(), "HAProxy did not wait for the CONNACK; mqttlb requires it");
      return;
    }
    if (tcpchk && rules.empty()) {
      c.health["accept_refusal"] = true;
      c.notes.approx(*tcpchk,
                     "a plain TCP connect check: mqttlb checks with an MQTT session and "
                     "counts CONNACK refusals that prove the broker alive as passes "
                     "(health.accept_refusal), like the TCP check did");
      return;
    }
  }
  c.health["accept_refusal"] = true;
  if (other) {
    c.notes.approx(*other, "option " + other->arg(1) +
                               ": mqttlb checks the brokers with an MQTT "
                               "session on their MQTT address instead, counting CONNACK refusals "
                               "that prove the broker alive as passes (health.accept_refusal)");
    for (const Directive* d : find_all(pool, "http-check"))
      c.notes.ignored(*d, "HTTP check details: replaced by the MQTT check");
  } else if (rules.empty()) {
    c.notes.approx(at,
                   "HAProxy only checked that TCP connects; mqttlb checks with an MQTT "
                   "session (CONNECT, CONNACK, PINGREQ/PINGRESP) and counts CONNACK refusals "
                   "that prove the broker alive as passes (health.accept_refusal)");
  }
}

}  // namespace importer
