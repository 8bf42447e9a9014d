#include "import/haproxy_acl.hpp"

#include <arpa/inet.h>

#include <cctype>
#include <cstring>

namespace importer::acl {

Test parse_test(const std::vector<std::string>& words, size_t first, size_t line) {
  Test t;
  t.line = line;
  if (first >= words.size()) return t;
  t.fetch = words[first];
  size_t i = first + 1;
  // Flags come before the patterns; `--` ends them (configuration.txt 7.1).
  for (; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "--") {
      ++i;
      break;
    }
    if (w == "-i") {
      t.icase = true;
    } else if (w == "-n") {
      // no pattern-match optimisation: same result
    } else if ((w == "-m" || w == "-f" || w == "-M" || w == "-u") && i + 1 < words.size()) {
      if (w == "-m") t.method = words[i + 1];
      if (w == "-f" || w == "-M") t.from_file = true;
      ++i;
    } else {
      break;
    }
  }
  for (; i < words.size(); ++i) t.patterns.push_back(words[i]);
  return t;
}

void define(Definitions& defs, const std::vector<std::string>& words, size_t line) {
  if (words.size() < 3 || words[0] != "acl") return;
  defs[words[1]].push_back(parse_test(words, 2, line));
}

Condition condition_of(const std::vector<std::string>& words, const Definitions& defs) {
  Condition c;
  size_t k = 1;
  while (k < words.size() && words[k] != "if" && words[k] != "unless") ++k;
  if (k >= words.size()) return c;
  c.present = true;
  c.unless = words[k] == "unless";
  c.any.emplace_back();
  for (size_t i = k + 1; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "||" || w == "or") {
      if (c.any.back().empty()) c.error = "`" + w + "` without a term before it";
      c.any.emplace_back();
      continue;
    }
    if (w == "}") {
      c.error = "`}` without `{`";
      continue;
    }
    Term t;
    std::string name = w;
    if (!name.empty() && name[0] == '!') {
      t.negated = true;
      name.erase(0, 1);
      if (name.empty() && i + 1 < words.size() && words[i + 1] == "{") name = words[++i];
    }
    if (name == "{") {
      size_t end = i + 1;
      while (end < words.size() && words[end] != "}") ++end;
      if (end >= words.size()) {
        c.error = "`{` without `}`";
        break;
      }
      const std::vector<std::string> inner(words.begin() + static_cast<long>(i) + 1,
                                           words.begin() + static_cast<long>(end));
      if (inner.empty()) c.error = "an empty `{ }`";
      t.tests.push_back(parse_test(inner, 0, 0));
      i = end;
    } else if (name.empty()) {
      c.error = "`" + w + "` names no ACL";
      continue;
    } else {
      t.name = name;
      auto it = defs.find(name);
      if (it == defs.end())
        t.defined = false;
      else
        t.tests = it->second;
    }
    c.any.back().push_back(std::move(t));
  }
  if (c.any.back().empty() && c.error.empty()) c.error = "a condition without a term";
  return c;
}

Key key_of(std::string_view f) {
  auto has = [&](std::string_view s) { return f.find(s) != std::string_view::npos; };
  if (has("mqtt_field_value(connect,client_identifier)")) return Key::ClientId;
  if (has("mqtt_field_value(connect,username)")) return Key::Username;
  if (f == "src") return Key::Source;
  if (has("ssl_sni") || has("ssl_fc_sni")) return Key::Sni;
  if (f == "dst_port") return Key::DstPort;
  return Key::Other;
}

std::optional<std::string> literal_regex(std::string_view re, bool& whole) {
  whole = false;
  if (re.empty() || re[0] != '^') return std::nullopt;
  std::string lit;
  size_t i = 1;
  for (; i < re.size(); ++i) {
    const char ch = re[i];
    if (ch == '\\') {
      if (i + 1 >= re.size()) return std::nullopt;
      const unsigned char n = static_cast<unsigned char>(re[i + 1]);
      // `\d`, `\w`, `\1` ... are classes or references; `\.` is a dot.
      if (std::isalnum(n) || n >= 0x80) return std::nullopt;
      lit += static_cast<char>(n);
      ++i;
    } else if (std::strchr(".[]()*+?{}|^$", ch) != nullptr) {
      break;
    } else {
      lit += ch;
    }
  }
  std::string_view rest = re.substr(i);
  if (rest == ".*" || rest == ".*$" || rest.empty()) {
    // a prefix
  } else if (rest == "$") {
    whole = true;
  } else {
    return std::nullopt;
  }
  if (lit.empty()) return std::nullopt;
  return lit;
}

std::string Cidr::text() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf)) return "";
  if (bits == (v6 ? 128u : 32u)) return buf;
  return std::string(buf) + "/" + std::to_string(bits);
}

namespace {

std::optional<unsigned> parse_bits(std::string_view s, unsigned max) {
  if (s.empty() || s.size() > 3) return std::nullopt;
  unsigned v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(ch - '0');
  }
  if (v > max) return std::nullopt;
  return v;
}

void clear_host_bits(Cidr& c) {
  for (unsigned i = c.bits; i < (c.v6 ? 128u : 32u); ++i)
    c.bytes[i / 8] &= static_cast<uint8_t>(~(0x80u >> (i % 8)));
}

bool same_prefix(const Cidr& a, const Cidr& b, unsigned bits) {
  for (unsigned i = 0; i < bits; ++i) {
    const uint8_t m = static_cast<uint8_t>(0x80u >> (i % 8));
    if ((a.bytes[i / 8] & m) != (b.bytes[i / 8] & m)) return false;
  }
  return true;
}

}  // namespace

std::optional<Cidr> parse_cidr(std::string_view s) {
  Cidr c;
  const size_t slash = s.find('/');
  const std::string addr(s.substr(0, slash));
  if (addr.empty() || addr.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  if (inet_pton(AF_INET, addr.c_str(), c.bytes.data()) == 1) {
    c.bits = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.bytes.data()) == 1) {
    c.v6 = true;
    c.bits = 128;
  } else {
    return std::nullopt;
  }
  if (slash != std::string_view::npos) {
    const std::string_view m = s.substr(slash + 1);
    if (auto b = parse_bits(m, c.bits)) {
      c.bits = *b;
    } else if (!c.v6 && m.size() < INET_ADDRSTRLEN) {
      // A netmask: contiguous ones only (HAProxy refuses others too).
      uint8_t mask[4];
      const std::string ms(m);
      if (inet_pton(AF_INET, ms.c_str(), mask) != 1) return std::nullopt;
      const uint32_t v = (uint32_t{mask[0]} << 24) | (uint32_t{mask[1]} << 16) |
                         (uint32_t{mask[2]} << 8) | uint32_t{mask[3]};
      unsigned ones = 0;
      while (ones < 32 && (v & (0x80000000u >> ones))) ++ones;
      if (ones < 32 && (v << ones) != 0) return std::nullopt;
      c.bits = ones;
    } else {
      return std::nullopt;
    }
  }
  clear_host_bits(c);
  return c;
}

std::optional<Cidr> intersect(const Cidr& a, const Cidr& b) {
  if (a.v6 != b.v6) return std::nullopt;
  const unsigned bits = a.bits < b.bits ? a.bits : b.bits;
  if (!same_prefix(a, b, bits)) return std::nullopt;
  return a.bits >= b.bits ? a : b;
}

}  // namespace importer::acl
