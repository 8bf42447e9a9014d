// `balance`, hashing, retries, `timeout connect`, and stick tables ->
// mqttlb's balance section (algorithm, client-id affinity and its limits).
#include <algorithm>

#include "import/haproxy_values.hpp"
#include "import/translate.hpp"

namespace importer {

namespace {

bool is_client_id(const std::string& expr) {
  return contains_ci(expr, "mqtt_field_value") && contains_ci(expr, "client_identifier");
}

}  // namespace

void translate_balance(Ctx& c, const Section& pool) {
  const Directive* bal = find_last(pool, "balance");
  const Directive* ht = find_last(pool, "hash-type");
  const Directive* hbf = find_last(pool, "hash-balance-factor");
  std::string alg = "round-robin";  // HAProxy's default
  if (bal) {
    const std::string& a = bal->arg(1);
    if (a == "leastconn") {
      alg = "leastconn";
      c.notes.exact(*bal);
    } else if (a == "roundrobin" || a == "static-rr") {
      c.notes.exact(*bal);
    } else if (a == "source" || a == "hash") {
      alg = "consistent-hash";
      const bool by_id = a == "hash" && is_client_id(bal->arg(2));
      const bool consistent = ht && ht->arg(1) == "consistent";
      std::string m;
      if (!by_id)
        m = "mqttlb hashes the client id, not " +
            std::string(a == "source" ? "the client address" : bal->arg(2)) +
            " (devices behind one NAT address no longer share a broker; a device keeps its "
            "broker when its address changes)";
      if (!consistent) {
        m += m.empty() ? "" : "; ";
        m += "HAProxy's map-based hashing moved most clients when a server came or went, "
             "mqttlb's consistent hash moves only that server's share";
      }
      if (!hbf) {
        m += m.empty() ? "" : "; ";
        m += "mqttlb also bounds each backend at 1.25 x its fair share of sessions "
             "(balance.hash_balance_factor 0.25)";
      }
      if (m.empty())
        c.notes.exact(*bal);
      else
        c.notes.approx(*bal, m);
    } else {
      alg = "leastconn";
      c.notes.approx(*bal, "balance " + a + " has no mqttlb equivalent: leastconn is used");
    }
  }
  c.balance["algorithm"] = alg;
  if (ht) {
    if (alg == "consistent-hash")
      c.notes.exact(*ht);
    else
      c.notes.ignored(*ht, "hashing is not used by this balance algorithm");
  }
  if (hbf) {
    auto f = parse_uint(hbf->arg(1));
    if (alg != "consistent-hash") {
      c.notes.ignored(*hbf, "hashing is not used by this balance algorithm");
    } else if (f && *f == 0) {
      c.balance["hash_balance_factor"] = 10.0;
      c.notes.approx(*hbf, "0 (unbounded): mqttlb always bounds the load; 10 (the loosest) used");
    } else if (f && *f > 100) {
      const double eps = std::clamp((static_cast<double>(*f) - 100.0) / 100.0, 0.01, 10.0);
      c.balance["hash_balance_factor"] = eps;
      if (eps * 100.0 + 100.0 != static_cast<double>(*f))
        c.notes.approx(*hbf, "outside mqttlb's range 101..1100: " + std::to_string(eps) + " used");
      else
        c.notes.exact(*hbf);
    } else {
      c.notes.error(*hbf, "must be 0 or above 100 (HAProxy refuses it too)");
    }
  }
  // Retries: HAProxy retries the same server unless `option redispatch`
  // (then the last retry goes elsewhere); mqttlb always tries the next best.
  const Directive* retries = find_last(pool, "retries");
  const Directive* redispatch = find_last(pool, "option", "redispatch");
  if (retries) {
    if (auto n = parse_uint(retries->arg(1))) {
      c.set_ranged(c.balance, "retries", *n, 0, 16, *retries, "retries");
      if (!redispatch)
        c.notes.approx(*retries,
                       "HAProxy retried the same server (no option redispatch); "
                       "mqttlb retries the next best backend");
    }
  } else if (redispatch) {
    c.balance["retries"] = 3;  // HAProxy's default count
  }
  if (redispatch) c.notes.exact(*redispatch);
  if (const Directive* t = find_last(pool, "timeout", "connect"))
    if (auto ms = parse_time_ms(t->arg(2)))
      c.set_ranged(c.balance, "backend_connect_timeout_ms", *ms, 10, 600'000, *t,
                   "timeout connect (ms)");
}

void translate_stick(Ctx& c, const Section& pool) {
  std::vector<const Directive*> rules;
  for (const auto& d : pool.body)
    if (d.kw() == "stick") rules.push_back(&d);
  const Section* table_sec = &pool;
  for (const Directive* r : rules)
    for (size_t i = 2; i + 1 < r->words.size(); ++i)
      if (r->words[i] == "table")
        for (const auto& s : c.model.sections)
          if (s.name == r->words[i + 1] && s.kind != SectionKind::Defaults &&
              s.kind != SectionKind::Global)
            table_sec = &s;
  const Directive* table = nullptr;
  for (const auto& d : table_sec->body)
    if (d.kw() == "stick-table") table = &d;
  if (rules.empty()) {
    c.balance["affinity"] = "none";  // no stickiness in HAProxy either
    if (table) c.notes.ignored(*table, "no `stick` rule uses this table: no affinity");
    return;
  }
  c.balance["affinity"] = "client-id";
  for (const Directive* r : rules) {
    const std::string& kind = r->arg(1);
    const std::string& expr = r->arg(2);
    if (contains_ci(expr, "req.payload") || contains_ci(expr, "mqtt_")) {
      if (!c.reads_connect) c.reads_connect = r;
    }
    std::string m;
    if (kind != "on" && kind != "match" && kind != "store-request")
      m = "stick " + kind + ": mqttlb records a client's broker when the broker accepts it";
    else if (!is_client_id(expr))
      m = "HAProxy kept clients on a server by " +
          std::string(expr == "src" ? "client address" : expr) +
          "; mqttlb keeps each client id on its broker";
    for (size_t i = 2; i < r->words.size(); ++i)
      if (r->words[i] == "if" || r->words[i] == "unless") {
        m += m.empty() ? "" : "; ";
        m += "the condition is not translated: every client id gets affinity";
        break;
      }
    if (m.empty())
      c.notes.exact(*r);
    else
      c.notes.approx(*r, m);
  }
  if (!table) {
    c.notes.error(*rules[0], "no stick-table for this rule (HAProxy refuses it too)");
    return;
  }
  if (table_sec != &pool) c.translated.insert(table_sec);
  bool peers = false, expire = false;
  for (size_t i = 1; i < table->words.size(); ++i) {
    const std::string& k = table->words[i];
    const std::string& v = table->arg(i + 1);
    if (k == "type") {
      ++i;
    } else if (k == "len") {
      if (auto n = parse_uint(v); n && *n < 23)
        c.notes.approx(*table, "len " + v + ": HAProxy compared only the first " + v +
                                   " characters of client ids; mqttlb compares the whole id");
      ++i;
    } else if (k == "size") {
      if (auto n = parse_size(v))
        c.set_ranged(c.balance, "affinity_max_entries", *n, 1, 100'000'000, *table, "size");
      ++i;
    } else if (k == "expire") {
      if (auto ms = parse_time_ms(v))
        c.set_ranged(c.balance, "affinity_ttl_s", (*ms + 999) / 1000, 1, 31'536'000, *table,
                     "expire (s)");
      expire = true;
      ++i;
    } else if (k == "peers") {
      peers = true;
      c.notes.approx(*table, "peers " + v +
                                 ": mqttlb's table is per process (kept across SIGHUP "
                                 "reloads) unless affinity_store shares it through Redis "
                                 "(docs/scale-out.md); not set by the import");
      ++i;
    } else if (k == "nopurge") {
      c.notes.approx(*table, "nopurge: mqttlb evicts the least recently used entry when full");
    } else if (k == "store" || k == "srvkey" || k == "write-to") {
      c.notes.ignored(*table, k + " " + v + ": not translated (affinity needs none)");
      ++i;
    }
  }
  if (!expire) {
    c.balance["affinity_ttl_s"] = 31'536'000;
    c.notes.approx(*table,
                   "no expire: HAProxy kept entries until the table was full; mqttlb "
                   "expires them after a year (the longest affinity_ttl_s)");
  }
  if (!peers)
    c.notes.approx(*table,
                   "no peers: HAProxy emptied this table at every reload, so clients "
                   "lost their broker; mqttlb keeps affinity across SIGHUP reloads");
  c.notes.exact(*table);
}

}  // namespace importer
