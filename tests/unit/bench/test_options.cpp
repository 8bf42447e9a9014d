// mqttlb-bench's command line: flags in the mosquitto_pub / emqtt-bench style.
#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "bench/options.hpp"

using bench::Mode;
using bench::parse_args;

namespace {
bench::ParseResult parse(std::initializer_list<const char*> args) {
  std::vector<const char*> v{"mqttlb-bench"};
  v.insert(v.end(), args.begin(), args.end());
  return parse_args(static_cast<int>(v.size()), v.data());
}
}  // namespace

TEST_CASE("the README example parses") {
  auto r = parse({"conn", "-h", "127.0.0.1", "-p", "1883", "-c", "5000", "--hold", "30", "--json"});
  REQUIRE(r.ok);
  CHECK(r.opts.mode == Mode::Conn);
  CHECK(r.opts.host == "127.0.0.1");
  CHECK(r.opts.port == 1883);
  CHECK(r.opts.count == 5000);
  CHECK(r.opts.hold == 30);
  CHECK(r.opts.json);
}

TEST_CASE("short and long forms, --flag=value") {
  auto r = parse({"pubsub",
                  "--host=broker",
                  "--port",
                  "1884",
                  "-c",
                  "10",
                  "-S",
                  "3",
                  "-q",
                  "2",
                  "-s",
                  "1024",
                  "-r",
                  "12.5",
                  "-w",
                  "32",
                  "-t",
                  "a/%i/b",
                  "-d",
                  "7",
                  "--connect-rate",
                  "500",
                  "--source-addresses",
                  "127.0.0.1,127.0.0.2",
                  "-k",
                  "30",
                  "--quiet"});
  REQUIRE(r.ok);
  const auto& o = r.opts;
  CHECK(o.mode == Mode::PubSub);
  CHECK(o.host == "broker");
  CHECK(o.port == 1884);
  CHECK(o.count == 10);
  CHECK(o.subscribers == 3);
  CHECK(o.qos == 2);
  CHECK(o.size == 1024);
  CHECK(o.rate == 12.5);
  CHECK(o.window == 32);
  CHECK(o.topic == "a/%i/b");
  CHECK(o.duration == 7);
  CHECK(o.connect_rate == 500);
  CHECK(o.source_addresses == std::vector<std::string>{"127.0.0.1", "127.0.0.2"});
  CHECK(o.keepalive == 30);
  CHECK(o.quiet);
}

TEST_CASE("protocol version spellings") {
  CHECK(parse({"conn", "-V", "3"}).opts.version == 3);
  CHECK(parse({"conn", "-V", "4"}).opts.version == 4);
  CHECK(parse({"conn", "-V", "311"}).opts.version == 4);
  CHECK(parse({"conn", "-V", "5"}).opts.version == 5);
  CHECK(parse({"conn"}).opts.version == 4);
  auto bad = parse({"conn", "-V", "6"});
  CHECK_FALSE(bad.ok);
  CHECK(bad.error.find("protocol version") != std::string::npos);
}

TEST_CASE("invalid values are rejected with the flag named") {
  struct Case {
    std::initializer_list<const char*> args;
    const char* needle;
  };
  for (const Case& c :
       {Case{{"pub", "-q", "3"}, "-q"}, Case{{"pub", "-s", "15"}, ">= 16"},
        Case{{"pub", "-p", "0"}, "port"}, Case{{"pub", "-p", "70000"}, "port"},
        Case{{"pub", "-c", "0"}, "count"}, Case{{"pub", "-c", "abc"}, "count"},
        Case{{"pub", "-r", "-1"}, "rate"}, Case{{"pub", "-w", "0"}, "window"},
        Case{{"pub", "-d", "x"}, "duration"}, Case{{"pub", "--bogus"}, "unknown option"},
        Case{{"pub", "-c"}, "missing value"}, Case{{"pub", "-t", "a/+"}, "wildcards"},
        Case{{"conn", "--resume"}, "--tls"}, Case{{"frobnicate"}, "unknown mode"}}) {
    auto r = parse(c.args);
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(r.error.find(c.needle) != std::string::npos, r.error);
  }
  auto none = parse({});
  CHECK_FALSE(none.ok);
}

TEST_CASE("--help anywhere asks for usage") {
  CHECK(parse({"--help"}).opts.help);
  CHECK(parse({"pub", "--help"}).opts.help);
  CHECK(bench::usage().find("--protocol-version") != std::string::npos);
}

TEST_CASE("subscribers may use wildcards, publishers may not") {
  CHECK(parse({"sub", "-t", "bench/#"}).ok);
  CHECK_FALSE(parse({"pubsub", "-t", "bench/#"}).ok);
}

TEST_CASE("topic %i expands to the client index") {
  CHECK(bench::expand_topic("bench/%i", 7) == "bench/7");
  CHECK(bench::expand_topic("%i/x/%i", 12) == "12/x/12");
  CHECK(bench::expand_topic("plain", 3) == "plain");
  CHECK(bench::expand_topic("100%", 3) == "100%");
}
