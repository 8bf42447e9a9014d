// The note for a directive no translation step accounted for: why mqttlb
// does not need it or has no equivalent. Keyed by keyword (and the second
// word for `option`, `timeout`, `stats`, `no`).
#include <string_view>
#include <utility>

#include "import/translate.hpp"

namespace importer {

namespace {

constexpr const char* kLogging =
    "logging: mqttlb writes one line per event to stdout/stderr (journald under systemd)";
constexpr const char* kProcess =
    "process management: mqttlb runs in the foreground under systemd (deploy/mqttlb.service) "
    "and raises its open-files limit itself";
constexpr const char* kTls =
    "TLS defaults: mqttlb uses TLS 1.2 and 1.3 with ECDHE + AEAD suites (docs/tls.md)";
constexpr const char* kHttp = "HTTP only: mqttlb balances MQTT";
constexpr const char* kStats =
    "HAProxy's runtime API and statistics page: mqttlb exports Prometheus metrics "
    "(metrics.bind) and reloads on SIGHUP";

struct Reason {
  std::string_view key;
  const char* why;
};

// Checked in order; a key ending in '*' matches any keyword with that prefix.
constexpr Reason kReasons[] = {
    {"log", kLogging},
    {"log-format", kLogging},
    {"log-tag", kLogging},
    {"log-send-hostname", kLogging},
    {"error-log-format", kLogging},
    {"option tcplog", kLogging},
    {"option httplog", kLogging},
    {"option dontlognull", kLogging},
    {"option log-health-checks", kLogging},
    {"option logasap", kLogging},
    {"option log-separate-errors", kLogging},
    {"no log", kLogging},
    {"capture", kLogging},
    {"declare", kLogging},
    {"unique-id-format", kLogging},
    {"daemon", kProcess},
    {"master-worker", kProcess},
    {"user", kProcess},
    {"group", kProcess},
    {"uid", kProcess},
    {"gid", kProcess},
    {"chroot", kProcess},
    {"pidfile", kProcess},
    {"ulimit-n", kProcess},
    {"node", kProcess},
    {"description", kProcess},
    {"bind-process", kProcess},
    {"insecure-fork-wanted", kProcess},
    {"cpu-map", "CPU pinning: not translated (mqttlb runs `workers` threads)"},
    {"nbproc", "nbproc (refused by HAProxy 2.5+): mqttlb runs one process with `workers` threads"},
    {"stats", kStats},
    {"ssl-default-*", kTls},
    {"ssl-dh-param-file", kTls},
    {"ssl-engine", kTls},
    {"ssl-mode-async", kTls},
    {"ssl-load-extra-files", kTls},
    {"issuers-chain-path", kTls},
    {"tune.ssl.*", kTls},
    {"tune.bufsize",
     "buffer size: mqttlb reads the whole CONNECT, up to limits.max_connect_bytes "
     "(64 KiB), whatever its size"},
    {"tune.*", "HAProxy tuning: no mqttlb equivalent"},
    {"spread-checks", "mqttlb spaces its checks itself"},
    {"lua-*", "Lua scripts: not translated"},
    {"setenv", "environment settings are not applied by the importer"},
    {"presetenv", "environment settings are not applied by the importer"},
    {"unsetenv", "environment settings are not applied by the importer"},
    {"resetenv", "environment settings are not applied by the importer"},
    {"timeout http-request", kHttp},
    {"timeout http-keep-alive", kHttp},
    {"timeout tarpit", kHttp},
    {"timeout queue", "mqttlb has no connection queue (a client waits for no free slot)"},
    {"timeout client-fin",
     "half-closed connections: mqttlb closes a session when either side ends"},
    {"timeout server-fin",
     "half-closed connections: mqttlb closes a session when either side ends"},
    {"timeout client", "idle timeout of another frontend: mqttlb has one idle rule"},
    {"timeout *", "not translated"},
    {"option tcpka", "TCP keep-alive probes: mqttlb relies on MQTT keep-alive"},
    {"option clitcpka", "TCP keep-alive probes: mqttlb relies on MQTT keep-alive"},
    {"option srvtcpka", "TCP keep-alive probes: mqttlb relies on MQTT keep-alive"},
    {"option splice-*",
     "kernel splicing: mqttlb forwards in userspace (kernel forwarding arrives "
     "with its issue)"},
    {"option abortonclose", "mqttlb closes a session when either side ends"},
    {"option allbackups", "mqttlb has no backup servers"},
    {"option persist", "mqttlb never sends a client to a backend that is down"},
    {"option http*", kHttp},
    {"option forwardfor", kHttp},
    {"option nolinger", "mqttlb closes sockets normally"},
    {"option socket-stats", kStats},
    {"http-*", kHttp},
    {"errorfile", kHttp},
    {"errorloc*", kHttp},
    {"monitor-uri", "HTTP monitoring endpoint: mqttlb's admin API will offer /healthz"},
    {"monitor", "HTTP monitoring endpoint: mqttlb's admin API will offer /healthz"},
    {"rate-limit", "only `rate-limit sessions N` in a frontend translates (limits.connect_rate)"},
    {"email-alert", "no e-mail alerts in mqttlb: alert on mqttlb_backend_up"},
    {"fullconn", "dynamic per-server maxconn: mqttlb has no per-backend limit"},
    {"grace", "mqttlb drains sessions on SIGTERM for limits.shutdown_grace_ms instead"},
    {"server-state-*", "mqttlb keeps backend states across SIGHUP reloads in-process"},
    {"load-server-state-from-file", "mqttlb keeps backend states across SIGHUP reloads in-process"},
    {"cookie", kHttp},
    {"dynamic-cookie-key", kHttp},
    {"source", "mqttlb connects to brokers from the default source address"},
    {"filter", "stream filters: not translated"},
    {"tcp-response", "response inspection: not translated"},
    {"external-check", "external checks: mqttlb checks with an MQTT session"},
    {"force-persist", "mqttlb never sends a client to a backend that is down"},
    {"ignore-persist", "not translated"},
    {"persist", "not translated"},
    {"acl", "ACLs: mqttlb has none; no translated rule uses this one"},
    {"stick-table", "no translated rule uses this table"},
    {"id", "proxy ids: not needed"},
    {"hash-type", "hashing is not used by this balance algorithm"},
    {"default-server", "this section's servers are not translated"},
};

bool match(std::string_view key, std::string_view kw) {
  if (!key.empty() && key.back() == '*')
    return kw.substr(0, key.size() - 1) == key.substr(0, key.size() - 1);
  return key == kw;
}

}  // namespace

void note_leftover(Ctx& c, const Directive& d, SectionKind where) {
  const std::string& kw = d.kw();
  if (kw == "mode") {
    if (d.arg(1) == "tcp")
      c.notes.exact(d);
    else
      c.notes.ignored(d, "mode " + d.arg(1) + ": only the sections in mode tcp are translated");
    return;
  }
  if (kw == "option" && (d.arg(1) == "redispatch" || d.arg(1) == "tcp-check")) {
    c.notes.exact(d);  // mqttlb retries other backends; the check is translated from the servers
    return;
  }
  std::string two = kw;
  if (kw == "option" || kw == "timeout" || kw == "no") two += " " + d.arg(1);
  for (const auto& r : kReasons) {
    if (match(r.key, two) || (r.key.find(' ') == std::string_view::npos && match(r.key, kw))) {
      c.notes.ignored(d, r.why);
      return;
    }
  }
  if (where == SectionKind::Global)
    c.notes.ignored(d, "global setting unknown to the importer: not translated");
  else
    c.notes.ignored(d, "unknown to the importer: not translated");
}

}  // namespace importer
