#include "import/haproxy_tokenizer.hpp"

#include <array>

namespace importer {

namespace {

// HAProxy calls isspace() in the C locale.
bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_alnum(unsigned char c) {
  return is_alpha(c) || (c >= '0' && c <= '9');
}
int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// One line being cut into words; `cur_` collects the current word.
class Cutter {
 public:
  Cutter(std::string_view in, Line& out) : in_(in), out_(out) {}

  void emit(char c) { cur_ += c; }
  // A separator: the current word ends, even if empty (HAProxy keeps empty
  // words between separators, e.g. `"" x`).
  void split() { push(); }
  void finish() {
    // Like HAProxy, no empty word after trailing spaces.
    if (!cur_.empty()) push();
  }
  bool fail(std::string msg, size_t col) {
    if (out_.error.empty()) {
      out_.error = std::move(msg);
      out_.error_column = col;
    }
    return false;
  }

 private:
  void push() {
    if (out_.words.size() >= kMaxWords) {
      fail("more than " + std::to_string(kMaxWords) + " words on one line", in_.size());
    } else {
      out_.words.push_back(cur_);
    }
    cur_.clear();
  }

  std::string_view in_;
  Line& out_;
  std::string cur_;
};

// Expands one `$NAME`, `${NAME}`, `${NAME-default}` or `${NAME[*]}` at in[i]
// == '$' (inside double quotes). Advances i past it. False on a syntax error.
bool expand_variable(std::string_view in, size_t& i, size_t number, const EnvLookup& env,
                     Cutter& cut, Line& line) {
  const size_t dollar = i++;
  const bool brace = i < in.size() && in[i] == '{';
  if (brace) ++i;
  const size_t name_start = i;
  if (i >= in.size() || !(is_alpha(in[i]) || in[i] == '_' || in[i] == '.'))
    return cut.fail("bad character in variable name after '$'", i);
  if (in[i] == '.') ++i;
  while (i < in.size() && (is_alnum(in[i]) || in[i] == '_')) ++i;
  EnvRef ref;
  ref.name = std::string(in.substr(name_start, i - name_start));
  std::optional<std::string> value;
  if (ref.name == ".LINE") {
    value = std::to_string(number);
  } else if (ref.name[0] == '.') {
    if (ref.name != ".FILE" && ref.name != ".SECTION")
      return cut.fail("unknown pseudo-variable '" + ref.name + "'", name_start);
  } else if (env) {
    value = env(ref.name);
  }
  ref.set = value.has_value();
  bool expand_words = false;
  if (brace && i < in.size() && in[i] == '[') {
    if (i + 2 >= in.size() || in[i + 1] != '*' || in[i + 2] != ']')
      return cut.fail("expected '[*]' in variable expansion", i);
    expand_words = true;
    i += 3;
  }
  if (brace) {
    if (i < in.size() && in[i] == '-') {
      const size_t close = in.find('}', i);
      if (close == std::string_view::npos) return cut.fail("unmatched '{'", dollar + 1);
      if (!value) {
        value = std::string(in.substr(i + 1, close - i - 1));
        ref.defaulted = true;
      }
      i = close;
    }
    if (i >= in.size() || in[i] != '}') return cut.fail("unmatched '{'", dollar + 1);
    ++i;
  }
  if (value) {
    for (size_t k = 0; k < value->size(); ++k) {
      const unsigned char c = (*value)[k];
      if (expand_words && is_space(c)) {
        cut.split();
        while (k + 1 < value->size() && is_space((*value)[k + 1])) ++k;
      } else {
        cut.emit(static_cast<char>(c));
      }
    }
  }
  line.env.push_back(std::move(ref));
  return true;
}

// A backslash at in[i] outside single quotes. Appends what it stands for and
// advances i past the sequence. HAProxy leaves unknown sequences (`\1`) as
// they are: the backslash is kept and the next character read normally.
bool unescape(std::string_view in, size_t& i, bool dquote, Cutter& cut) {
  const char next = i + 1 < in.size() ? in[i + 1] : '\0';
  switch (next) {
    case ' ':
    case '\\':
    case '#':
    case '\'':
    case '"':
      cut.emit(next);
      i += 2;
      return true;
    case 't':
      cut.emit('\t');
      i += 2;
      return true;
    case 'n':
      cut.emit('\n');
      i += 2;
      return true;
    case 'r':
      cut.emit('\r');
      i += 2;
      return true;
    case '$':
      // Only inside double quotes; outside, `\$` is two characters.
      if (dquote) {
        cut.emit('$');
        i += 2;
      } else {
        cut.emit('\\');
        i += 1;
      }
      return true;
    case 'x': {
      const int hi = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
      const int lo = i + 3 < in.size() ? hex_value(in[i + 3]) : -1;
      if (hi < 0 || lo < 0) return cut.fail("invalid or incomplete \\x escape", i);
      cut.emit(static_cast<char>(hi * 16 + lo));
      i += 4;
      return true;
    }
    default:
      cut.emit('\\');
      i += 1;
      return true;
  }
}

}  // namespace

Line tokenize_line(std::string_view text, size_t number, const EnvLookup& env) {
  Line line;
  line.number = number;
  // HAProxy's parser stops at the first CR, LF or NUL.
  const size_t end = text.find_first_of(std::string_view("\r\n\0", 3));
  if (end != std::string_view::npos && text[end] == '\0' &&
      text.find_first_not_of(std::string_view("\0", 1), end) != std::string_view::npos)
    line.error = "NUL byte in the line", line.error_column = end;
  const std::string_view in = text.substr(0, end);
  Cutter cut(in, line);
  size_t i = 0;
  while (i < in.size() && is_space(in[i])) ++i;  // leading blanks are not a word
  bool squote = false, dquote = false;
  size_t quote_col = 0;
  bool ok = true;
  // Set when the last thing read was a lone unquoted backslash at the end.
  bool lone_backslash = false;
  while (ok && i < in.size()) {
    const unsigned char c = in[i];
    lone_backslash = false;
    if (c == '#' && !squote && !dquote) {
      break;  // comment
    } else if (c == '"' && !squote) {
      dquote = !dquote;
      quote_col = i++;
    } else if (c == '\'' && !dquote) {
      squote = !squote;
      quote_col = i++;
    } else if (c == '\\' && !squote) {
      const bool at_end = i + 1 == in.size();
      const bool word_start = i == 0 || is_space(in[i - 1]);
      ok = unescape(in, i, dquote, cut);
      lone_backslash = at_end && word_start && !dquote;
    } else if (is_space(c) && !squote && !dquote) {
      while (i < in.size() && is_space(in[i])) ++i;
      cut.split();
    } else if (c == '$' && dquote) {
      ok = expand_variable(in, i, number, env, cut, line);
    } else {
      cut.emit(static_cast<char>(c));
      ++i;
    }
  }
  if (ok && (squote || dquote))
    cut.fail(std::string("unmatched ") + (squote ? "single" : "double") + " quote", quote_col);
  cut.finish();
  if (lone_backslash && !line.words.empty() && line.words.back() == "\\") {
    line.words.pop_back();
    line.trailing_backslash = true;
  }
  return line;
}

std::vector<Line> tokenize(std::string_view text, const EnvLookup& env) {
  std::vector<Line> out;
  size_t start = 0;
  for (size_t number = 1;; ++number) {
    const size_t nl = text.find('\n', start);
    const std::string_view phys =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    out.push_back(tokenize_line(phys, number, env));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

std::string quote_word(std::string_view w) {
  bool plain = !w.empty();
  for (unsigned char c : w)
    if (c <= ' ' || c == 0x7f || c == '"' || c == '\'' || c == '#' || c == '\\') plain = false;
  if (plain) return std::string(w);
  static const char* hex = "0123456789abcdef";
  std::string q = "\"";
  for (unsigned char c : w) {
    if (c == '"' || c == '\\' || c == '$') {
      q += '\\';
      q += static_cast<char>(c);
    } else if (c == '\t') {
      q += "\\t";
    } else if (c < ' ' || c == 0x7f) {
      q += "\\x";
      q += hex[c >> 4];
      q += hex[c & 15];
    } else {
      q += static_cast<char>(c);
    }
  }
  q += '"';
  return q;
}

std::string join_words(const std::vector<std::string>& words, size_t max_chars) {
  std::string s;
  for (const auto& w : words) {
    if (!s.empty()) s += ' ';
    s += quote_word(w);
    if (s.size() > max_chars) {
      // Cut on a UTF-8 character boundary.
      size_t cut = max_chars;
      while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
      return s.substr(0, cut) + "...";
    }
  }
  return s;
}

namespace {

// Decodes one well-formed UTF-8 sequence at s[i] (first byte >= 0x80).
// Returns its length (0 when malformed) and sets cp.
size_t decode_utf8(std::string_view s, size_t i, uint32_t& cp) {
  const unsigned char b0 = s[i];
  size_t len = 0;
  uint32_t min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const unsigned char b = s[i + k];
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// The ASCII character a look-alike stands for; 0 = drop it; -1 = not a look-alike.
int ascii_for(uint32_t cp) {
  if (cp >= 0xFF01 && cp <= 0xFF5E) return static_cast<int>(cp - 0xFEE0);  // full-width ASCII
  switch (cp) {
    case 0x00A0:  // no-break space
    case 0x3000:  // ideographic space
    case 0x202F:  // narrow no-break space
      return ' ';
    case 0x2018:
    case 0x2019:
    case 0x201A:
    case 0x2032:
      return '\'';
    case 0x201C:
    case 0x201D:
    case 0x201E:
    case 0x2033:
      return '"';
    case 0x2212:  // minus sign
      return '-';
    case 0x200B:  // zero-width space
    case 0xFEFF:  // byte order mark
      return 0;
    default:
      break;
  }
  if (cp >= 0x2002 && cp <= 0x200A) return ' ';  // en/em/thin spaces
  if (cp >= 0x2010 && cp <= 0x2015) return '-';  // hyphens and dashes
  return -1;
}

}  // namespace

std::string normalize_lookalikes(std::string_view line, std::vector<Replacement>& out) {
  std::string s;
  s.reserve(line.size());
  // Whether s ends with ASCII or a whole valid UTF-8 sequence (not a stray byte).
  bool clean = true;
  for (size_t i = 0; i < line.size();) {
    const unsigned char c = line[i];
    uint32_t cp = 0;
    const size_t len = c >= 0x80 ? decode_utf8(line, i, cp) : 0;
    if (c < 0x80 || len == 0) {  // ASCII, or a byte that starts no valid sequence
      s += static_cast<char>(c);
      clean = c < 0x80;
      ++i;
      continue;
    }
    const int a = ascii_for(cp);
    // Dropping a character must not join the bytes around it into a new one.
    const bool next_cont =
        i + len < line.size() && (static_cast<unsigned char>(line[i + len]) & 0xC0) == 0x80;
    if (a < 0 || (a == 0 && (!clean || next_cont))) {
      s.append(line.substr(i, len));
      clean = true;
      i += len;
      continue;
    }
    out.push_back({i, cp, static_cast<char>(a)});
    if (a) s += static_cast<char>(a), clean = true;
    i += len;
  }
  return s;
}

std::optional<SectionKind> section_header(const std::vector<std::string>& words) {
  if (words.empty()) return std::nullopt;
  const std::string& w = words[0];
  if (w == "global") return SectionKind::Global;
  if (w == "defaults") return SectionKind::Defaults;
  if (w == "frontend") return SectionKind::Frontend;
  if (w == "backend") return SectionKind::Backend;
  if (w == "listen") return SectionKind::Listen;
  static constexpr std::array<std::string_view, 10> other = {
      "peers", "resolvers",   "userlist", "mailers",     "program",
      "cache", "http-errors", "ring",     "log-forward", "namespace_list"};
  for (auto o : other)
    if (w == o) return SectionKind::Other;
  return std::nullopt;
}

}  // namespace importer
