// libFuzzer target: the HTTP side of MQTT over WebSocket (net/ws_http.hpp).
// The input is fed to a request parser and to a response parser, whole and
// cut at input-chosen points. Properties:
//  - the parsers never take more than they are given, nor more than their limit;
//  - the outcome (status, error, every header kept) does not depend on the cut;
//  - a complete request gets an answer: 101 with the accept key of its key,
//    or an error page that never echoes the request target.
#include <string>

#include "fuzz_check.hpp"
#include "net/ws_http.hpp"

namespace {

using net::ws::HeadParser;

struct Run {
  HeadParser::Status st = HeadParser::Status::NeedMore;
  size_t used = 0;
};

Run feed(HeadParser& p, const uint8_t* data, size_t size, unsigned long long cuts, size_t max) {
  Run r;
  size_t pos = 0;
  while (pos < size && r.st == HeadParser::Status::NeedMore) {
    size_t n = cuts ? 1 + (cuts % 97) : size - pos;
    cuts = cuts * 6364136223846793005ull + 1442695040888963407ull;
    if (n > size - pos) n = size - pos;
    size_t used = 0;
    r.st = p.feed(data + pos, n, used);
    FUZZ_CHECK(used <= n);
    pos += used;
    if (used < n) break;  // Done or Error: the rest is not HTTP
  }
  r.used = pos;
  FUZZ_CHECK(r.used <= max);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t max = 512 + fuzz_hash(data, size) % 4096;
  const unsigned long long cuts = fuzz_hash(data, size) | 1;
  for (auto kind : {HeadParser::Kind::Request, HeadParser::Kind::Response}) {
    HeadParser whole(kind, max), split(kind, max);
    Run a = feed(whole, data, size, 0, max);
    Run b = feed(split, data, size, cuts, max);
    FUZZ_CHECK(a.st == b.st);
    if (a.st == HeadParser::Status::Error) FUZZ_CHECK(whole.error() == split.error());
    if (a.st != HeadParser::Status::Done) continue;
    FUZZ_CHECK(a.used == b.used);
    if (kind == HeadParser::Kind::Response) {
      FUZZ_CHECK(whole.response().status == split.response().status);
      FUZZ_CHECK(whole.response().accept == split.response().accept);
      net::ws::check_response(whole.response(), "dGhlIHNhbXBsZSBub25jZQ==", "mqtt");
      continue;
    }
    const net::ws::Request& r = whole.request();
    const net::ws::Request& s = split.request();
    FUZZ_CHECK(r.method == s.method && r.target == s.target && r.host == s.host &&
               r.upgrade == s.upgrade && r.connection == s.connection && r.key == s.key &&
               r.version == s.version && r.protocols == s.protocols);
    net::ws::Answer ans = net::ws::decide(r, "/mqtt");
    std::string resp = net::ws::response_for(ans, r);
    FUZZ_CHECK(resp.rfind("HTTP/1.1 ", 0) == 0);
    if (ans.result == net::ws::Result::Ok) {
      FUZZ_CHECK(ans.subprotocol == "mqtt" || ans.subprotocol == "mqttv3.1");
      FUZZ_CHECK(resp.find("Sec-WebSocket-Accept: " + net::ws::accept_key(r.key) + "\r\n") !=
                 std::string::npos);
    } else {
      // Made of fixed text only: nothing of the request is echoed.
      FUZZ_CHECK(resp == net::ws::error_response(ans.status, ans.reason));
    }
  }
  return 0;
}
