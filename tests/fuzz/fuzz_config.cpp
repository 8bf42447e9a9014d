// libFuzzer target: the config loader (conf::load_string) on any bytes, with
// name resolution off (no I/O). It must never crash and always answer with
// either a config or a list of errors, each "JSON-POINTER: message"; a config
// it accepts holds the invariants the balancer relies on.
#include <set>
#include <string>

#include "conf/loader.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  conf::LoadOptions opts;
  opts.resolve_names = false;
  conf::LoadResult r = conf::load_string(text, opts);
  FUZZ_CHECK(r.ok() == r.config.has_value());
  for (const auto& e : r.errors) {
    FUZZ_CHECK(!e.empty() && e[0] == '/');
    FUZZ_CHECK(e.find(": ") != std::string::npos);
  }
  if (!r.config) return 0;
  const conf::Config& c = *r.config;
  // Backends come from the file or from DNS discovery (or both).
  FUZZ_CHECK(!c.listeners.empty() && (!c.backends.empty() || !c.discovery.empty()));
  for (const auto& d : c.discovery) {
    FUZZ_CHECK(!d.dns.empty() && d.port >= 1 && d.interval_ms >= 100);
    FUZZ_CHECK(d.templ.name.empty() && d.templ.weight >= 1 && d.templ.weight <= 256);
  }
  if (c.affinity_store.enabled())
    FUZZ_CHECK(!c.affinity_store.url.host.empty() && c.affinity_store.url.port >= 1);
  std::set<std::string> names;
  for (const auto& b : c.backends) {
    FUZZ_CHECK(!b.name.empty() && names.insert(b.name).second);
    FUZZ_CHECK(b.weight >= 1 && b.weight <= 256);
    FUZZ_CHECK(b.address.port >= 1);
  }
  for (const auto& l : c.listeners) {
    FUZZ_CHECK(!l.name.empty());
    if (l.tls) FUZZ_CHECK(!l.tls->cert.empty() && !l.tls->key.empty());
  }
  FUZZ_CHECK(c.health.timeout_ms <= c.health.interval_ms);
  FUZZ_CHECK(c.limits.max_connect_bytes >= 1024 && c.limits.max_connect_bytes <= 1024 * 1024);
  // Loading is deterministic.
  conf::LoadResult again = conf::load_string(text, opts);
  FUZZ_CHECK(again.ok() && again.errors == r.errors);
  return 0;
}
