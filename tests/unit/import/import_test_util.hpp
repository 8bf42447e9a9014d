// Shared by the import unit tests: run a translation, show it, find a note.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "import/haproxy_import.hpp"

namespace import_test {

// Exit code, notes and JSON, for INFO() when a check fails.
inline std::string dump(const importer::Result& r) {
  std::string s = "exit " + std::to_string(r.exit_code) + "\n";
  for (const auto& n : r.notes)
    s += std::to_string(n.line) + ": " + importer::to_string(n.kind) + ": `" + n.directive +
         "`: " + n.message + "\n";
  return s + r.config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Translates `cfg`; `files` are the certificate files it may read.
inline importer::Result tr(const std::string& cfg, std::map<std::string, std::string> files = {},
                           bool validate = true) {
  importer::Options o;
  o.validate = validate;
  o.read_file = [files](const std::string& p) -> std::optional<std::string> {
    auto it = files.find(p);
    if (it == files.end()) return std::nullopt;
    return it->second;
  };
  return importer::translate(cfg, o);
}

// The note on `line` whose message contains `part`, or nullptr.
inline const importer::Note* note_at(const importer::Result& r, size_t line,
                                     const std::string& part = "") {
  for (const auto& n : r.notes)
    if (n.line == line && n.message.find(part) != std::string::npos) return &n;
  return nullptr;
}

}  // namespace import_test
