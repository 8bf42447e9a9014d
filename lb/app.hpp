// The main thread's loop: signals and the shutdown sequence. Kept out of
// main.cpp so main stays a thin wiring function.
#pragma once

#include <functional>
#include <string>

#include "conf/config.hpp"

namespace lb {

class Server;

// Runs until SIGTERM/SIGINT, then: stop accepting, wait for sessions to end
// up to limits.shutdown_grace_ms, close the rest, join the workers. SIGHUP
// reloads and validates `config_path`; a valid config is swapped in (backends,
// balance, limits) and passed to on_reload; an invalid one is rejected whole.
// Returns the process exit code (0).
// on_ready runs once the signal handlers are installed (log "listening" there:
// scripts wait for that line and may signal right after it).
int run_until_signalled(Server& server, const std::string& config_path,
                        std::function<void()> on_ready,
                        std::function<void(const conf::Config&)> on_reload);

}  // namespace lb
