// `mqttlb import-haproxy`: an HAProxy configuration (mode tcp in front of MQTT
// brokers) -> the equivalent mqttlb JSON, plus one note per directive that
// was translated approximately or not at all. docs/migrating-from-haproxy.md
// lists what maps to what. Not on the data plane: runs once, may read the
// certificate files the configuration names.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "import/haproxy_model.hpp"
#include "import/haproxy_tokenizer.hpp"

namespace importer {

struct Options {
  EnvLookup env;  // for "${VAR}" in the HAProxy file; empty: nothing is set
  // Reads a whole file (certificates); nullopt when it cannot be read.
  std::function<std::optional<std::string>(const std::string& path)> read_file;
  // The regular files of a directory, sorted; nullopt when `path` is no directory.
  std::function<std::optional<std::vector<std::string>>(const std::string& path)> list_dir;
  // Validate the result with conf::load_string (as `mqttlb --check` does).
  bool validate = true;
};

struct Result {
  nlohmann::ordered_json config;  // null when exit_code == 2
  std::vector<Note> notes;        // sorted by line
  int exit_code = 2;              // 0 exact, 1 written with notes, 2 could not translate
  std::string summary;            // one line: what was written, how many notes
};

Result translate(std::string_view haproxy_cfg, const Options& opt);

// The command line: `import-haproxy FILE [-o OUT]` (argv[0] is "import-haproxy").
// Writes the JSON to OUT (or stdout), notes and the summary to stderr as
// `FILE:LINE: KIND: `DIRECTIVE`: message`; returns the exit code.
int run(int argc, char** argv);

}  // namespace importer
