// health_probe: runs a health::Monitor against real brokers and prints its
// log lines, for tests/integration/test_health_tls.py (TLS checks cannot go
// through mqttlb while backend TLS is rejected by the config loader).
//   health_probe [--interval MS] [--timeout MS] [--rise N] [--fall N]
//                [--level 4|5] NAME=HOST:PORT[,proxy=v1|v2][,tls][,ca=FILE][,sni=NAME]
//                [,noverify] ...
// Prints "ready" once the first round of checks is in, then every 200 ms one
// line per backend: "stats NAME STATE passes=N fails=M"; runs until SIGTERM/SIGINT.
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "health/monitor.hpp"

namespace {
std::atomic<bool> g_stop{false};
std::mutex g_out;

void say(const std::string& s) {
  std::lock_guard<std::mutex> l(g_out);
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}

bool parse_backend(const std::string& arg, conf::Backend& b) {
  size_t eq = arg.find('=');
  if (eq == std::string::npos) return false;
  b.name = arg.substr(0, eq);
  std::string rest = arg.substr(eq + 1);
  std::vector<std::string> parts;
  for (size_t pos = 0;;) {
    size_t c = rest.find(',', pos);
    parts.push_back(rest.substr(pos, c - pos));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  size_t colon = parts[0].rfind(':');
  if (colon == std::string::npos) return false;
  b.address.host = parts[0].substr(0, colon);
  b.address.port = static_cast<uint16_t>(std::atoi(parts[0].c_str() + colon + 1));
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (p == "proxy=v1" || p == "proxy=v2") {
      b.proxy_protocol = p == "proxy=v1" ? conf::ProxyProtocol::V1 : conf::ProxyProtocol::V2;
      continue;
    }
    if (!b.tls) b.tls.emplace();
    if (p.rfind("ca=", 0) == 0)
      b.tls->ca = p.substr(3);
    else if (p.rfind("sni=", 0) == 0)
      b.tls->sni = p.substr(4);
    else if (p == "noverify")
      b.tls->verify = false;
    else if (p != "tls")
      return false;
  }
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  conf::Health hc;
  std::vector<health::MonitoredBackend> backends;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto num = [&](uint32_t& v) {
      if (i + 1 < argc) v = static_cast<uint32_t>(std::atoi(argv[++i]));
    };
    if (a == "--interval")
      num(hc.interval_ms);
    else if (a == "--timeout")
      num(hc.timeout_ms);
    else if (a == "--rise")
      num(hc.rise);
    else if (a == "--fall")
      num(hc.fall);
    else if (a == "--level") {
      uint32_t l = 4;
      num(l);
      hc.protocol_level = static_cast<uint8_t>(l);
    } else {
      conf::Backend b;
      if (!parse_backend(a, b)) {
        std::fprintf(stderr, "bad argument: %s\n", a.c_str());
        return 2;
      }
      backends.push_back({b, std::make_shared<health::Status>()});
    }
  }
  std::signal(SIGTERM, [](int) { g_stop = true; });
  std::signal(SIGINT, [](int) { g_stop = true; });
  prometheus::Registry registry;
  health::Monitor m(backends, hc, registry, {}, say);
  std::string err;
  if (!m.start(err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  m.wait_first_round(10'000);
  say("ready");
  // Bounded by the signal: polls a flag set by the handler.
  auto next = std::chrono::steady_clock::now();
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (std::chrono::steady_clock::now() < next) continue;
    next += std::chrono::milliseconds(200);
    std::map<std::string, std::pair<double, double>> counts;  // name -> (passes, fails)
    for (auto& f : registry.Collect()) {
      if (f.name != "mqttlb_health_checks_total") continue;
      for (auto& metric : f.metric) {
        std::string name, result;
        for (auto& l : metric.label) (l.name == "backend" ? name : result) = l.value;
        (result == "pass" ? counts[name].first : counts[name].second) = metric.counter.value;
      }
    }
    for (auto& b : backends) {
      auto [p, f] = counts[b.backend.name];
      say("stats " + b.backend.name + " " + health::to_string(b.status->state.load()) + " passes=" +
          std::to_string(static_cast<long>(p)) + " fails=" + std::to_string(static_cast<long>(f)));
    }
  }
  m.stop();
  return 0;
}
