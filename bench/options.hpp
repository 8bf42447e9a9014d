// Command line of mqttlb-bench: parsed into Options by a pure function so the
// unit tests can check every flag without running anything.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bench {

enum class Mode : uint8_t { Conn, Pub, Sub, PubSub };

struct Options {
  Mode mode = Mode::Conn;
  std::string host = "127.0.0.1";
  uint16_t port = 1883;
  uint32_t count = 1;  // -c: connections (conn) or publishers (pub/pubsub) or subscribers (sub)
  uint32_t subscribers = 1;  // -S: subscribers in pubsub
  uint8_t version = 4;       // protocol level: 3 (3.1), 4 (3.1.1), 5
  uint8_t qos = 0;
  uint32_t size = 64;  // payload bytes, >= 16 (timestamp + sequence + publisher)
  double rate = 0;     // per publisher msgs/s; 0 = closed loop with `window`
  std::string topic = "bench/%i";
  uint32_t window = 16;        // in-flight messages per publisher (closed loop, QoS>0 ids)
  double duration = 10;        // seconds of publishing (pub/pubsub) or receiving (sub; 0 = forever)
  double hold = 0;             // seconds to hold connections open (conn)
  double connect_rate = 0;     // new connections per second; 0 = as fast as possible
  uint32_t max_pending = 128;  // connection attempts in progress at once
  double connect_timeout = 10;  // seconds for TCP connect + CONNACK
  uint16_t keepalive = 60;
  std::string client_prefix = "bench";  // client ids: PREFIX-ROLE-INDEX-PID
  std::vector<std::string> source_addresses;
  bool json = false;
  bool quiet = false;  // no progress line even on a terminal
  bool tls = false;
  std::string cafile;
  bool resume = false;
  bool help = false;
};

struct ParseResult {
  bool ok = true;
  std::string error;  // set when !ok
  Options opts;
};

// argv[0] is the program, argv[1] the subcommand.
ParseResult parse_args(int argc, const char* const* argv);
std::string usage();
const char* mode_name(Mode m);

// Expands %i in a topic pattern with the client index.
std::string expand_topic(const std::string& pattern, uint32_t index);

}  // namespace bench
