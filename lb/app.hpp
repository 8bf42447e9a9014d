// The main thread's loop: signals and the shutdown sequence. Kept out of
// main.cpp so main stays a thin wiring function.
#pragma once

#include <csignal>
#include <functional>
#include <string>

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
  volatile sig_atomic_t term = 0;  // the signal number (SIGTERM, SIGINT)
};
EarlySignals& early_signals();
void install_early_signal_handlers();

// Runs until SIGTERM/SIGINT, then: stop accepting, wait for sessions to end
// up to limits.shutdown_grace_ms, close the rest, join the workers. SIGHUP
// reloads and validates `config_path`; a valid config is swapped in (backends,
// balance, limits) and passed to on_reload; an invalid one is rejected whole.
// Returns the process exit code (0).
// on_ready runs once the signal handlers are installed (log "listening" there:
// scripts wait for that line and may signal right after it).
// control (may be null): reloads asked through the admin API run here too
// (control->set_reloader), and every reload is noted there.
int run_until_signalled(Server& server, const std::string& config_path,
                        std::function<void()> on_ready,
                        std::function<void(const conf::Config&)> on_reload,
                        Control* control = nullptr);

}  // namespace lb
