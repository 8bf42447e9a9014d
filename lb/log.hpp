// One event per line on stderr: "2026-01-01T00:00:00.000Z LEVEL message".
// Thread-safe (one mutex around one write). Not for per-byte paths; per-session
// lines are emitted only when verbose logging is on.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace lb {

enum class LogLevel { Debug, Info, Warn, Error };

extern std::atomic<bool> g_log_verbose;  // enables Debug lines (per-session events)

void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// A client-supplied string made safe for one log line: printable ASCII is
// kept, '"' and '\\' are escaped, anything else (control characters, bytes
// >= 0x80) becomes \xNN; longer than max_bytes: cut, with "...(N bytes)".
std::string log_escape(std::string_view s, size_t max_bytes = 96);

// Rate limit for events that can repeat per connection (an outage makes every
// device reconnect): at most one line per `every_ms` per limiter; the lines
// skipped in between are counted and reported with the next one. Thread-safe.
class LogLimiter {
 public:
  explicit LogLimiter(int64_t every_ms) : every_ms_(every_ms) {}
  // True when a line may be logged now; `suppressed` gets the count skipped since.
  bool allow(int64_t now_ms, uint64_t& suppressed);

 private:
  const int64_t every_ms_;
  std::atomic<int64_t> next_ms_{0};
  std::atomic<uint64_t> skipped_{0};
};

}  // namespace lb
