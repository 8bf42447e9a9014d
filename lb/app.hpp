// The main thread's loop: signals and the shutdown sequence. Kept out of
// main.cpp so main stays a thin wiring function.
#pragma once

#include <csignal>
#include <functional>
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace lb {

class Server;
class Control;

// Signals that arrive before the main loop runs (config load, first health
// round): recorded by install_early_signal_handlers(), acted on as soon as the
// loop starts. Without this a SIGHUP during startup would kill the process
// (its default action).
struct EarlySignals {
  volatile sig_atomic_t hup = 0;
  volatile sig_atomic_t usr2 = 0;
  volatile sig_atomic_t term = 0;  // the signal number (SIGTERM, SIGINT)
};
EarlySignals& early_signals();
void install_early_signal_handlers();

// What the main loop is wired to (lb/main.cpp).
struct AppHooks {
  // Once the signal handlers are installed (log "listening" there: scripts
  // wait for that line and may signal right after it).
  std::function<void()> on_ready;
  // After a reload was applied (health monitor update, endpoints).
  std::function<void(const conf::Config&)> on_reload;
  // Reloads asked through the admin API run here too, and every reload is
  // noted there (may be null).
  Control* control = nullptr;
  // Metrics / admin endpoints. bring_up() is retried every 250 ms until it
  // returns true (a new generation waits for the old one to release the
  // ports); release() frees them (the old generation, at the handover).
  std::function<bool()> endpoints_up;
  std::function<void()> endpoints_release;
  // The command line to start the next generation with (binary upgrade).
  std::vector<std::string> args;
  // A new generation: the pair to the old one (EOF = it exited), else -1.
  int old_generation_fd = -1;
};

// Runs until SIGTERM/SIGINT, then: stop accepting, wait for sessions to end
// up to limits.shutdown_grace_ms, close the rest, join the workers. SIGHUP
// (and the admin API) reloads `config_path`; an invalid config is rejected
// whole. SIGUSR2 (and the admin API) upgrades the binary (lb/upgrade.hpp).
// Returns the process exit code (0).
int run_until_signalled(Server& server, const std::string& config_path, AppHooks hooks);

}  // namespace lb
