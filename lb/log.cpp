#include "lb/log.hpp"

#include <sys/time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace lb {

std::atomic<bool> g_log_verbose{false};

namespace {
std::mutex g_log_mu;
const char* name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug:
      return "debug";
    case LogLevel::Info:
      return "info";
    case LogLevel::Warn:
      return "warn";
    default:
      return "error";
  }
}
}  // namespace

namespace {
// -v per-session lines: at most one per 10 ms (100/s), all threads.
LogLimiter g_debug_limit(10);
int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}
}  // namespace

void logf(LogLevel level, const char* fmt, ...) {
  if (level == LogLevel::Debug && !g_log_verbose.load(std::memory_order_relaxed)) return;
  uint64_t skipped = 0;
  if (level == LogLevel::Debug && !g_debug_limit.allow(now_ms(), skipped)) return;
  char line[2048];
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  gmtime_r(&tv.tv_sec, &t);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ", t.tm_year + 1900,
                   t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                   static_cast<int>(tv.tv_usec / 1000), name(level));
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) len = sizeof line - 2;
  if (skipped > 0 && len + 48 < sizeof line - 2)
    len += static_cast<size_t>(snprintf(line + len, sizeof line - len - 1,
                                        " (%llu debug lines suppressed)",
                                        static_cast<unsigned long long>(skipped)));
  // Keep one event on one line whatever the message holds.
  for (size_t i = static_cast<size_t>(n); i < len; ++i)
    if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
  line[len++] = '\n';
  std::lock_guard<std::mutex> g(g_log_mu);
  (void)!write(STDERR_FILENO, line, len);
}

std::string log_escape(std::string_view s, size_t max_bytes) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  size_t n = s.size() < max_bytes ? s.size() : max_bytes;
  out.reserve(n + 8);
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (n < s.size()) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

bool LogLimiter::allow(int64_t now_ms, uint64_t& suppressed) {
  int64_t next = next_ms_.load(std::memory_order_relaxed);
  if (now_ms < next ||
      !next_ms_.compare_exchange_strong(next, now_ms + every_ms_, std::memory_order_relaxed)) {
    skipped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  suppressed = skipped_.exchange(0, std::memory_order_relaxed);
  return true;
}

}  // namespace lb
