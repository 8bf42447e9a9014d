// import::translate() for routing (use_backend -> routes) and per-address
// connection rate limits (track-sc0 + sc_conn_rate -> limits.connect_rate),
// and the ACL parser they rest on (import/haproxy_acl.hpp). Every config
// here is also validated as `mqttlb --check` does (exit 2 otherwise).
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "import/haproxy_acl.hpp"
#include "import/haproxy_import.hpp"
#include "tests/unit/import/import_test_util.hpp"

using import_test::dump;
using import_test::note_at;
using import_test::tr;
using importer::NoteKind;
using importer::Result;
using ojson = nlohmann::ordered_json;

namespace {

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> v;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(' ', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) v.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return v;
}

const char* kCid = "req.payload(0,0),mqtt_field_value(connect,client_identifier)";
const char* kUser = "req.payload(0,0),mqtt_field_value(connect,username)";

// HAProxy reads the CONNECT only with both (the guides' known mistake otherwise).
const std::string kWait =
    "    tcp-request inspect-delay 5s\n"
    "    tcp-request content reject unless { req.payload(0,0),mqtt_is_valid }\n";

// A frontend (lines 1-2), its rules from line 3, kWait, then backends:
// shared (default), a (two servers), b (one).
std::string routed(const std::string& rules) {
  return "frontend mqtt\n    bind 127.0.0.1:1883\n" + rules + kWait +
         "    default_backend shared\n"
         "backend shared\n    server s1 127.0.0.1:2001\n    server s2 127.0.0.1:2002\n"
         "backend a\n    server a1 127.0.0.1:3001\n    server a2 127.0.0.1:3002\n"
         "backend b\n    server b1 127.0.0.1:4001\n";
}

}  // namespace

TEST_CASE("acl: flags, patterns, and conditions with ||, ! and anonymous tests") {
  importer::acl::Definitions defs;
  importer::acl::define(defs, words("acl t src -n -i -m ip -- 10.0.0.0/8 -1"), 7);
  importer::acl::define(defs, words("acl t src 192.168.0.0/16"), 8);
  REQUIRE(defs["t"].size() == 2);
  const auto& t = defs["t"][0];
  CHECK(t.line == 7);
  CHECK(t.fetch == "src");
  CHECK(t.icase);
  CHECK(t.method == "ip");
  CHECK(t.patterns == std::vector<std::string>{"10.0.0.0/8", "-1"});
  CHECK(importer::acl::parse_test(words("acl x src -f /etc/list"), 2, 1).from_file);

  auto c =
      importer::acl::condition_of(words("use_backend x if t !u || { src 1.2.3.4 } or t"), defs);
  REQUIRE(c.error.empty());
  CHECK(c.present);
  CHECK_FALSE(c.unless);
  REQUIRE(c.any.size() == 3);
  REQUIRE(c.any[0].size() == 2);
  CHECK(c.any[0][0].tests.size() == 2);
  CHECK(c.any[0][1].negated);
  CHECK_FALSE(c.any[0][1].defined);
  CHECK(c.any[1][0].name.empty());
  CHECK(c.any[1][0].tests[0].patterns == std::vector<std::string>{"1.2.3.4"});
  CHECK(importer::acl::condition_of(words("use_backend x"), defs).present == false);
  CHECK(importer::acl::condition_of(words("use_backend x unless t"), defs).unless);
  for (const char* bad :
       {"r if { src 1.2.3.4", "r if t ||", "r if || t", "r if }", "r if", "r if ! t"})
    CHECK_MESSAGE(!importer::acl::condition_of(words(bad), defs).error.empty(), bad);
}

TEST_CASE("acl: anchored literal regexes, CIDR blocks and their intersection") {
  bool whole = false;
  CHECK(importer::acl::literal_regex("^tenant-a/", whole) == "tenant-a/");
  CHECK_FALSE(whole);
  CHECK(importer::acl::literal_regex("^dev\\.1$", whole) == "dev.1");
  CHECK(whole);
  CHECK(importer::acl::literal_regex("^acme/.*", whole) == "acme/");
  CHECK_FALSE(whole);
  for (const char* no : {"acme/", "^a.c", "^a\\d", "^(a|b)", "^", "^a+", "^a$b", "^a\\"})
    CHECK_MESSAGE(!importer::acl::literal_regex(no, whole), no);

  auto a = importer::acl::parse_cidr("192.168.77.9/255.255.255.0");
  REQUIRE(a);
  CHECK(a->text() == "192.168.77.0/24");
  CHECK(importer::acl::parse_cidr("10.1.2.3")->text() == "10.1.2.3");
  CHECK(importer::acl::parse_cidr("2001:db8::1/32")->text() == "2001:db8::/32");
  for (const char* no : {"", "10.0.0.0/33", "10.0.0.0/255.0.255.0", "host", "::/129", "1.2.3.4/x"})
    CHECK_MESSAGE(!importer::acl::parse_cidr(no), no);
  auto big = *importer::acl::parse_cidr("10.0.0.0/8"),
       small = *importer::acl::parse_cidr("10.5.0.0/16");
  CHECK(importer::acl::intersect(big, small)->text() == "10.5.0.0/16");
  CHECK(importer::acl::intersect(small, big)->text() == "10.5.0.0/16");
  CHECK_FALSE(importer::acl::intersect(big, *importer::acl::parse_cidr("11.0.0.0/8")));
  CHECK_FALSE(importer::acl::intersect(big, *importer::acl::parse_cidr("::/0")));
}

TEST_CASE("use_backend on a client id prefix, user name and source: exact routes, exit 0") {
  Result r = tr(routed(std::string("    acl t ") + kCid + " -m beg acme/ globex/\n" +
                       "    acl ops " + kUser + " ops\n" +
                       "    acl lab src 10.50.0.0/16\n"
                       "    use_backend a if t\n"
                       "    use_backend b if ops lab\n"));
  INFO(dump(r));
  CHECK(r.exit_code == 0);
  CHECK(r.notes.empty());
  CHECK(r.config["backends"].size() == 5);
  CHECK(r.config["routes"] == ojson::parse(R"([
    {"match": {"client_id_prefix": "acme/"}, "backends": ["a1", "a2"]},
    {"match": {"client_id_prefix": "globex/"}, "backends": ["a1", "a2"]},
    {"match": {"username": "ops", "source": "10.50.0.0/16"}, "backends": ["b1"]}])"));
}

TEST_CASE("what a route cannot say exactly is approximate, what it cannot say at all is noted") {
  Result r = tr(routed(std::string("    acl exact_id ") + kCid + " gw-1\n" +  // line 3
                       "    acl ci " + kCid + " -i -m beg Acme/\n" +          // 4
                       "    acl sni ssl_fc_sni -i b.example.com\n" +          // 5
                       "    acl lab src 10.50.0.0/16\n" +                     // 6
                       "    acl ub " + kUser + " -m beg op\n" +               // 7
                       "    use_backend a if exact_id || !lab\n" +            // 8
                       "    use_backend a if ci\n" +                          // 9
                       "    use_backend b if sni\n" +                         // 10
                       "    use_backend b if ub\n" +                          // 11
                       "    use_backend b unless lab\n"));                    // 12
  INFO(dump(r));
  CHECK(r.exit_code == 1);
  REQUIRE(note_at(r, 8, "ids that only begin with it"));
  CHECK(note_at(r, 8)->kind == NoteKind::Approximate);
  REQUIRE(note_at(r, 8, "cannot negate"));
  REQUIRE(note_at(r, 9, "case-sensitively"));
  REQUIRE(note_at(r, 10, "a listener of its own"));
  CHECK(note_at(r, 10)->kind == NoteKind::NotTranslated);
  REQUIRE(note_at(r, 11, "matches user names exactly"));
  REQUIRE(note_at(r, 12, "`unless`"));
  REQUIRE(note_at(r, 5, "used by line 10"));
  CHECK_FALSE(note_at(r, 3));
  // b is named by no route: its servers are no backends (they would join the default pool).
  CHECK(r.config["backends"].size() == 4);
  REQUIRE(note_at(r, 22, "not used by any translated frontend"));
  CHECK(r.config["routes"] == ojson::parse(R"([
    {"match": {"client_id_prefix": "gw-1"}, "backends": ["a1", "a2"]},
    {"match": {"client_id_prefix": "Acme/"}, "backends": ["a1", "a2"]}])"));
}

TEST_CASE("a rule to the default backend is left out, approximate only when a later one overlaps") {
  Result r = tr(routed(std::string("    acl x ") + kCid + " -m beg x/\n" +  // 3
                       "    acl y " + kCid + " -m beg y/\n" +               // 4
                       "    acl y2 " + kCid + " -m beg x/y\n" +             // 5
                       "    use_backend shared if x\n" +                    // 6
                       "    use_backend a if y\n" +                         // 7
                       "    use_backend shared if y\n" +                    // 8
                       "    use_backend b if y2\n"));                       // 9
  INFO(dump(r));
  CHECK_FALSE(note_at(r, 8));                       // nothing after it could take its clients
  REQUIRE(note_at(r, 6, "later rule's backends"));  // x/y... clients went to shared, now to b
  CHECK(r.config["routes"].size() == 2);
  for (const auto& route : r.config["routes"])
    for (const auto& b : route["backends"]) CHECK(b.get<std::string>()[0] != 's');
}

TEST_CASE("the same server names in several backends stay unique; sections' settings compared") {
  Result r = tr(std::string("frontend mqtt\n    bind 127.0.0.1:1883\n    acl t ") + kCid +
                " -m beg t/\n    use_backend tenant if t\n    default_backend shared\n" +
                "backend shared\n    balance leastconn\n    server emqx1 127.0.0.1:2001\n" +
                "backend tenant\n    balance roundrobin\n    server emqx1 127.0.0.1:3001\n" +
                "    server emqx1-b 127.0.0.1:3002\n");
  INFO(dump(r));
  CHECK(r.config["backends"][0]["name"] == "emqx1");
  CHECK(r.config["backends"][1]["name"] == "tenant-emqx1");
  CHECK(r.config["backends"][2]["name"] == "tenant-emqx1-b");  // the whole section alike
  CHECK(r.config["routes"][0]["backends"] == ojson::parse(R"(["tenant-emqx1", "tenant-emqx1-b"])"));
  REQUIRE(note_at(r, 10, "the default pool's `balance leastconn` (line 7"));
}

TEST_CASE("several frontends: their rules see only their listeners; dst_port names a listener") {
  Result r =
      tr(std::string("frontend one\n    bind 127.0.0.1:1883\n    bind 127.0.0.1:8883\n") +
         "    acl tls dst_port 8883\n    use_backend a if tls\n" + "    default_backend shared\n" +
         "frontend two\n    bind 127.0.0.1:1884\n" + kWait + "    acl t " + kCid + " -m beg t/\n" +
         "    use_backend a if t\n    default_backend b\n" +
         "backend shared\n    server s1 127.0.0.1:2001\n" +
         "backend a\n    server a1 127.0.0.1:3001\n" + "backend b\n    server b1 127.0.0.1:4001\n");
  INFO(dump(r));
  CHECK(r.exit_code == 0);
  CHECK(r.config["routes"] == ojson::parse(R"([
    {"match": {"listener": "one-8883"}, "backends": ["a1"]},
    {"match": {"client_id_prefix": "t/", "listener": "two"}, "backends": ["a1"]},
    {"match": {"listener": "two"}, "backends": ["b1"]}])"));
}

TEST_CASE("a rule naming a missing backend is an error; an empty backend is noted") {
  Result r = tr(routed("    use_backend nowhere if { src 10.0.0.0/8 }\n"));
  CHECK(r.exit_code == 2);
  REQUIRE(note_at(r, 3, "no backend named 'nowhere'"));
  Result e = tr(routed("    use_backend empty if { src 10.0.0.0/8 }\n") + "backend empty\n");
  INFO(dump(e));
  CHECK(e.exit_code == 1);
  REQUIRE(note_at(e, 3, "has no server"));
  CHECK_FALSE(e.config.contains("routes"));
}

TEST_CASE("track-sc0 src + reject if sc_conn_rate(0) gt N becomes limits.connect_rate") {
  const std::string head = "frontend mqtt\n    bind 127.0.0.1:1883\n";
  const std::string tail =
      "    default_backend brokers\nbackend brokers\n"
      "    server b1 127.0.0.1:2001\n";
  Result r = tr(head + "    stick-table type ip size 100k expire 30s store conn_rate(10s)\n" +
                "    tcp-request connection track-sc0 src\n" +
                "    tcp-request connection reject if { sc_conn_rate(0) gt 20 }\n" + tail);
  INFO(dump(r));
  CHECK(r.config["limits"]["connect_rate"] ==
        ojson::parse(R"({"per_ip_per_s": 2, "burst": 20, "ip_prefix_v6": 128})"));
  REQUIRE(note_at(r, 5, "bucket of 20 connections refilled at 2/s"));
  CHECK_FALSE(note_at(r, 5, "whole connections"));  // 20 per 10 s is 2/s exactly
  CHECK_FALSE(note_at(r, 3));
  CHECK_FALSE(note_at(r, 4));
  CHECK(r.notes.size() == 1);

  // 30 a minute in a table of its own, through a named ACL.
  Result m =
      tr(head + "    tcp-request connection track-sc1 src table rates\n" +
         "    acl fast sc1_conn_rate ge 31\n" + "    tcp-request connection reject if fast\n" +
         tail + "backend rates\n    stick-table type ipv6 size 1m expire 2m store conn_rate(1m)\n");
  INFO(dump(m));
  CHECK(m.config["limits"]["connect_rate"]["per_ip_per_s"] == 1);
  CHECK(m.config["limits"]["connect_rate"]["burst"] == 30);
  REQUIRE(note_at(m, 5, "30 per 60 s is 0.5/s"));
  CHECK_FALSE(note_at(m, 4));
  CHECK_FALSE(note_at(m, 9));  // the table's backend is accounted for
  CHECK_FALSE(note_at(m, 10));

  // What does not translate says why.
  Result n = tr(head + "    stick-table type ip size 100k expire 30s store conn_cur\n" +
                "    tcp-request connection track-sc0 src\n" +
                "    tcp-request connection reject if { sc_conn_rate(0) gt 20 }\n" +
                "    tcp-request connection reject if !{ sc_conn_rate(0) gt 20 }\n" + tail);
  INFO(dump(n));
  CHECK_FALSE(n.config["limits"].contains("connect_rate"));
  REQUIRE(note_at(n, 5, "stores no conn_rate"));
  REQUIRE(note_at(n, 6, "only `reject if"));
  REQUIRE(note_at(n, 4, "no translated limit uses"));
  Result u = tr(head + "    stick-table type ip size 1k store conn_rate(10s)\n" +
                "    tcp-request connection reject if { sc_conn_rate(0) gt 20 }\n" + tail);
  REQUIRE(note_at(u, 4, "no `track-sc0 src`"));
}

TEST_CASE("rate-limit sessions becomes the global connect rate") {
  Result r =
      tr("frontend mqtt\n    bind 127.0.0.1:1883\n    rate-limit sessions 500\n"
         "    default_backend brokers\nbackend brokers\n    server b1 127.0.0.1:2001\n");
  INFO(dump(r));
  CHECK(r.config["limits"]["connect_rate"] == ojson::parse(R"({"global_per_s": 500})"));
  REQUIRE(note_at(r, 3, "accept backlog"));
}

TEST_CASE("a backend with the default pool's very servers is that pool under another name") {
  Result r = tr(std::string("frontend mqtt\n    bind 127.0.0.1:1883\n") + kWait +  // 1-4
                "    use_backend copy if { src 10.0.0.0/8 }\n" +                   // 5
                "    default_backend shared\n" +                                   // 6
                "backend shared\n    server s1 127.0.0.1:2001\n" +                 // 7-8
                "    server s2 127.0.0.1:2002\n" +                                 // 9
                "backend copy\n    server c1 127.0.0.1:2001\n" +                   // 10-11
                "    server c2 127.0.0.1:2002 weight 3\n");                        // 12
  INFO(dump(r));
  CHECK(r.exit_code == 1);
  CHECK_FALSE(r.config.contains("routes"));  // its clients go to the default pool anyway
  CHECK(r.config["backends"].size() == 2);
  CHECK_FALSE(note_at(r, 5));
  CHECK_FALSE(note_at(r, 11));
  REQUIRE(note_at(r, 12, "the same broker as line 9"));
  CHECK(r.notes.size() == 1);
}
