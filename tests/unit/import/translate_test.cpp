// import::translate(): HAProxy configs in, mqttlb JSON + notes out. The
// guide-style corpus with TLS files is checked end to end by
// tests/integration/test_import_haproxy.py; these are the rules one by one.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "import/haproxy_import.hpp"
#include "tests/unit/import/import_test_util.hpp"

using import_test::dump;
using import_test::note_at;
using import_test::tr;
using importer::NoteKind;
using importer::Result;

namespace {

const std::string kFront = R"(frontend mqtt
    bind 127.0.0.1:1883
    default_backend brokers
)";

}  // namespace

TEST_CASE("a plain leastconn pool with checks translates exactly but for the check kind") {
  Result r = tr(kFront + R"(
backend brokers
    balance leastconn
    server b1 127.0.0.1:1884 check inter 3s rise 1 fall 2 weight 2
    server b2 127.0.0.1:1885 check inter 3s rise 1 fall 2
)");
  INFO(dump(r));
  CHECK(r.exit_code == 1);
  CHECK(r.config["listeners"][0] ==
        nlohmann::ordered_json::parse(R"({"name": "mqtt", "bind": "127.0.0.1:1883"})"));
  CHECK(r.config["backends"][0]["weight"] == 2);
  CHECK_FALSE(r.config["backends"][1].contains("weight"));
  CHECK(r.config["balance"]["algorithm"] == "leastconn");
  CHECK(r.config["balance"]["affinity"] == "none");  // no stick table: no affinity in HAProxy
  CHECK(r.config["health"]["interval_ms"] == 3000);
  CHECK(r.config["health"]["timeout_ms"] == 3000);  // no `timeout check`: the whole inter
  CHECK(r.config["health"]["rise"] == 1);
  CHECK(r.config["health"]["fall"] == 2);
  CHECK(r.config["health"]["accept_refusal"] == true);
  // The only note: a TCP check became an MQTT check.
  REQUIRE(r.notes.size() == 1);
  CHECK(r.notes[0].line == 7);
  CHECK(r.notes[0].kind == NoteKind::Approximate);
}

TEST_CASE("no check on any server: health disabled, exit 0 when nothing else differs") {
  Result r = tr(kFront + R"(
backend brokers
    mode tcp
    balance roundrobin
    server b1 127.0.0.1:1884
)");
  INFO(dump(r));
  CHECK(r.exit_code == 0);
  CHECK(r.notes.empty());
  CHECK(r.config["health"] == nlohmann::ordered_json::parse(R"({"enabled": false})"));
  CHECK(r.config["balance"]["algorithm"] == "round-robin");
}

TEST_CASE("the EMQX-style stick table becomes client-id affinity with its limits") {
  Result r = tr(R"(frontend mqtt
    bind 127.0.0.1:1883
    tcp-request inspect-delay 10s
    tcp-request content reject unless { req.payload(0,0),mqtt_is_valid }
    default_backend brokers
backend brokers
    stick-table type string len 32 size 100k expire 30m peers mypeers
    stick on req.payload(0,0),mqtt_field_value(connect,client_identifier)
    server b1 127.0.0.1:1884
)");
  INFO(dump(r));
  CHECK(r.exit_code == 1);
  CHECK(r.config["balance"]["affinity"] == "client-id");
  CHECK(r.config["balance"]["affinity_max_entries"] == 102400);
  CHECK(r.config["balance"]["affinity_ttl_s"] == 1800);
  CHECK(r.config["limits"]["connect_timeout_ms"] == 10000);
  CHECK(note_at(r, 3) == nullptr);  // inspect-delay + reject rule: exact
  CHECK(note_at(r, 4) == nullptr);
  CHECK(note_at(r, 8) == nullptr);  // stick on the client id: exact
  REQUIRE(note_at(r, 7, "peers mypeers"));
  CHECK(r.notes.size() == 1);
}

TEST_CASE("the known mistakes: no inspect-delay, or one without a waiting rule") {
  const std::string back = R"(
backend brokers
    stick-table type string size 1m expire 1h peers p
    stick on req.payload(0,0),mqtt_field_value(connect,client_identifier)
    server b1 127.0.0.1:1884
)";
  Result none = tr(kFront + back);
  INFO(dump(none));
  REQUIRE(note_at(none, 7, "no `tcp-request inspect-delay`"));
  Result lone = tr(R"(frontend mqtt
    bind 127.0.0.1:1883
    tcp-request inspect-delay 5s
    default_backend brokers
)" + back);
  INFO(dump(lone));
  REQUIRE(note_at(lone, 8, "without a `tcp-request content` rule"));
  REQUIRE(note_at(lone, 3, "did not wait at all"));
  CHECK(lone.config["limits"]["connect_timeout_ms"] == 5000);
}

TEST_CASE("balance source and hash become consistent-hash, with what differs") {
  Result src = tr(kFront + R"(
backend brokers
    balance source
    hash-type consistent
    server b1 127.0.0.1:1884
)");
  INFO(dump(src));
  CHECK(src.config["balance"]["algorithm"] == "consistent-hash");
  REQUIRE(note_at(src, 6, "not the client address"));
  Result id = tr(kFront + R"(
backend brokers
    balance hash req.payload(0,0),mqtt_field_value(connect,client_identifier)
    hash-type consistent
    hash-balance-factor 150
    server b1 127.0.0.1:1884
)");
  INFO(dump(id));
  CHECK(id.exit_code == 0);
  CHECK(id.config["balance"]["hash_balance_factor"] == 0.5);
  Result first = tr(kFront + "backend brokers\n    balance first\n    server b1 127.0.0.1:1884\n");
  CHECK(first.config["balance"]["algorithm"] == "leastconn");
  CHECK(note_at(first, 5, "balance first"));
}

TEST_CASE("a hex MQTT CONNECT health check is decoded into the MQTT check") {
  // CONNECT 3.1.1, clean, keep-alive 60, client id "haproxy-hc", user "hc", password "s3cret".
  Result r = tr(kFront + R"(
backend brokers
    option tcp-check
    tcp-check connect
    tcp-check send-binary 102200044d51545404c2003c000a686170726f78792d6863000268630006733363726574
    tcp-check expect binary 20020000
    tcp-check send-binary e000
    timeout check 500ms
    timeout connect 300ms
    server b1 127.0.0.1:1884 check inter 1s on-marked-down shutdown-sessions slowstart 30s
)");
  INFO(dump(r));
  const auto& h = r.config["health"];
  CHECK(h["protocol_level"] == 4);
  CHECK(h["username"] == "hc");
  CHECK(h["password"] == "s3cret");
  CHECK(h["keep_alive_s"] == 60);
  CHECK(h["client_id_prefix"] == "haproxy-hc");
  CHECK(h["mode"] == "reconnect");
  CHECK_FALSE(h.contains("accept_refusal"));
  CHECK(h["interval_ms"] == 1000);
  CHECK(h["timeout_ms"] == 800);  // min(connect 300, inter) + check 500
  CHECK(h["on_down"] == "shutdown-sessions");
  CHECK(h["shutdown_spread_ms"] == 0);
  CHECK(h["slowstart_ms"] == 30000);
  CHECK(note_at(r, 7) == nullptr);  // tcp-check connect
  REQUIRE(note_at(r, 8, "fixed check client id"));
  CHECK(note_at(r, 9) == nullptr);   // expect CONNACK 0: exact
  CHECK(note_at(r, 10) == nullptr);  // DISCONNECT
}

TEST_CASE("a CONNECT with a wrong Remaining Length is repaired and reported") {
  // Declares 0x16 (22) remaining bytes but carries 12: "...00 04 MQTT 04 02 00 3c 00 00".
  Result r = tr(kFront + R"(
backend brokers
    option tcp-check
    tcp-check send-binary 101600044d5154540402003c0000
    tcp-check expect binary 2002
    server b1 127.0.0.1:1884 check
)");
  INFO(dump(r));
  REQUIRE(note_at(r, 7, "Remaining Length is wrong"));
  REQUIRE(note_at(r, 8, "refusals included"));
  CHECK(r.config["health"]["accept_refusal"] == true);
  CHECK(r.config["health"]["keep_alive_s"] == 60);
  // Client id declared 8 bytes long, 9 given: the CONNECT is valid, one byte follows it.
  Result extra = tr(kFront +
                    "backend brokers\n    option tcp-check\n"
                    "    tcp-check send-binary 101400044d5154540402003c0008686170726f78796863\n"
                    "    server b1 127.0.0.1:1884 check\n");
  INFO(dump(extra));
  REQUIRE(note_at(extra, 6, "1 byte(s) follow the CONNECT"));
  CHECK(extra.config["health"]["client_id_prefix"] == "haproxyh");
  Result bad = tr(kFront +
                  "backend brokers\n    option tcp-check\n    tcp-check send-binary 10zz\n"
                  "    server b1 127.0.0.1:1884 check\n");
  CHECK(bad.exit_code == 2);
  CHECK(note_at(bad, 6, "not hex"));
}

TEST_CASE("server options: backup, weight 0, disabled, PROXY, unknowns") {
  Result r = tr(kFront + R"(
backend brokers
    default-server send-proxy-v2 maxconn 1000
    server b1 127.0.0.1:1884 disabled
    server b2 127.0.0.1:1885 weight 0 no-send-proxy-v2
    server b3 127.0.0.1:1886 backup send-proxy
    server b4 127.0.0.1:1887 weight 300
)");
  INFO(dump(r));
  const auto& b = r.config["backends"];
  CHECK(b[0]["admin"] == "maint");
  CHECK(b[0]["proxy_protocol"] == "v2");
  CHECK(b[1]["admin"] == "drain");
  CHECK_FALSE(b[1].contains("proxy_protocol"));
  CHECK(b[2]["admin"] == "drain");
  CHECK(b[2]["proxy_protocol"] == "v1");
  CHECK(b[3]["weight"] == 256);
  REQUIRE(note_at(r, 6, "maxconn 1000"));  // reported once, on the default-server line
  size_t on_default = 0;
  for (const auto& n : r.notes) on_default += n.line == 6;
  CHECK(on_default == 1);
  CHECK(note_at(r, 8, "weight 0"));
  CHECK(note_at(r, 9, "backup"));
  CHECK(note_at(r, 10, "outside mqttlb's range"));
}

TEST_CASE("a server without a port uses the listener's; use_backend becomes a route") {
  Result r = tr(R"(frontend mqtt
    bind 127.0.0.1:1883
    acl is_iot req.payload(0,0),mqtt_field_value(connect,client_identifier) -m beg iot-
    use_backend iot if is_iot
    default_backend brokers
backend brokers
    server b1 127.0.0.1
backend iot
    server i1 127.0.0.1:2883
)");
  INFO(dump(r));
  CHECK(r.config["backends"][0]["address"] == "127.0.0.1:1883");
  CHECK(r.config["backends"][1]["address"] == "127.0.0.1:2883");
  CHECK(r.config["routes"] ==
        nlohmann::ordered_json::parse(
            R"([{"match": {"client_id_prefix": "iot-"}, "backends": ["i1"]}])"));
  CHECK_FALSE(note_at(r, 3));  // the ACL translates exactly
  // The guides' mistake: without inspect-delay HAProxy never saw the client id here.
  REQUIRE(note_at(r, 4, "never matched"));
  CHECK(r.exit_code == 1);
}

TEST_CASE("frontends sharing one pool become listeners; a different pool is routed by listener") {
  Result r = tr(R"(defaults
    mode tcp
    timeout connect 2s
frontend plain
    bind :1883
    default_backend a
frontend other
    bind :1993
    default_backend b
frontend again
    bind :2883
    default_backend c
backend a
    server s1 127.0.0.1:1884
backend b
    server t1 127.0.0.1:9999
backend c
    server s1 127.0.0.1:1884
)");
  INFO(dump(r));
  REQUIRE(r.config["listeners"].size() == 3);
  CHECK(r.config["listeners"][1]["name"] == "other");
  CHECK(r.config["listeners"][2]["name"] == "again");
  CHECK(r.config["balance"]["backend_connect_timeout_ms"] == 2000);
  // b's servers are backends of their own, reached only through `other`.
  CHECK(r.config["backends"].size() == 2);
  CHECK(r.config["backends"][1]["name"] == "t1");
  CHECK(r.config["routes"] ==
        nlohmann::ordered_json::parse(R"([{"match": {"listener": "other"}, "backends": ["t1"]}])"));
  CHECK(r.exit_code == 0);
}

TEST_CASE("idle timeouts, maxconn, nbthread, hard-stop-after") {
  Result r = tr(R"(global
    maxconn 50000
    nbthread 4
    hard-stop-after 30s
defaults
    timeout client 1h
    timeout server 1h
    timeout tunnel 2h
frontend mqtt
    bind 127.0.0.1:1883
    maxconn 20000
    default_backend brokers
backend brokers
    server b1 127.0.0.1:1884
)");
  INFO(dump(r));
  CHECK(r.config["workers"] == 4);
  CHECK(r.config["limits"]["max_connections"] == 20000);
  CHECK(r.config["limits"]["shutdown_grace_ms"] == 30000);
  CHECK(r.config["limits"]["keepalive0_idle_cap_s"] == 7200);
  REQUIRE(note_at(r, 8, "silent for 2 h"));
  // With `timeout tunnel`, HAProxy too ignores client/server once connected.
  CHECK(note_at(r, 6) == nullptr);
  CHECK(note_at(r, 7) == nullptr);
  REQUIRE(note_at(r, 11, "per frontend"));
}

TEST_CASE("without timeout tunnel the smaller of client and server is the idle cap") {
  Result r = tr(R"(defaults
    timeout client 90s
    timeout server 30s
)" + kFront + "backend brokers\n    server b1 127.0.0.1:1884\n");
  INFO(dump(r));
  CHECK(r.config["limits"]["keepalive0_idle_cap_s"] == 30);
  REQUIRE(note_at(r, 3, "cut idle clients with keep-alive 60 s"));
  REQUIRE(note_at(r, 2, "one idle rule"));
}

TEST_CASE("lexical problems: look-alikes, line continuation, malformed lines") {
  Result r =
      tr("frontend mqtt\n    bind *\uFF1A1883\n    default_backend brokers\n"
         "backend brokers\n    server b1 127.0.0.1:1884 \\\n        weight 3\n");
  INFO(dump(r));
  CHECK(r.config["listeners"][0]["bind"] == "0.0.0.0:1883");
  CHECK(r.config["backends"][0]["weight"] == 3);
  REQUIRE(note_at(r, 2, "U+FF1A"));
  REQUIRE(note_at(r, 5, "no line continuation"));
  // Look-alikes in a comment change nothing HAProxy reads: no note.
  Result comment =
      tr(kFront + "# \uFF08copied\uFF09\nbackend brokers\n    server b1 127.0.0.1:1884\n");
  CHECK(comment.exit_code == 0);
  Result bad = tr(kFront + "backend brokers\n    server b1 \"127.0.0.1:1884\n");
  CHECK(bad.exit_code == 2);
  CHECK(bad.config.is_null());
  REQUIRE(note_at(bad, 5, "unmatched double quote"));
}

TEST_CASE("TLS listeners reference the PEM for both cert and key, or its .key file") {
  const std::string pem = "-----BEGIN CERTIFICATE-----\n...\n-----BEGIN PRIVATE KEY-----\n";
  Result r = tr(R"(global
    crt-base /etc/haproxy/certs
frontend mqtts
    bind :8883 ssl crt both.pem ca-file /etc/ca.pem verify required crl-file /etc/crl.pem alpn mqtt
    bind :8884 ssl crt /etc/split.pem
    default_backend brokers
backend brokers
    server b1 127.0.0.1:1884
)",
                {{"/etc/haproxy/certs/both.pem", pem},
                 {"/etc/split.pem", "-----BEGIN CERTIFICATE-----\n"},
                 {"/etc/split.pem.key", "-----BEGIN EC PRIVATE KEY-----\n"}},
                false);
  INFO(dump(r));
  const auto& l = r.config["listeners"];
  CHECK(l[0]["tls"]["cert"] == "/etc/haproxy/certs/both.pem");
  CHECK(l[0]["tls"]["key"] == "/etc/haproxy/certs/both.pem");
  CHECK(l[0]["tls"]["ca"] == "/etc/ca.pem");
  CHECK(l[0]["tls"]["verify_client"] == "required");
  CHECK(l[1]["name"] == "mqtts-8884");
  CHECK(l[1]["tls"]["key"] == "/etc/split.pem.key");
  REQUIRE(note_at(r, 4, "revoked client certificates are accepted"));
  REQUIRE(note_at(r, 4, "alpn mqtt"));
  Result missing = tr(kFront + "    bind :8883 ssl crt /nope.pem\n" +
                          "backend brokers\n    server b1 127.0.0.1:1884\n",
                      {}, false);
  CHECK(missing.exit_code == 2);
  REQUIRE(note_at(missing, 4, "cannot read certificate '/nope.pem'"));
}

TEST_CASE("TLS passthrough and accept-proxy cannot be translated") {
  Result pass = tr(R"(frontend sni
    bind :8883
    tcp-request inspect-delay 5s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend brokers if { req.ssl_sni -i mqtt.example.com }
backend brokers
    server b1 127.0.0.1:8884
)");
  INFO(dump(pass));
  CHECK(pass.exit_code == 2);  // its only listener is gone
  REQUIRE(note_at(pass, 2, "TLS passthrough"));
  Result proxy = tr(R"(frontend mqtt
    bind :1883 accept-proxy
    default_backend brokers
backend brokers
    server b1 127.0.0.1:1884
)");
  CHECK(proxy.exit_code == 2);
  REQUIRE(note_at(proxy, 2, "every connection"));
}

TEST_CASE("the Prometheus exporter frontend becomes metrics.bind; other sections are reported") {
  Result r = tr(kFront + R"(
backend brokers
    server b1 127.0.0.1:1884
frontend prometheus
    bind 127.0.0.1:8405
    mode http
    http-request use-service prometheus-exporter if { path /metrics }
listen stats
    bind :8404
    mode http
    stats enable
peers mypeers
    peer lb1 10.0.0.1:10000
)");
  INFO(dump(r));
  CHECK(r.config["metrics"]["bind"] == "127.0.0.1:8405");
  REQUIRE(note_at(r, 10, "mqttlb_*"));
  REQUIRE(note_at(r, 11, "mode http"));
  REQUIRE(note_at(r, 15, "peers"));
}

TEST_CASE("output that fails validation is an error at the HAProxy line") {
  Result r = tr(kFront + R"(
backend brokers
    server b1 127.0.0.1:1884
    server b1 127.0.0.1:1885
)");
  INFO(dump(r));
  CHECK(r.exit_code == 2);
  REQUIRE(note_at(r, 7, "duplicate backend name"));
}

TEST_CASE("text that is not UTF-8 cannot go into JSON: an error at its line, no crash") {
  Result r = tr(kFront +
                "backend brokers\n    server s\xff"
                "1 127.0.0.1:1884\n");
  INFO(dump(r));
  CHECK(r.exit_code == 2);
  REQUIRE(note_at(r, 5, "not valid UTF-8"));
  // In a comment it does not matter.
  Result ok = tr(kFront + "# caf\xe9\nbackend brokers\n    server s1 127.0.0.1:1884\n");
  CHECK(ok.exit_code == 0);
}
