// Per-address connection rate limits, as the guides write them:
//   stick-table type ip size 100k expire 30s store conn_rate(10s)
//   tcp-request connection track-sc0 src
//   tcp-request connection reject if { sc_conn_rate(0) gt 20 }
// -> limits.connect_rate.per_ip_per_s + burst (docs/config.md "limits").
// HAProxy counts connections in a sliding window of the table's period, the
// refused ones included; mqttlb refills a token bucket per address, so the
// translation is always approximate (and says how).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "import/haproxy_acl.hpp"
#include "import/haproxy_values.hpp"
#include "import/translate.hpp"

namespace importer {

namespace {

// "sc_conn_rate(0)" / "sc0_conn_rate" -> 0; "src_conn_rate" -> -1; else nullopt.
// `table` gets a table name given as the fetch's argument.
std::optional<int> counter_of(const std::string& f, std::string& table) {
  auto arg = [&](size_t open) -> std::optional<std::string> {
    if (open >= f.size()) return std::string();
    if (f[open] != '(' || f.back() != ')') return std::nullopt;
    return f.substr(open + 1, f.size() - open - 2);
  };
  if (f.rfind("sc_conn_rate(", 0) == 0) {
    auto a = arg(12);
    if (!a || a->empty()) return std::nullopt;
    const size_t comma = a->find(',');
    if (comma != std::string::npos) table = a->substr(comma + 1);
    auto n = parse_uint(a->substr(0, comma));
    if (!n || *n > 2) return std::nullopt;
    return static_cast<int>(*n);
  }
  if (f.size() >= 13 && f.rfind("sc", 0) == 0 && f[2] >= '0' && f[2] <= '2' &&
      f.compare(3, 10, "_conn_rate") == 0) {
    auto a = arg(13);
    if (!a) return std::nullopt;
    table = *a;
    return f[2] - '0';
  }
  if (f.rfind("src_conn_rate", 0) == 0) {
    auto a = arg(13);
    if (!a) return std::nullopt;
    table = *a;
    return -1;
  }
  return std::nullopt;
}

struct Track {
  const Directive* d = nullptr;
  int counter = 0;
  std::string key, table;
};

std::vector<Track> tracks_of(const Section& p) {
  std::vector<Track> v;
  for (const auto& d : p.body) {
    const std::string& a = d.arg(2);
    if (d.kw() != "tcp-request" || a.size() != 9 || a.rfind("track-sc", 0) != 0) continue;
    if (a[8] < '0' || a[8] > '2') continue;
    Track t{&d, a[8] - '0', d.arg(3), ""};
    for (size_t i = 4; i + 1 < d.words.size(); ++i)
      if (d.words[i] == "table") t.table = d.words[i + 1];
    v.push_back(t);
  }
  return v;
}

}  // namespace

// Notes `d` either way; true when it became limits.connect_rate. `used` gets
// the track-sc lines it relies on.
bool translate_conn_rate(Ctx& c, const Section& p, const Directive& d,
                         std::set<const Directive*>& used) {
  acl::Definitions defs;
  for (const auto& a : p.body)
    if (a.kw() == "acl") acl::define(defs, a.words, a.line);
  const acl::Condition cond = acl::condition_of(d.words, defs);
  auto no = [&](const std::string& why) {
    c.notes.ignored(d, "connection rate limit not translated: " + why);
    return false;
  };
  if (d.arg(2) != "reject") return no("only `reject` rules translate");
  if (!cond.present || cond.unless || !cond.error.empty() || cond.any.size() != 1 ||
      cond.any[0].size() != 1 || cond.any[0][0].negated || cond.any[0][0].tests.size() != 1)
    return no("only `reject if { sc_conn_rate(0) gt N }` (or one ACL saying that) translates");
  const acl::Test& t = cond.any[0][0].tests[0];
  std::string table;
  const auto counter = counter_of(t.fetch, table);
  if (!counter) return no("`" + t.fetch + "` is not a connection rate of the client address");
  if ((!t.method.empty() && t.method != "int") || t.patterns.size() != 2 ||
      (t.patterns[0] != "gt" && t.patterns[0] != "ge"))
    return no("only `gt N` or `ge N` translates");
  const auto n = parse_uint(t.patterns[1]);
  if (!n) return no("\"" + t.patterns[1] + "\" is not a number");
  const uint64_t allowed = t.patterns[0] == "gt" ? *n : *n - std::min<uint64_t>(*n, 1);
  if (allowed == 0) return no("it refuses every connection");
  // The counter must track the client address, into a table storing conn_rate.
  const Track* track = nullptr;
  const auto tracks = tracks_of(p);
  for (const Track& x : tracks)
    if ((*counter < 0 ? x.table == table : x.counter == *counter) && x.key == "src") track = &x;
  if (!track)
    return no(*counter < 0 ? "no `track-sc* src` fills this table (HAProxy counted nothing)"
                           : "no `track-sc" + std::to_string(*counter) +
                                 " src` before it (HAProxy counted nothing)");
  if (table.empty()) table = track->table;
  const Section* sec = table.empty() ? &p : find_backend(c.model, table);
  const Directive* st = nullptr;
  if (sec)
    for (const auto& x : sec->body)
      if (x.kw() == "stick-table") st = &x;
  if (!st) return no("no stick-table for the tracked counter (HAProxy refuses this too)");
  std::optional<uint64_t> period;
  std::string type;
  for (size_t i = 1; i + 1 < st->words.size(); ++i) {
    if (st->words[i] == "type") type = st->words[i + 1];
    if (st->words[i] != "store") continue;
    // `store a,b,conn_rate(10s)`: the period of conn_rate.
    const std::string& s = st->words[i + 1];
    const size_t at = s.find("conn_rate(");
    const size_t close = at == std::string::npos ? at : s.find(')', at);
    if (close != std::string::npos) period = parse_time_ms(s.substr(at + 10, close - at - 10));
  }
  if (type != "ip" && type != "ipv6") return no("the table is not keyed by address (type ip)");
  if (!period || *period == 0)
    return no("the table stores no conn_rate(PERIOD): HAProxy's rate was always 0");
  if (c.limits.contains("connect_rate") && c.limits["connect_rate"].contains("per_ip_per_s"))
    return no("mqttlb has one per-address rate; the first rule's is used");
  const double exact = static_cast<double>(allowed) * 1000.0 / static_cast<double>(*period);
  const uint64_t per_s =
      std::clamp<uint64_t>(static_cast<uint64_t>(std::llround(exact)), 1, 10'000'000);
  const uint64_t burst = std::min<uint64_t>(allowed, 10'000'000);
  ojson& r = c.limits["connect_rate"];
  r["per_ip_per_s"] = per_s;
  r["burst"] = burst;
  r["ip_prefix_v6"] = 128;  // HAProxy's table keys whole addresses
  std::string m = "HAProxy refused an address's connections beyond " + std::to_string(allowed) +
                  " within any " + ms_text(*period) +
                  " (the refused ones counted too, so a client that keeps trying stays "
                  "refused); mqttlb gives each address a bucket of " +
                  std::to_string(burst) + " connections refilled at " + std::to_string(per_s) +
                  "/s (limits.connect_rate), refused attempts cost nothing, and a plain "
                  "listener answers CONNACK 0x03 before closing";
  if (static_cast<double>(per_s) != exact) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", exact);
    m += "; " + std::to_string(allowed) + " per " + ms_text(*period) + " is " + buf +
         "/s and mqttlb's rate is whole connections per second: " + std::to_string(per_s) +
         "/s used";
  }
  if (r.contains("global_per_s"))
    m += "; the burst is also the global bucket's (limits.connect_rate.global_per_s)";
  c.notes.approx(d, m);
  used.insert(track->d);
  c.notes.exact(*st);
  if (sec != &p) c.translated.insert(sec);
  c.origin["/limits/connect_rate"] = d.line;
  return true;
}

}  // namespace importer
