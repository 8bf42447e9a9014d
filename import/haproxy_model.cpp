#include "import/haproxy_model.hpp"

#include <algorithm>
#include <cstdio>

namespace importer {

const std::string& Directive::arg(size_t i) const {
  static const std::string empty;
  return i < words.size() ? words[i] : empty;
}

const char* to_string(NoteKind k) {
  switch (k) {
    case NoteKind::Approximate:
      return "approximate";
    case NoteKind::NotTranslated:
      return "not translated";
    case NoteKind::Error:
      return "error";
  }
  return "?";
}

void Notes::add(const Directive& d, NoteKind k, std::string message) {
  done_.insert(d.line);
  // Directives of a defaults section are seen by every proxy: note them once.
  for (const auto& n : notes_)
    if (n.line == d.line && n.kind == k && n.message == message) return;
  notes_.push_back({d.line, k, join_words(d.words), std::move(message)});
}

bool Notes::has_errors() const {
  return std::any_of(notes_.begin(), notes_.end(),
                     [](const Note& n) { return n.kind == NoteKind::Error; });
}

std::vector<Note> Notes::sorted() const {
  std::vector<Note> v = notes_;
  std::stable_sort(v.begin(), v.end(),
                   [](const Note& a, const Note& b) { return a.line < b.line; });
  return v;
}

namespace {

std::string codepoint_name(uint32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
  return buf;
}

// "full-width '：' (U+FF1A) read as ':'" for every distinct look-alike.
std::string describe(std::string_view raw, const std::vector<Replacement>& reps) {
  std::string msg;
  std::set<uint32_t> seen;
  for (const auto& r : reps) {
    if (!seen.insert(r.codepoint).second) continue;
    size_t len = 1;
    while (r.column + len < raw.size() &&
           (static_cast<unsigned char>(raw[r.column + len]) & 0xC0) == 0x80)
      ++len;
    msg += msg.empty() ? "" : ", ";
    msg += "'" + std::string(raw.substr(r.column, len)) + "' (" + codepoint_name(r.codepoint) + ")";
    msg += r.ascii ? std::string(" read as '") + r.ascii + "'" : std::string(" removed");
  }
  return "look-alike characters copied from a web page: " + msg +
         "; HAProxy reads them as ordinary bytes and refuses or misreads this line";
}

}  // namespace

Model parse_config(std::string_view text, const EnvLookup& env, Notes& notes) {
  Model m;
  Section* cur = nullptr;
  // Conditional blocks: the importer takes the .if branch as written.
  int if_depth = 0;
  bool skipping = false;
  int skip_depth = 0;
  std::vector<std::string_view> raw;
  for (size_t start = 0;;) {
    const size_t nl = text.find('\n', start);
    raw.push_back(text.substr(start, nl == text.npos ? text.npos : nl - start));
    if (nl == text.npos) break;
    start = nl + 1;
  }
  for (size_t i = 0; i < raw.size(); ++i) {
    std::vector<Replacement> reps;
    const std::string norm = normalize_lookalikes(raw[i], reps);
    Line line = tokenize_line(norm, i + 1, env);
    Directive d{i + 1, line.words};
    if (!reps.empty()) {
      // Only when they change what HAProxy reads (not inside a comment).
      const Line as_is = tokenize_line(raw[i], i + 1, env);
      if (as_is.words != line.words || as_is.error != line.error)
        notes.approx(d, describe(raw[i], reps));
    }
    if (!line.error.empty()) {
      notes.error(d, "HAProxy refuses this line: " + line.error + " (column " +
                         std::to_string(line.error_column + 1) + ")");
      continue;
    }
    // No line continuation in HAProxy: it reads the next line as a directive
    // of its own (usually "unknown keyword"); the author meant one line.
    while (line.trailing_backslash && i + 1 < raw.size()) {
      notes.approx(d,
                   "the line ends with '\\': HAProxy has no line continuation (that is the "
                   "manual's formatting) and reads line " +
                       std::to_string(i + 2) + " as a directive of its own; joined here");
      ++i;
      std::vector<Replacement> r2;
      Line next = tokenize_line(normalize_lookalikes(raw[i], r2), i + 1, env);
      if (!next.error.empty()) {
        notes.error(Directive{i + 1, next.words}, "HAProxy refuses this line: " + next.error);
        break;
      }
      d.words.insert(d.words.end(), next.words.begin(), next.words.end());
      line.env.insert(line.env.end(), next.env.begin(), next.env.end());
      line.trailing_backslash = next.trailing_backslash;
    }
    for (const auto& e : line.env) {
      std::string how = e.set         ? "expanded from this shell's environment"
                        : e.defaulted ? "not set here: expanded to its default"
                                      : "not set here: expanded to nothing";
      notes.approx(d, "\"$" + e.name + "\" " + how +
                          "; the JSON holds the value (mqttlb does not expand variables)");
    }
    if (d.words.empty() || d.words[0].empty()) continue;
    const std::string& kw = d.words[0];
    if (kw == ".if") {
      ++if_depth;
      if (!skipping)
        notes.approx(d,
                     "conditional block not evaluated: the .if branch is translated as written, "
                     "any .elif/.else branch is skipped");
      else
        notes.exact(d);
      continue;
    }
    if (kw == ".elif" || kw == ".else") {
      if (!skipping) skipping = true, skip_depth = if_depth;
      notes.exact(d);
      continue;
    }
    if (kw == ".endif") {
      if (skipping && skip_depth == if_depth) skipping = false;
      if_depth = std::max(0, if_depth - 1);
      notes.exact(d);
      continue;
    }
    if (skipping) {
      notes.exact(d);
      continue;
    }
    if (kw == ".diag" || kw == ".notice" || kw == ".warning" || kw == ".alert") {
      notes.ignored(d, "HAProxy start-up message; mqttlb has none");
      continue;
    }
    if (auto kind = section_header(d.words)) {
      m.sections.push_back(Section{});
      cur = &m.sections.back();
      cur->kind = *kind;
      cur->header = d;
      if (*kind != SectionKind::Global && d.words.size() > 1 && d.words[1] != "from")
        cur->name = d.words[1];
      for (size_t k = 1; k + 1 < d.words.size(); ++k)
        if (d.words[k] == "from") cur->from = d.words[k + 1];
      continue;
    }
    if (!cur) {
      notes.ignored(d, "outside any section (HAProxy refuses it)");
      continue;
    }
    cur->body.push_back(std::move(d));
  }
  // Each proxy inherits the last defaults section before it, or the named
  // one given with `from` (a defaults section may itself name one).
  const Section* last_defaults = nullptr;
  for (auto& s : m.sections) {
    if (s.kind == SectionKind::Defaults) {
      if (!s.from.empty())
        for (const auto& o : m.sections)
          if (&o != &s && o.kind == SectionKind::Defaults && o.name == s.from) s.defaults = &o;
      last_defaults = &s;
      continue;
    }
    if (s.kind != SectionKind::Frontend && s.kind != SectionKind::Backend &&
        s.kind != SectionKind::Listen)
      continue;
    s.defaults = last_defaults;
    if (!s.from.empty())
      for (const auto& o : m.sections)
        if (o.kind == SectionKind::Defaults && o.name == s.from) s.defaults = &o;
  }
  return m;
}

namespace {

bool matches(const Directive& d, std::string_view kw, std::string_view second) {
  return d.kw() == kw && (second.empty() || d.arg(1) == second);
}

}  // namespace

namespace {

// The sections whose directives `s` sees, nearest first: s, its defaults,
// their defaults ... (bounded: a `from` cycle is not followed forever).
std::vector<const Section*> chain(const Section& s) {
  std::vector<const Section*> v{&s};
  for (const Section* d = s.defaults; d && v.size() < 8; d = d->defaults) {
    if (std::find(v.begin(), v.end(), d) != v.end()) break;
    v.push_back(d);
  }
  return v;
}

}  // namespace

const Directive* find_last(const Section& s, std::string_view kw, std::string_view second) {
  for (const Section* sec : chain(s)) {
    for (auto it = sec->body.rbegin(); it != sec->body.rend(); ++it)
      if (matches(*it, kw, second)) return &*it;
    // `no option X` cancels an inherited `option X`.
    if (kw == "option")
      for (const auto& d : sec->body)
        if (d.kw() == "no" && d.arg(1) == "option" && d.arg(2) == second) return nullptr;
  }
  return nullptr;
}

std::vector<const Directive*> find_all(const Section& s, std::string_view kw) {
  std::vector<const Directive*> v;
  auto secs = chain(s);
  for (auto it = secs.rbegin(); it != secs.rend(); ++it)
    for (const auto& d : (*it)->body)
      if (d.kw() == kw) v.push_back(&d);
  return v;
}

std::string mode_of(const Section& s) {
  const Directive* d = find_last(s, "mode");
  return d ? d->arg(1) : "tcp";
}

}  // namespace importer
