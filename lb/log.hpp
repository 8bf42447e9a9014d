// One event per line on stderr: "2026-01-01T00:00:00.000Z LEVEL message".
// Thread-safe (one mutex around one write). Not for per-byte paths; per-session
// lines are emitted only when verbose logging is on.
#pragma once

#include <atomic>

namespace lb {

enum class LogLevel { Debug, Info, Warn, Error };

extern std::atomic<bool> g_log_verbose;  // enables Debug lines (per-session events)

void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace lb
