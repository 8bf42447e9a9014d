// The HTTP side of MQTT over WebSocket (RFC 6455 section 4, MQTT 5.0 / 3.1.1
// section 6): the Upgrade request a server reads, the answer it gives, and the
// request/response pair of the client role (mqttlb toward a broker's
// WebSocket port). Pure: bytes in, a result out; no I/O, no globals beyond
// OpenSSL's digest. The HTTP grammar itself is http-parser's (Debian's
// libhttp-parser); this file only keeps the few headers the handshake needs.
// Fuzzed by tests/fuzz/fuzz_ws_http.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace net::ws {

// How a WebSocket handshake ended (the `result` label of
// mqttlb_websocket_handshakes_total, docs/metrics.md).
enum class Result : uint8_t {
  Ok,
  BadRequest,       // 400: not HTTP, not GET/1.1, no Host, no valid Sec-WebSocket-Key
  NotFound,         // 404: another path than the listener's websocket.path
  UpgradeRequired,  // 426: no "Upgrade: websocket" / "Connection: Upgrade", or version != 13
  BadSubprotocol,   // 400: neither "mqtt" nor "mqttv3.1" offered
  TooLarge,         // 431: the request is longer than websocket.max_handshake_bytes
  Timeout,          // no complete request within limits.connect_timeout_ms
  Closed,           // the peer closed before the handshake completed
  BadResponse,      // client role: the broker did not answer 101 with the right headers
  Count
};
const char* to_string(Result r);

// The parts of a request the handshake needs. Header values as received
// (repeated headers joined with ", ").
struct Request {
  std::string method, target;  // target: path and query as sent
  int http_major = 0, http_minor = 0;
  std::string host, upgrade, connection, key, version, protocols, forwarded_for;
  std::string path() const;  // target without the query
};

struct Response {
  int status = 0;
  std::string upgrade, connection, accept, protocol;
};

// Incremental parser of one HTTP message head (request or response).
// Bounded: more than max_bytes before the end of the head is TooLarge; a
// request with a body is BadRequest. Not movable (http-parser points back at it).
class HeadParser {
 public:
  enum class Status : uint8_t { NeedMore, Done, Error };
  enum class Kind : uint8_t { Request, Response };
  HeadParser(Kind kind, size_t max_bytes);
  ~HeadParser();
  HeadParser(const HeadParser&) = delete;
  HeadParser& operator=(const HeadParser&) = delete;

  // Feeds bytes; `used` is how many belong to the head (the rest, once Done,
  // are WebSocket frames that followed in the same read).
  Status feed(const uint8_t* data, size_t len, size_t& used);
  Result error() const { return error_; }  // Error: BadRequest or TooLarge
  const Request& request() const { return req_; }
  const Response& response() const { return resp_; }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  Kind kind_;
  size_t max_;
  size_t seen_ = 0;
  Status status_ = Status::NeedMore;
  Result error_ = Result::Ok;
  Request req_;
  Response resp_;
};

// The answer to a complete request, for a listener whose websocket.path is `path`.
struct Answer {
  Result result = Result::Ok;
  int status = 101;
  std::string subprotocol;  // Ok: "mqtt" or "mqttv3.1"
  const char* reason = "";  // the error page's text
};
Answer decide(const Request& r, std::string_view path);
// The HTTP response for `a`: 101 with Sec-WebSocket-Accept and -Protocol, or
// an error page (text/plain, Connection: close) that never echoes the request.
std::string response_for(const Answer& a, const Request& r);
std::string error_response(int status, const char* reason);
// base64(SHA-1(key + the RFC 6455 GUID)).
std::string accept_key(std::string_view key);
// True when `key` is base64 of exactly 16 bytes (RFC 6455 4.2.1 item 5).
bool valid_key(std::string_view key);
// True when the comma-separated `list` holds `token` (case-insensitive).
bool has_token(std::string_view list, std::string_view token);

// Client role. A fresh Sec-WebSocket-Key (16 random bytes, base64).
std::string new_key();
std::string client_request(std::string_view host, std::string_view target,
                           std::string_view protocol, std::string_view key,
                           const std::vector<std::pair<std::string, std::string>>& headers);
// Ok when `r` accepts `key` for `protocol` (RFC 6455 4.1, the client's checks).
Result check_response(const Response& r, std::string_view key, std::string_view protocol);

}  // namespace net::ws
