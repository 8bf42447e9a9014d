// An HAProxy configuration as sections of directives, plus the notes the
// importer reports (one per directive it translated approximately or not at
// all). Built from the tokenizer's lines; pure.
#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "import/haproxy_tokenizer.hpp"

namespace importer {

struct Directive {
  size_t line = 0;  // the HAProxy file's line number
  std::vector<std::string> words;
  const std::string& kw() const { return words[0]; }
  // The i-th word or "" (no bounds check needed by callers).
  const std::string& arg(size_t i) const;
};

struct Section {
  SectionKind kind = SectionKind::Other;
  Directive header;  // `frontend NAME`, `defaults [NAME] [from NAME]`, ...
  std::string name;  // may be empty (global, unnamed defaults)
  std::string from;  // `from NAME`: the named defaults section it inherits
  std::vector<Directive> body;
  const Section* defaults = nullptr;  // the defaults this proxy inherits (resolved)
};

// Sections point at their defaults inside `sections`: a Model moves, never copies.
struct Model {
  Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&&) = default;
  Model& operator=(Model&&) = default;
  std::vector<Section> sections;
};

enum class NoteKind { Approximate, NotTranslated, Error };
const char* to_string(NoteKind k);

struct Note {
  size_t line = 0;
  NoteKind kind = NoteKind::Approximate;
  std::string directive;  // the directive as written (quoted, shortened)
  std::string message;    // why, and what mqttlb does instead
};

// Collects notes and which directive lines were accounted for (translated
// exactly, or noted), so that nothing is silently dropped.
class Notes {
 public:
  void add(const Directive& d, NoteKind k, std::string message);
  void approx(const Directive& d, std::string m) { add(d, NoteKind::Approximate, std::move(m)); }
  void ignored(const Directive& d, std::string m) { add(d, NoteKind::NotTranslated, std::move(m)); }
  void error(const Directive& d, std::string m) { add(d, NoteKind::Error, std::move(m)); }
  // The directive was translated exactly: no note.
  void exact(const Directive& d) { done_.insert(d.line); }
  bool done(const Directive& d) const { return done_.count(d.line) != 0; }
  bool has_errors() const;
  // Notes sorted by line (stable: notes of one line keep their order).
  std::vector<Note> sorted() const;
  size_t size() const { return notes_.size(); }

 private:
  std::vector<Note> notes_;
  std::set<size_t> done_;
};

// Tokenizes `text` and groups its lines into sections. Reports lexical
// problems: malformed lines (errors), look-alike characters, environment
// variables, trailing backslashes, conditional blocks, lines outside sections.
Model parse_config(std::string_view text, const EnvLookup& env, Notes& notes);

// The directives a proxy section sees for keyword `kw` (and optional second
// word, e.g. "timeout" "connect"): its own, else those of its defaults.
// Returns the last one HAProxy would apply, or nullptr.
const Directive* find_last(const Section& s, std::string_view kw, std::string_view second = {});
// Every directive with this keyword, farthest defaults first, the section's own last.
std::vector<const Directive*> find_all(const Section& s, std::string_view kw);
// The effective `mode` of a proxy ("tcp" when nothing says otherwise).
std::string mode_of(const Section& s);

}  // namespace importer
