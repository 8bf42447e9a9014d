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
  std::vector<std::string> errors;  // "JSON-POINTER: message"; docs/config.md gives the order
  bool ok() const { return errors.empty(); }
};

// Parses and validates a JSON document.
LoadResult load_string(const std::string& json_text);
// Reads FILE and calls load_string; an unreadable file is one error at "/".
LoadResult load_file(const std::string& path);

// Parses "host:port" or "[v6]:port". Numeric hosts are kept as given; names are
// resolved once (IPv4 preferred). On failure returns nullopt and sets `err`.
std::optional<Endpoint> parse_endpoint(const std::string& s, std::string& err);

}  // namespace conf
