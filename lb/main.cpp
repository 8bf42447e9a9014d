// mqttlb: parse the command line, load the config, wire the parts, run.
// Everything else lives in lbcore (lb/*.cpp).
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "health/monitor.hpp"
#include "import/haproxy_import.hpp"
#include "lb/admin_http.hpp"
#include "lb/app.hpp"
#include "lb/config_check.hpp"
#include "lb/control.hpp"
#include "lb/ctl.hpp"
#include "lb/log.hpp"
#include "lb/server.hpp"
#include "net/limits.hpp"

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: mqttlb -c FILE [-v]     run with the JSON config FILE\n"
               "       mqttlb --check -c FILE  validate FILE (exit 0 valid, 1 invalid)\n"
               "       mqttlb ctl [-c FILE] COMMAND  talk to the admin API (mqttlb ctl --help)\n"
               "       mqttlb import-haproxy haproxy.cfg [-o mqttlb.json]\n"
               "                               translate an HAProxy config "
               "(docs/migrating-from-haproxy.md)\n"
               "       mqttlb --version\n");
}

// The backends the health monitor checks, with the Status objects the workers
// read (kept by name across reloads by the Server).
std::vector<health::MonitoredBackend> monitored(const lb::Server& server) {
  std::vector<health::MonitoredBackend> v;
  for (const auto& b : server.backends()) v.push_back({b.cfg, b.state->status});
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "import-haproxy") == 0)
    return importer::run(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "ctl") == 0) return lb::ctl::run(argc - 1, argv + 1);
  std::string path;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--version") {
      std::printf("mqttlb %s\n", MQTTLB_VERSION);
      return 0;
    } else if (a == "--check") {
      check = true;
    } else if ((a == "-c" || a == "--config") && i + 1 < argc) {
      path = argv[++i];
    } else if (a == "-v" || a == "--verbose") {
      lb::g_log_verbose = true;
    } else {
      usage();
      return 2;
    }
  }
  if (path.empty()) {
    usage();
    return 2;
  }
  // From here on a SIGHUP or SIGTERM never kills the process by default action:
  // it is recorded and acted on once the main loop runs (lb/app.hpp).
  if (!check) lb::install_early_signal_handlers();
  conf::LoadResult r = lb::load_config(path);
  if (!r.ok()) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  if (check) {
    std::printf("%s: valid\n", path.c_str());
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);
  net::raise_nofile_limit();
  lb::logf(lb::LogLevel::Info, "mqttlb %s starting (pid %d), config %s", MQTTLB_VERSION,
           static_cast<int>(getpid()), path.c_str());

  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;
  if (r.config->metrics.bind) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(r.config->metrics.bind->str());
      exposer->RegisterCollectable(registry);
    } catch (const std::exception& e) {
      lb::logf(lb::LogLevel::Error, "metrics: cannot listen on %s: %s",
               r.config->metrics.bind->str().c_str(), e.what());
      return 1;
    }
  }

  lb::Server server(*r.config, *registry);
  std::string err;
  // Health: one thread checks every backend; backends start Down, the first
  // checks run now, and listening starts once their verdicts are in (bounded),
  // so a fresh mqttlb does not refuse clients while a healthy backend is
  // still being checked. on_down "shutdown-sessions" (read from the current
  // snapshot, so a reload applies) moves clients off a backend that went Down.
  // Declared after `server`: stopped and joined before the server goes away.
  health::Monitor monitor(
      monitored(server), r.config->health, *registry,
      [&server](const std::string& name, health::State from, health::State to, const std::string&) {
        if (to != health::State::Down || from == health::State::Maint) return;
        const conf::Health& hc = server.snapshot()->cfg.health;
        if (hc.on_down == conf::OnDown::ShutdownSessions)
          server.shutdown_backend_sessions(name, hc.shutdown_spread_ms);
      },
      [](const std::string& line) { lb::logf(lb::LogLevel::Info, "%s", line.c_str()); });
  if (!monitor.start(err)) {
    lb::logf(lb::LogLevel::Error, "%s", err.c_str());
    return 1;
  }
  // The first verdicts, bounded; a SIGTERM meanwhile ends the wait (and the process).
  const uint64_t wait_ms = 2 * uint64_t{r.config->health.timeout_ms} + 500;
  for (uint64_t waited = 0; waited < wait_ms && !lb::early_signals().term; waited += 50)
    if (monitor.wait_first_round(50)) break;
  if (lb::early_signals().term) {
    lb::logf(lb::LogLevel::Info, "signal %d during startup: stopping", lb::early_signals().term);
    return 0;
  }
  if (!server.start(err)) {
    lb::logf(lb::LogLevel::Error, "%s", err.c_str());
    return 1;
  }
  const conf::Config& cfg = *r.config;
  auto ready = [&cfg] {
    for (const auto& l : cfg.listeners)
      lb::logf(lb::LogLevel::Info, "listening: %s on %s", l.name.c_str(), l.bind.str().c_str());
    if (cfg.metrics.bind)
      lb::logf(lb::LogLevel::Info, "metrics: http://%s/metrics", cfg.metrics.bind->str().c_str());
  };
  lb::Control control(server, monitor, *registry);
  // The admin API (declared after `control`: stopped before it goes away).
  lb::AdminHost admin(control);
  if (cfg.admin.enabled() && !admin.start(cfg.admin, err)) {
    lb::logf(lb::LogLevel::Error, "%s", err.c_str());
    return 1;
  }
  return lb::run_until_signalled(
      server, path, ready,
      [&server, &monitor, &admin](const conf::Config& c) {
        monitor.update(monitored(server), c.health);
        admin.apply(c.admin);
      },
      &control);
}
