// JSON -> validated conf::Config. Reports every error at once, each as
// "JSON-POINTER: message" (SPEC.md `mqttlb --check`). Not on the data plane:
// runs at start and on SIGHUP, may allocate and resolve host names.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace conf {

struct LoadResult {
  std::optional<Config> config;     // set only when errors is empty
  Config parsed;                    // what could be read, errors or not (for further checks)
  std::vector<std::string> errors;  // "JSON-POINTER: message"; docs/config.md gives the order
  bool ok() const { return errors.empty(); }
};

struct LoadOptions {
  // Resolve host names in addresses (getaddrinfo, blocking: never on a data
  // loop). false: a syntactically valid name is kept as given (fuzzing, tools).
  bool resolve_names = true;
};

// Parses and validates a JSON document: JSON types, ranges, names, the
// relations between keys. Files named by the config (certificates, keys) are
// not opened here: conf/ depends on nothing but the JSON library; the balancer
// checks them when it loads a config (lb/validate.hpp).
LoadResult load_string(const std::string& json_text, const LoadOptions& opts = {});
// Reads FILE and calls load_string; an unreadable file is one error at "/".
LoadResult load_file(const std::string& path, const LoadOptions& opts = {});

// Parses "host:port" or "[v6]:port". Numeric hosts are kept as given; names are
// resolved once (IPv4 preferred) when `resolve`. On failure returns nullopt and
// sets `err`.
std::optional<Endpoint> parse_endpoint(const std::string& s, std::string& err, bool resolve = true);

// Parses "redis://[[user]:password@]host[:port][/db]" (affinity_store.redis).
// Pure. On failure returns nullopt and sets `err`.
std::optional<RedisUrl> parse_redis_url(const std::string& s, std::string& err);

}  // namespace conf
