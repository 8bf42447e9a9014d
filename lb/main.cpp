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
#include <vector>

#include "health/monitor.hpp"
#include "import/haproxy_import.hpp"
#include "lb/admin_http.hpp"
#include "lb/app.hpp"
#include "lb/config_check.hpp"
#include "lb/control.hpp"
#include "lb/ctl.hpp"
#include "lb/kernel_splice.hpp"
#include "lb/log.hpp"
#include "lb/scale_out.hpp"
#include "lb/server.hpp"
#include "lb/upgrade.hpp"
#include "net/limits.hpp"

namespace {

void usage() {
  std::fprintf(
      stderr,
      "usage: mqttlb -c FILE [-v]     run with the JSON config FILE\n"
      "       mqttlb --check -c FILE  validate FILE (exit 0 valid, 1 invalid)\n"
      "       mqttlb --forwarding-check  can forwarding \"kernel\" be used here (exit 0 yes)\n"
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

// The metrics endpoint (and what else listens beside the data path). Main
// thread only. bring_up() (re)creates what the config asks for and is not up
// yet; a new generation retries it until the old one releases the ports.
class Endpoints {
 public:
  explicit Endpoints(std::shared_ptr<prometheus::Registry> r) : registry_(std::move(r)) {}
  bool bring_up(const conf::Config& c, bool quiet) {
    if (released_) return true;  // an old generation that handed over
    std::string want = c.metrics.bind ? c.metrics.bind->str() : "";
    if (want == bound_ && (exposer_ || want.empty())) return true;
    exposer_.reset();
    bound_.clear();
    if (want.empty()) return true;
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(want);
      exposer_->RegisterCollectable(registry_);
      bound_ = want;
      lb::logf(lb::LogLevel::Info, "metrics: http://%s/metrics", want.c_str());
      return true;
    } catch (const std::exception& e) {
      if (!quiet)
        lb::logf(lb::LogLevel::Error, "metrics: cannot listen on %s: %s", want.c_str(), e.what());
      return false;
    }
  }
  void release() {
    exposer_.reset();
    released_ = true;  // never brought up again in this process
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string bound_;
  bool released_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "import-haproxy") == 0)
    return importer::run(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "ctl") == 0) return lb::ctl::run(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "--forwarding-check") == 0) {
    // docs/forwarding.md: can "forwarding": "kernel" be used here?
    std::string why;
    if (lb::SpliceEngine::get(&why)) {
      std::printf("kernel: available\n");
      return 0;
    }
    std::printf("kernel: unavailable: %s\n", why.c_str());
    return 1;
  }
  lb::upgrade::self_exe();  // resolved now: a package upgrade may replace the file later
  std::string path;
  bool check = false;
  int upgrade_fd = -1;            // started by an older generation (binary upgrade)
  std::vector<std::string> args;  // to start the next generation with
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--upgrade-fd" && i + 1 < argc) {
      upgrade_fd = std::atoi(argv[++i]);
      continue;
    }
    args.push_back(a);
    if ((a == "-c" || a == "--config") && i + 1 < argc) args.push_back(argv[i + 1]);
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

  // A new generation: take over the old one's listening sockets and affinity.
  lb::upgrade::Handoff handoff;
  if (upgrade_fd >= 0) {
    std::string err;
    if (!lb::upgrade::recv_handoff(upgrade_fd, handoff, 10'000, err)) {
      lb::logf(lb::LogLevel::Error, "upgrade: no handoff from the previous generation: %s",
               err.c_str());
      return 1;
    }
    size_t n = 0;
    for (const auto& [name, fds] : handoff.listeners) n += fds.size();
    lb::logf(lb::LogLevel::Info,
             "upgrade: took over %zu listening sockets and %zu affinity entries from pid %d", n,
             handoff.affinity.size(), static_cast<int>(getppid()));
  }

  auto registry = std::make_shared<prometheus::Registry>();
  Endpoints endpoints(registry);
  // The old generation holds these ports until it hands over: keep retrying.
  if (!endpoints.bring_up(*r.config, /*quiet=*/upgrade_fd >= 0) && upgrade_fd < 0) return 1;

  lb::Server server(*r.config, *registry);
  if (!handoff.affinity.empty()) server.affinity().load(handoff.affinity, lb::steady_ms());
  std::string err;
  // --- scale-out (docs/scale-out.md): the shared affinity store and DNS
  // discovery. Started before the health monitor so that it checks the first
  // discovered backends in its first round; stopped (destroyed) before the
  // server, after run_until_signalled has joined the workers.
  lb::ScaleOut scale(server, *registry);
  if (!scale.start(*r.config, 2 * uint32_t{r.config->health.timeout_ms} + 1000, err)) {
    lb::logf(lb::LogLevel::Error, "%s", err.c_str());
    return 1;
  }
  // --- end scale-out
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
  // Discovery changes (applied on the main thread) are checked at once.
  server.on_backends_changed(
      [&server, &monitor] { monitor.update(monitored(server), server.snapshot()->cfg.health); });
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
  // Inherited sockets of listeners the new config no longer has are closed.
  for (auto it = handoff.listeners.begin(); it != handoff.listeners.end();) {
    bool kept = false;
    for (const auto& l : r.config->listeners) kept |= l.name == it->first;
    if (kept) {
      ++it;
      continue;
    }
    for (int fd : it->second) close(fd);
    it = handoff.listeners.erase(it);
  }
  if (!server.start(err, handoff.listeners)) {
    lb::logf(lb::LogLevel::Error, "%s", err.c_str());
    return 1;
  }
  if (upgrade_fd >= 0 && !lb::upgrade::send_ready(upgrade_fd, err)) {
    lb::logf(lb::LogLevel::Error, "upgrade: cannot tell the previous generation: %s", err.c_str());
    return 1;
  }
  const conf::Config& cfg = *r.config;
  auto ready = [&cfg] {
    for (const auto& l : cfg.listeners)
      lb::logf(lb::LogLevel::Info, "listening: %s on %s", l.name.c_str(), l.bind.str().c_str());
  };
  lb::Control control(server, monitor, *registry);
  // The admin API (declared after `control`: stopped before it goes away). A
  // new generation brings it up with the other endpoints, once the old one
  // released the address.
  lb::AdminHost admin(control);
  if (!admin.apply(cfg.admin, /*quiet=*/true, &err) && upgrade_fd < 0) {
    lb::logf(lb::LogLevel::Error, "%s", err.c_str());
    return 1;
  }
  lb::AppHooks hooks;
  hooks.on_ready = ready;
  hooks.on_reload = [&server, &monitor, &endpoints, &admin, &scale](const conf::Config& c) {
    scale.reload(c);  // scale-out: store and discovery follow the file
    monitor.update(monitored(server), c.health);
    endpoints.bring_up(c, /*quiet=*/false);
    admin.apply(c.admin, /*quiet=*/false);
  };
  hooks.control = &control;
  hooks.endpoints_up = [&endpoints, &server, &admin] {
    const conf::Config c = server.file_config();
    const bool metrics = endpoints.bring_up(c, /*quiet=*/true);
    return admin.apply(c.admin, /*quiet=*/true) && metrics;
  };
  hooks.endpoints_release = [&endpoints, &admin] {
    endpoints.release();
    admin.release();
  };
  hooks.args = args;
  hooks.old_generation_fd = upgrade_fd;
  return lb::run_until_signalled(server, path, std::move(hooks));
}
