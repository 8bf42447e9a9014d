#include "bench/options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace bench {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Conn:
      return "conn";
    case Mode::Pub:
      return "pub";
    case Mode::Sub:
      return "sub";
    case Mode::PubSub:
      return "pubsub";
  }
  return "?";
}

std::string usage() {
  return R"(usage: mqttlb-bench MODE [options]

modes:
  conn     open -c connections, complete CONNECT/CONNACK, hold them --hold seconds
  pub      -c publishers publish for -d seconds
  sub      -c subscribers receive for -d seconds (0 = until SIGINT)
  pubsub   -c publishers and -S subscribers in one process; end-to-end latency

options:
  -h, --host HOST             target address (default 127.0.0.1)
  -p, --port PORT             target port (default 1883)
  -c, --count N               connections / publishers / subscribers (default 1)
  -S, --subscribers N         subscribers in pubsub (default 1)
  -V, --protocol-version V    3 (3.1), 4 or 311 (3.1.1), 5 (default 4)
  -q, --qos Q                 0, 1 or 2 (default 0)
  -s, --size BYTES            payload size, >= 16 (default 64)
  -r, --rate R                msgs/s per publisher; 0 = closed loop (default 0)
  -w, --window N              closed loop: messages in flight per publisher (default 16)
  -t, --topic PATTERN         topic; %i = client index (default bench/%i)
  -d, --duration SECONDS      publish / receive time (default 10)
      --hold SECONDS          conn: keep connections open this long (default 0)
      --connect-rate R        new connections per second; 0 = as fast as possible
      --max-pending N         connection attempts in progress at once (default 128)
      --connect-timeout S     TCP connect + CONNACK deadline per connection (default 10)
  -k, --keepalive SECONDS     MQTT keep alive (default 60; PINGREQ at half of it)
  -i, --client-prefix P       client id prefix (default bench)
      --source-addresses A,B  bind local addresses round-robin (127.0.0.1,127.0.0.2,...)
      --tls                   connect with TLS
      --cafile FILE           CA bundle to verify the server (default: no verification)
      --resume                TLS session resumption across connections
      --json                  print one JSON object with the results
      --quiet                 no progress line
      --help                  this text

exit status: 0 ok; 1 the run finished with failures; 2 usage error;
3 the target refused connections or went away during the run.
)";
}

std::string expand_topic(const std::string& pattern, uint32_t index) {
  std::string out;
  out.reserve(pattern.size() + 8);
  for (size_t i = 0; i < pattern.size(); i++) {
    if (pattern[i] == '%' && i + 1 < pattern.size() && pattern[i + 1] == 'i') {
      out += std::to_string(index);
      i++;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

namespace {

bool to_u64(std::string_view s, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

bool to_double(const std::string& s, double lo, double hi, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno || end != s.c_str() + s.size() || !std::isfinite(v) || v < lo || v > hi) return false;
  out = v;
  return true;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t c = s.find(',', start);
    if (c == std::string::npos) c = s.size();
    if (c > start) out.push_back(s.substr(start, c - start));
    start = c + 1;
  }
  return out;
}

}  // namespace

ParseResult parse_args(int argc, const char* const* argv) {
  ParseResult r;
  Options& o = r.opts;
  auto fail = [&](std::string msg) {
    r.ok = false;
    r.error = std::move(msg);
    return r;
  };
  if (argc < 2) return fail("missing mode (conn, pub, sub or pubsub); see --help");
  std::string mode = argv[1];
  if (mode == "--help" || mode == "help") {
    o.help = true;
    return r;
  }
  if (mode == "conn")
    o.mode = Mode::Conn;
  else if (mode == "pub")
    o.mode = Mode::Pub;
  else if (mode == "sub")
    o.mode = Mode::Sub;
  else if (mode == "pubsub")
    o.mode = Mode::PubSub;
  else
    return fail("unknown mode '" + mode + "' (conn, pub, sub or pubsub)");

  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    std::string val;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        val = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
    }
    auto flag = [&](const char* s, const char* l) { return a == s || a == l; };
    auto need = [&](std::string& v) -> bool {
      if (has_inline) {
        v = val;
        return true;
      }
      if (i + 1 >= argc) return false;
      v = argv[++i];
      return true;
    };
    auto bad = [&](const std::string& what) { return fail(a + ": " + what); };
    std::string v;
    uint64_t u = 0;
    double d = 0;
    if (flag("--help", "--help")) {
      o.help = true;
    } else if (flag("--json", "--json")) {
      o.json = true;
    } else if (flag("--quiet", "--quiet")) {
      o.quiet = true;
    } else if (flag("--tls", "--tls")) {
      o.tls = true;
    } else if (flag("--resume", "--resume")) {
      o.resume = true;
    } else {
      // Every other flag takes a value.
      bool known = flag("-h", "--host") || flag("-p", "--port") || flag("-c", "--count") ||
                   flag("-S", "--subscribers") || flag("-V", "--protocol-version") ||
                   flag("-q", "--qos") || flag("-s", "--size") || flag("-r", "--rate") ||
                   flag("-w", "--window") || flag("-t", "--topic") || flag("-d", "--duration") ||
                   flag("--hold", "--hold") || flag("--connect-rate", "--connect-rate") ||
                   flag("--max-pending", "--max-pending") ||
                   flag("--connect-timeout", "--connect-timeout") || flag("-k", "--keepalive") ||
                   flag("-i", "--client-prefix") ||
                   flag("--source-addresses", "--source-addresses") || flag("--cafile", "--cafile");
      if (!known) return fail("unknown option '" + a + "'; see --help");
      if (!need(v)) return bad("missing value");
      if (flag("-h", "--host")) {
        if (v.empty()) return bad("empty host");
        o.host = v;
      } else if (flag("-p", "--port")) {
        if (!to_u64(v, 1, 65535, u)) return bad("port must be 1..65535, got '" + v + "'");
        o.port = static_cast<uint16_t>(u);
      } else if (flag("-c", "--count")) {
        if (!to_u64(v, 1, 10'000'000, u)) return bad("count must be 1..10000000, got '" + v + "'");
        o.count = static_cast<uint32_t>(u);
      } else if (flag("-S", "--subscribers")) {
        if (!to_u64(v, 1, 10'000'000, u)) return bad("subscribers must be 1..10000000");
        o.subscribers = static_cast<uint32_t>(u);
      } else if (flag("-V", "--protocol-version")) {
        if (v == "3" || v == "31")
          o.version = 3;
        else if (v == "4" || v == "311")
          o.version = 4;
        else if (v == "5" || v == "50")
          o.version = 5;
        else
          return bad("protocol version must be 3, 4 (or 311) or 5, got '" + v + "'");
      } else if (flag("-q", "--qos")) {
        if (!to_u64(v, 0, 2, u)) return bad("qos must be 0, 1 or 2, got '" + v + "'");
        o.qos = static_cast<uint8_t>(u);
      } else if (flag("-s", "--size")) {
        if (!to_u64(v, 16, 256 * 1024 * 1024 - 1024, u))
          return bad("size must be >= 16 (timestamp, sequence, publisher id), got '" + v + "'");
        o.size = static_cast<uint32_t>(u);
      } else if (flag("-r", "--rate")) {
        if (!to_double(v, 0, 1e9, d)) return bad("rate must be a number >= 0, got '" + v + "'");
        o.rate = d;
      } else if (flag("-w", "--window")) {
        if (!to_u64(v, 1, 65535, u)) return bad("window must be 1..65535, got '" + v + "'");
        o.window = static_cast<uint32_t>(u);
      } else if (flag("-t", "--topic")) {
        if (v.empty()) return bad("empty topic");
        o.topic = v;
      } else if (flag("-d", "--duration")) {
        if (!to_double(v, 0, 1e7, d)) return bad("duration must be seconds >= 0, got '" + v + "'");
        o.duration = d;
      } else if (flag("--hold", "--hold")) {
        if (!to_double(v, 0, 1e7, d)) return bad("hold must be seconds >= 0, got '" + v + "'");
        o.hold = d;
      } else if (flag("--connect-rate", "--connect-rate")) {
        if (!to_double(v, 0, 1e9, d)) return bad("connect rate must be >= 0, got '" + v + "'");
        o.connect_rate = d;
      } else if (flag("--max-pending", "--max-pending")) {
        if (!to_u64(v, 1, 1'000'000, u)) return bad("max-pending must be 1..1000000");
        o.max_pending = static_cast<uint32_t>(u);
      } else if (flag("--connect-timeout", "--connect-timeout")) {
        if (!to_double(v, 0.001, 1e6, d)) return bad("connect timeout must be > 0 seconds");
        o.connect_timeout = d;
      } else if (flag("-k", "--keepalive")) {
        if (!to_u64(v, 0, 65535, u)) return bad("keepalive must be 0..65535 seconds");
        o.keepalive = static_cast<uint16_t>(u);
      } else if (flag("-i", "--client-prefix")) {
        o.client_prefix = v;
      } else if (flag("--source-addresses", "--source-addresses")) {
        o.source_addresses = split_commas(v);
        if (o.source_addresses.empty()) return bad("no address given");
      } else if (flag("--cafile", "--cafile")) {
        o.cafile = v;
      }
    }
  }
  if (o.help) return r;
  if (o.version == 3 && o.client_prefix.size() > 10)
    return fail("--client-prefix: MQTT 3.1 client ids are limited to 23 bytes; use <= 10");
  if ((o.resume || !o.cafile.empty()) && !o.tls) return fail("--resume/--cafile need --tls");
  if ((o.mode == Mode::Pub || o.mode == Mode::PubSub) &&
      o.topic.find_first_of("+#") != std::string::npos)
    return fail("--topic: publishers need a topic name without wildcards");
  return r;
}

}  // namespace bench
