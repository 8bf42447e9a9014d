// The HAProxy line tokenizer (import/haproxy_tokenizer.hpp) against the rules
// of configuration.txt 2.2-2.3 and what HAProxy 2.6's parse_line() does.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "import/haproxy_tokenizer.hpp"
#include "import/haproxy_values.hpp"

using importer::Line;
using importer::tokenize_line;

namespace {

using Words = std::vector<std::string>;

importer::EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& n) -> std::optional<std::string> {
    auto it = vars.find(n);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

Words words(std::string_view s, const importer::EnvLookup& env = {}) {
  Line l = tokenize_line(s, 1, env);
  REQUIRE_MESSAGE(l.error.empty(), l.error);
  return l.words;
}

std::string error_of(std::string_view s) {
  return tokenize_line(s, 1, {}).error;
}

}  // namespace

TEST_CASE("words are separated by blanks; leading blanks and comments are not words") {
  CHECK(words("    server emqx1 10.0.0.1:1883 check") ==
        Words{"server", "emqx1", "10.0.0.1:1883", "check"});
  CHECK(words("\tbind\t*:1883\t# plain MQTT") == Words{"bind", "*:1883"});
  CHECK(words("# a comment line").empty());
  CHECK(words("   ").empty());
  CHECK(words("").empty());
  // A '#' ends the line even inside a word, as in HAProxy.
  CHECK(words("bind :1883#comment") == Words{"bind", ":1883"});
}

TEST_CASE("the three equivalent log-format spellings of configuration.txt 2.2") {
  const Words want{"log-format", "%{+Q}o %t %s %{-Q}r"};
  CHECK(words(R"(log-format %{+Q}o\ %t\ %s\ %{-Q}r)") == want);
  CHECK(words(R"(log-format "%{+Q}o %t %s %{-Q}r")") == want);
  CHECK(words(R"(log-format '%{+Q}o %t %s %{-Q}r')") == want);
  CHECK(words(R"(log-format "%{+Q}o %t"' %s %{-Q}r')") == want);
  CHECK(words(R"(log-format "%{+Q}o %t"' %s'\ %{-Q}r)") == want);
}

TEST_CASE("escapes outside and inside quotes") {
  CHECK(words(R"(a\#b \\ \' \")") == Words{"a#b", "\\", "'", "\""});
  CHECK(words(R"(x\ty\nz\r)") == Words{"x\ty\nz\r"});
  CHECK(words(R"(\x41\x7a)") == Words{"Az"});
  CHECK(words(R"("a\"b" "c#d" "it's")") == Words{"a\"b", "c#d", "it's"});
  // Unknown sequences keep their backslash (regex back-references).
  CHECK(words(R"(\1 \d)") == Words{"\\1", "\\d"});
  // Nothing is interpreted between single quotes.
  CHECK(words(R"('a\nb' '$HOME' '#x')") == Words{"a\\nb", "$HOME", "#x"});
  // `\$` escapes only inside double quotes.
  CHECK(words(R"(\$x "\$x")") == Words{"\\$x", "$x"});
}

TEST_CASE("empty quoted words are kept between separators, not at the end") {
  CHECK(words(R"(a "" b)") == Words{"a", "", "b"});
  CHECK(words(R"(a "")") == Words{"a"});
}

TEST_CASE("malformed lines are errors with a column") {
  Line l = tokenize_line(R"(bind "*:1883)", 7, {});
  CHECK(l.number == 7);
  CHECK(l.error == "unmatched double quote");
  CHECK(l.error_column == 5);
  CHECK(error_of("a 'b") == "unmatched single quote");
  CHECK(error_of(R"(a \x4)") == "invalid or incomplete \\x escape");
  CHECK(error_of(R"(a \xZZ)") == "invalid or incomplete \\x escape");
  CHECK(error_of(R"("$1")") == "bad character in variable name after '$'");
  CHECK(error_of(R"("${HOME")") == "unmatched '{'");
  CHECK(error_of(R"("${HOME[x]}")") == "expected '[*]' in variable expansion");
  std::string many;
  for (int i = 0; i < 65; ++i) many += "w ";
  CHECK(error_of(many) == "more than 64 words on one line");
  CHECK(tokenize_line(std::string("a\0b", 3), 1, {}).error == "NUL byte in the line");
}

TEST_CASE("reading stops at CR, as HAProxy's parser does (CRLF files work)") {
  CHECK(words("bind :1883\r") == Words{"bind", ":1883"});
  CHECK(words("a\rb c") == Words{"a"});
}

TEST_CASE("environment variables expand inside double quotes only") {
  auto env = fake_env({{"CERTS", "/etc/haproxy/certs"}, {"PORTS", "1883  8883"}, {"EMPTY", ""}});
  Line l = tokenize_line(R"(crt "${CERTS}/mqtt.pem" $CERTS)", 3, env);
  CHECK(l.words == Words{"crt", "/etc/haproxy/certs/mqtt.pem", "$CERTS"});
  REQUIRE(l.env.size() == 1);
  CHECK(l.env[0].name == "CERTS");
  CHECK(l.env[0].set);
  CHECK(words(R"("$CERTS/x")", env) == Words{"/etc/haproxy/certs/x"});
  // Unset: nothing, or the default after '-' (which does not replace an empty value).
  CHECK(words(R"(a "${NOPE}" b)", env) == Words{"a", "", "b"});
  CHECK(words(R"("${NOPE-127.0.0.1}:514")", env) == Words{"127.0.0.1:514"});
  CHECK(words(R"("${EMPTY-x}y")", env) == Words{"y"});
  Line d = tokenize_line(R"("${NOPE-dflt}")", 1, env);
  REQUIRE(d.env.size() == 1);
  CHECK(d.env[0].defaulted);
  CHECK_FALSE(d.env[0].set);
  // [*] expands a list into words.
  CHECK(words(R"(x "${PORTS[*]}" y)", env) == Words{"x", "1883", "8883", "y"});
  CHECK(words(R"("${.LINE}")") == Words{"1"});
}

TEST_CASE("a lone trailing backslash is flagged, not taken as a word") {
  Line l = tokenize_line(R"(tcp-request content set-var(txn.id) \)", 1, {});
  CHECK(l.trailing_backslash);
  CHECK(l.words == Words{"tcp-request", "content", "set-var(txn.id)"});
  CHECK_FALSE(tokenize_line(R"(a\)", 1, {}).trailing_backslash);
  CHECK_FALSE(tokenize_line(R"(a "\")", 1, {}).trailing_backslash);
}

TEST_CASE("tokenize numbers physical lines from 1") {
  auto lines = importer::tokenize("global\n  maxconn 10\n\nfrontend f\n", {});
  REQUIRE(lines.size() == 5);
  CHECK(lines[1].number == 2);
  CHECK(lines[1].words == Words{"maxconn", "10"});
  CHECK(lines[4].words.empty());
}

TEST_CASE("quote_word reads back as the same single word") {
  for (std::string w : std::vector<std::string>{"plain", "", "two words", "a#b", "it's",
                                                "say \"hi\"", "back\\slash", "$HOME", "tab\there",
                                                std::string("nul\0x", 5), "crlf\r\n", "ünïcode"}) {
    // (Not last: like HAProxy, a trailing empty word is dropped.)
    Line l = tokenize_line("k " + importer::quote_word(w) + " end", 1, {});
    REQUIRE_MESSAGE(l.error.empty(), w);
    REQUIRE(l.words.size() == 3);
    CHECK(l.words[1] == w);
  }
  CHECK(importer::quote_word("10.0.0.1:1883") == "10.0.0.1:1883");
  CHECK(importer::join_words({"a", "b c"}) == "a \"b c\"");
  CHECK(importer::join_words({"aaaaaaaaaa", "bbbbbbbbbb"}, 12) == "aaaaaaaaaa b...");
}

TEST_CASE("look-alike characters from web pages are normalised, each reported") {
  std::vector<importer::Replacement> reps;
  // full-width colon, ideographic space, no-break space, curly quotes, en dash
  const std::string in = "bind\u3000*\uFF1A1883 name \u201Cmqtt\u201D\u00A0send\u2013proxy";
  CHECK(importer::normalize_lookalikes(in, reps) == "bind *:1883 name \"mqtt\" send-proxy");
  REQUIRE(reps.size() == 6);
  CHECK(reps[0].codepoint == 0x3000);
  CHECK(reps[0].column == 4);
  CHECK(reps[1].codepoint == 0xFF1A);
  CHECK(reps[1].ascii == ':');
  reps.clear();
  CHECK(importer::normalize_lookalikes("\uFEFFglobal\u200B", reps) == "global");
  CHECK(reps.size() == 2);
  CHECK(reps[0].ascii == 0);
  // Other UTF-8 and invalid bytes pass untouched.
  reps.clear();
  const std::string keep = "名前 caf\xc3\xa9 \xff\xfe \xef\xbc";
  CHECK(importer::normalize_lookalikes(keep, reps) == keep);
  CHECK(reps.empty());
}

TEST_CASE("section headers") {
  using importer::SectionKind;
  CHECK(importer::section_header({"frontend", "mqtt"}) == SectionKind::Frontend);
  CHECK(importer::section_header({"defaults"}) == SectionKind::Defaults);
  CHECK(importer::section_header({"listen", "x"}) == SectionKind::Listen);
  CHECK(importer::section_header({"peers", "p"}) == SectionKind::Other);
  CHECK_FALSE(importer::section_header({"server", "x"}));
  CHECK_FALSE(importer::section_header({}));
}

TEST_CASE("times, sizes and numbers") {
  CHECK(importer::parse_time_ms("500") == 500u);
  CHECK(importer::parse_time_ms("10s") == 10'000u);
  CHECK(importer::parse_time_ms("30m") == 1'800'000u);
  CHECK(importer::parse_time_ms("1h") == 3'600'000u);
  CHECK(importer::parse_time_ms("2d") == 172'800'000u);
  CHECK(importer::parse_time_ms("1500us") == 2u);
  CHECK_FALSE(importer::parse_time_ms("10 s"));
  CHECK_FALSE(importer::parse_time_ms("s"));
  CHECK_FALSE(importer::parse_time_ms("99999999999999999999"));
  CHECK(importer::parse_size("100k") == 102'400u);
  CHECK(importer::parse_size("1m") == 1'048'576u);
  CHECK(importer::parse_size("20000") == 20'000u);
  CHECK_FALSE(importer::parse_size("1t"));
  CHECK(importer::decode_hex("101f00") == std::string("\x10\x1f\x00", 3));
  CHECK_FALSE(importer::decode_hex("1"));
  CHECK_FALSE(importer::decode_hex("zz"));
}

TEST_CASE("bind addresses") {
  auto one = [](const char* s) {
    auto a = importer::parse_bind_addresses(s);
    REQUIRE_MESSAGE(a.error.empty(), a.error);
    return a.endpoints;
  };
  CHECK(one("*:1883") == Words{"0.0.0.0:1883"});
  CHECK(one(":1883") == Words{"0.0.0.0:1883"});
  CHECK(one("10.0.0.5:8883") == Words{"10.0.0.5:8883"});
  CHECK(one(":::1883") == Words{"[::]:1883"});
  CHECK(one("[::1]:1883") == Words{"[::1]:1883"});
  CHECK(one("ipv6@:1883") == Words{"[::]:1883"});
  CHECK(one("127.0.0.1:1883,127.0.0.2:1883") == Words{"127.0.0.1:1883", "127.0.0.2:1883"});
  auto r = importer::parse_bind_addresses("*:1883-1885");
  CHECK(r.endpoints == Words{"0.0.0.0:1883", "0.0.0.0:1884", "0.0.0.0:1885"});
  CHECK_FALSE(r.note.empty());
  CHECK_FALSE(importer::parse_bind_addresses("unix@/run/mqtt.sock").error.empty());
  CHECK_FALSE(importer::parse_bind_addresses("/run/mqtt.sock").error.empty());
  CHECK_FALSE(importer::parse_bind_addresses("*:70000").error.empty());
  CHECK_FALSE(importer::parse_bind_addresses("*").error.empty());
}

TEST_CASE("server addresses") {
  auto a = importer::parse_server_address("emqx1.example.com:1883");
  CHECK(a.host == "emqx1.example.com");
  CHECK(a.port == 1883);
  auto same = importer::parse_server_address("10.0.0.1");
  CHECK(same.port_kind == importer::ServerAddress::Port::Same);
  auto off = importer::parse_server_address("10.0.0.1:+1000");
  CHECK(off.port_kind == importer::ServerAddress::Port::Offset);
  CHECK(off.port == 1000);
  auto v6 = importer::parse_server_address("[fd00::1]:1883");
  CHECK(v6.host == "fd00::1");
  CHECK(importer::parse_server_address("fd00::1").host == "fd00::1");
  CHECK_FALSE(importer::parse_server_address("10.0.0.1:0").error.empty());
  CHECK_FALSE(importer::parse_server_address("unix@/x").error.empty());
}
