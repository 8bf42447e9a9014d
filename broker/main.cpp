// mqttlb-broker: the reference MQTT broker (SPEC.md "mqttlb-broker").
#include <sys/resource.h>
#include <sys/stat.h>

#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "broker/server.hpp"

namespace {

const char kUsage[] =
    "usage: mqttlb-broker --port N [options]\n"
    "  --port N               TCP port to listen on (0 = any free port)\n"
    "  --bind ADDR            address to bind (default 127.0.0.1; IPv6 allowed)\n"
    "  --name NAME            name shown in logs (default: broker)\n"
    "  --proxy-protocol       require a PROXY v1/v2 header before CONNECT\n"
    "  --max-connections N    refuse connections beyond N (default 100000)\n"
    "  --max-packet-size N    largest packet accepted, bytes (default 1048576)\n"
    "  --max-queued N         messages queued per session (default 1000)\n"
    "  --max-inflight N       outgoing QoS 1/2 window per client (default 20)\n"
    "  --connect-timeout S    close connections without CONNECT after S s (default 10)\n"
    "  --max-keepalive S      MQTT 5 Server Keep Alive for clients asking more (default 60;\n"
    "                         0 = no limit)\n"
    "  --acl FILE             topic ACL: 'topic deny|read|write|readwrite FILTER' lines\n"
    "  --cluster-bind H:P     accept peer links of a cluster on this address\n"
    "  --peers H:P,H:P,...    the other nodes' --cluster-bind addresses (full mesh)\n"
    "  --cluster-secret FILE  shared secret authenticating peer links (needed with --peers)\n"
    "  --cluster-queue BYTES  unsent bytes per peer link above which forwarded\n"
    "                         messages are dropped (default 8388608)\n"
    "  --stats S              print a stats line (clients, drops, peer links) every S s\n"
    "  --debug                log each connect and disconnect\n"
    "  --help, --version\n";

bool parse_num(const char* s, unsigned long long lo, unsigned long long hi,
               unsigned long long& out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (errno || *end || s[0] == '-' || v < lo || v > hi) return false;
  out = v;
  return true;
}

// Open-files soft limit up to the hard limit: one descriptor per client.
void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// Reads a whole (small) file; false with a message on failure.
bool read_file(const char* path, std::string& out, std::string& err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err = std::string("cannot read ") + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

}  // namespace

// --cluster-secret: the whole file, trailing whitespace stripped.
bool read_secret(const char* path, std::string& out, std::string& err) {
  if (!read_file(path, out, err)) return false;
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  if (out.size() < 16) {
    err = std::string(path) + ": the secret must be at least 16 bytes";
    return false;
  }
  struct stat st {};
  if (stat(path, &st) == 0 && (st.st_mode & 077))
    std::fprintf(stderr, "mqttlb-broker: warning: %s is readable by other users\n", path);
  return true;
}

int main(int argc, char** argv) {
  broker::Options o;
  bool have_port = false;
  broker::ClusterOptions cluster;
  bool have_peers = false, have_secret = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    unsigned long long n = 0;
    auto num = [&](unsigned long long lo, unsigned long long hi) {
      if (!parse_num(v, lo, hi, n)) {
        std::fprintf(stderr, "mqttlb-broker: %s needs a number in %llu..%llu\n%s", a.c_str(), lo,
                     hi, kUsage);
        std::exit(2);
      }
      ++i;
      return n;
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--version") {
      std::printf("mqttlb-broker %s\n", MQTTLB_VERSION);
      return 0;
    } else if (a == "--port") {
      o.port = int(num(0, 65535));
      have_port = true;
    } else if (a == "--bind" && v) {
      o.bind = v;
      ++i;
    } else if (a == "--name" && v) {
      o.name = v;
      ++i;
    } else if (a == "--proxy-protocol") {
      o.proxy_protocol = true;
    } else if (a == "--debug") {
      o.debug = true;
    } else if (a == "--max-connections") {
      o.max_connections = size_t(num(1, 10000000));
    } else if (a == "--max-packet-size") {
      o.max_packet_size = uint32_t(num(64, 268435455));
    } else if (a == "--max-queued") {
      o.max_queued = size_t(num(1, 10000000));
    } else if (a == "--max-inflight") {
      o.max_inflight = uint16_t(num(1, 65535));
    } else if (a == "--connect-timeout") {
      o.connect_timeout_ms = num(1, 3600) * 1000;
    } else if (a == "--max-keepalive") {
      o.max_keepalive = uint16_t(num(0, 65535));
    } else if (a == "--acl" && v) {
      std::string text, err;
      auto acl = std::make_shared<broker::Acl>();
      if (!read_file(v, text, err) || !acl->parse(text, err)) {
        std::fprintf(stderr, "mqttlb-broker: --acl %s: %s\n", v, err.c_str());
        return 2;
      }
      o.acl = std::move(acl);
      ++i;
    } else if (a == "--cluster-bind" && v) {
      cluster.bind = v;
      ++i;
    } else if (a == "--peers" && v) {
      std::string list = v;
      size_t pos = 0;
      while (pos <= list.size()) {
        const size_t comma = std::min(list.find(',', pos), list.size());
        if (comma > pos) cluster.peers.push_back(list.substr(pos, comma - pos));
        pos = comma + 1;
      }
      have_peers = true;
      ++i;
    } else if (a == "--cluster-secret" && v) {
      std::string err;
      if (!read_secret(v, cluster.secret, err)) {
        std::fprintf(stderr, "mqttlb-broker: --cluster-secret %s\n", err.c_str());
        return 2;
      }
      have_secret = true;
      ++i;
    } else if (a == "--cluster-queue") {
      cluster.queue_bytes = size_t(num(65536, 1ull << 32));
    } else if (a == "--stats") {
      o.stats_s = unsigned(num(1, 86400));
    } else {
      std::fprintf(stderr, "mqttlb-broker: unknown or incomplete option %s\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (!have_port) {
    std::fprintf(stderr, "mqttlb-broker: --port is required\n%s", kUsage);
    return 2;
  }
  if (have_peers || !cluster.bind.empty() || have_secret) {
    if (!have_peers || cluster.bind.empty() || !have_secret) {
      std::fprintf(stderr,
                   "mqttlb-broker: a cluster node needs --cluster-bind, --peers and "
                   "--cluster-secret\n");
      return 2;
    }
    o.cluster = std::make_shared<broker::ClusterOptions>(std::move(cluster));
  }
  raise_nofile();
  std::signal(SIGPIPE, SIG_IGN);  // a peer closing mid-write is an error code, not a signal
  broker::Server server(o);
  return server.run();
}
