// A validated Config back to JSON, in the file's own key names with every
// default filled in (what the running process uses), and the difference
// between two configs as a list of JSON pointers. Pure.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace conf {

// redact: secrets are replaced by "<redacted>" (health.password). Paths are
// kept (a key file's path is not its content).
nlohmann::json to_json(const Config& c, bool redact = true);

// What changed from `before` to `after`: "/backends/b2: added",
// "/listeners/mqtts: changed", "/balance: changed", ... (backends and
// listeners by name; other sections whole). Empty: nothing changed.
std::vector<std::string> diff(const Config& before, const Config& after);

}  // namespace conf
