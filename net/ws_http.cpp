#include "net/ws_http.hpp"

#include <http_parser.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cctype>
#include <climits>
#include <cstring>

namespace net::ws {

namespace {

constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 section 1.3

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string base64(const uint8_t* p, size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  int k = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(k < 0 ? 0 : static_cast<size_t>(k));
  return out;
}

}  // namespace

const char* to_string(Result r) {
  switch (r) {
    case Result::Ok:
      return "ok";
    case Result::BadRequest:
      return "bad_request";
    case Result::NotFound:
      return "not_found";
    case Result::UpgradeRequired:
      return "upgrade_required";
    case Result::BadSubprotocol:
      return "bad_subprotocol";
    case Result::TooLarge:
      return "too_large";
    case Result::Timeout:
      return "timeout";
    case Result::Closed:
      return "closed";
    case Result::BadResponse:
      return "bad_response";
    default:
      return "other";
  }
}

std::string Request::path() const {
  return target.substr(0, target.find('?'));
}

// ---- HeadParser ----------------------------------------------------------------

struct HeadParser::Impl {
  http_parser p{};
  http_parser_settings s{};
  HeadParser* owner = nullptr;
  std::string field, value;
  bool in_value = false;
  bool done = false;
  bool body = false;  // the request announced a body: refused

  void commit() {
    if (!in_value) return;
    std::string* dst = nullptr;
    if (owner->kind_ == Kind::Request) {
      Request& r = owner->req_;
      if (iequals(field, "host")) dst = &r.host;
      if (iequals(field, "upgrade")) dst = &r.upgrade;
      if (iequals(field, "connection")) dst = &r.connection;
      if (iequals(field, "sec-websocket-key")) dst = &r.key;
      if (iequals(field, "sec-websocket-version")) dst = &r.version;
      if (iequals(field, "sec-websocket-protocol")) dst = &r.protocols;
      if (iequals(field, "x-forwarded-for")) dst = &r.forwarded_for;
    } else {
      Response& r = owner->resp_;
      if (iequals(field, "upgrade")) dst = &r.upgrade;
      if (iequals(field, "connection")) dst = &r.connection;
      if (iequals(field, "sec-websocket-accept")) dst = &r.accept;
      if (iequals(field, "sec-websocket-protocol")) dst = &r.protocol;
    }
    if (dst) {
      std::string_view v = trim(value);
      if (!dst->empty()) *dst += ", ";
      dst->append(v.data(), v.size());
    }
    field.clear();
    value.clear();
    in_value = false;
  }

  static Impl* of(http_parser* p) { return static_cast<Impl*>(p->data); }
  static int on_url(http_parser* p, const char* at, size_t n) {
    of(p)->owner->req_.target.append(at, n);
    return 0;
  }
  static int on_field(http_parser* p, const char* at, size_t n) {
    Impl* i = of(p);
    i->commit();
    i->field.append(at, n);
    return 0;
  }
  static int on_value(http_parser* p, const char* at, size_t n) {
    Impl* i = of(p);
    i->in_value = true;
    i->value.append(at, n);
    return 0;
  }
  static int on_headers_complete(http_parser* p) {
    Impl* i = of(p);
    i->commit();
    if (i->owner->kind_ == Kind::Request &&
        ((p->content_length > 0 && p->content_length != ULLONG_MAX) || (p->flags & F_CHUNKED))) {
      i->body = true;
      http_parser_pause(p, 1);
    }
    return 0;
  }
  static int on_message_complete(http_parser* p) {
    of(p)->done = true;
    http_parser_pause(p, 1);  // the bytes after the head are not HTTP
    return 0;
  }
};

HeadParser::HeadParser(Kind kind, size_t max_bytes)
    : impl_(std::make_unique<Impl>()), kind_(kind), max_(max_bytes) {
  http_parser_init(&impl_->p, kind == Kind::Request ? HTTP_REQUEST : HTTP_RESPONSE);
  impl_->p.data = impl_.get();
  impl_->owner = this;
  http_parser_settings& s = impl_->s;
  http_parser_settings_init(&s);
  s.on_url = Impl::on_url;
  s.on_header_field = Impl::on_field;
  s.on_header_value = Impl::on_value;
  s.on_headers_complete = Impl::on_headers_complete;
  s.on_message_complete = Impl::on_message_complete;
}

HeadParser::~HeadParser() = default;

HeadParser::Status HeadParser::feed(const uint8_t* data, size_t len, size_t& used) {
  used = 0;
  if (status_ != Status::NeedMore) return status_;
  // Never more than max_ bytes reach the parser: the limit holds whatever
  // the segmentation.
  size_t room = max_ > seen_ ? max_ - seen_ : 0;
  size_t n = len < room ? len : room;
  size_t k =
      n == 0 ? 0
             : http_parser_execute(&impl_->p, &impl_->s, reinterpret_cast<const char*>(data), n);
  seen_ += k;
  used = k;
  if (impl_->body) {
    error_ = Result::BadRequest;
    return status_ = Status::Error;
  }
  if (impl_->done) {
    if (kind_ == Kind::Request) {
      req_.method = http_method_str(static_cast<http_method>(impl_->p.method));
      req_.http_major = impl_->p.http_major;
      req_.http_minor = impl_->p.http_minor;
    } else {
      resp_.status = static_cast<int>(impl_->p.status_code);
    }
    impl_.reset();  // nothing kept but the few headers
    return status_ = Status::Done;
  }
  if (HTTP_PARSER_ERRNO(&impl_->p) != HPE_OK) {
    error_ = Result::BadRequest;
    return status_ = Status::Error;
  }
  if (seen_ >= max_) {
    error_ = Result::TooLarge;
    return status_ = Status::Error;
  }
  return Status::NeedMore;
}

// ---- the server's answer ------------------------------------------------------------

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool valid_key(std::string_view key) {
  // 16 bytes in base64: 22 symbols and "==".
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  for (size_t i = 0; i < 22; ++i) {
    unsigned char c = static_cast<unsigned char>(key[i]);
    if (!std::isalnum(c) && c != '+' && c != '/') return false;
  }
  return true;
}

std::string accept_key(std::string_view key) {
  std::string in(key);
  in += kGuid;
  uint8_t d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const uint8_t*>(in.data()), in.size(), d);
  return base64(d, sizeof d);
}

Answer decide(const Request& r, std::string_view path) {
  Answer a;
  auto fail = [&](Result res, int status, const char* reason) {
    a.result = res;
    a.status = status;
    a.reason = reason;
    return a;
  };
  if (r.method != "GET")
    return fail(Result::BadRequest, 405, "a WebSocket upgrade is a GET request");
  if (r.http_major != 1 || r.http_minor < 1)
    return fail(Result::BadRequest, 400, "a WebSocket upgrade needs HTTP/1.1");
  if (r.host.empty()) return fail(Result::BadRequest, 400, "the request has no Host header");
  if (r.path() != path) return fail(Result::NotFound, 404, "no MQTT WebSocket endpoint here");
  if (!has_token(r.upgrade, "websocket") || !has_token(r.connection, "upgrade"))
    return fail(Result::UpgradeRequired, 426,
                "this is an MQTT WebSocket endpoint: send Upgrade: websocket and "
                "Connection: Upgrade");
  if (trim(r.version) != "13")
    return fail(Result::UpgradeRequired, 426, "only WebSocket version 13 is supported");
  if (!valid_key(trim(r.key)))
    return fail(Result::BadRequest, 400, "missing or invalid Sec-WebSocket-Key");
  // [MQTT-6.0.0-3/4]: the client offers "mqtt"; MQTT 3.1 clients "mqttv3.1".
  if (has_token(r.protocols, "mqtt"))
    a.subprotocol = "mqtt";
  else if (has_token(r.protocols, "mqttv3.1"))
    a.subprotocol = "mqttv3.1";
  else
    return fail(Result::BadSubprotocol, 400,
                "MQTT over WebSocket needs the subprotocol \"mqtt\" in Sec-WebSocket-Protocol");
  return a;
}

std::string error_response(int status, const char* reason) {
  const char* text = status == 404   ? "Not Found"
                     : status == 405 ? "Method Not Allowed"
                     : status == 426 ? "Upgrade Required"
                     : status == 431 ? "Request Header Fields Too Large"
                                     : "Bad Request";
  std::string body = std::string("mqttlb: ") + reason + "\n";
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + text +
                    "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: close\r\n";
  if (status == 405) out += "Allow: GET\r\n";
  if (status == 426) out += "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
  out += "\r\n";
  out += body;
  return out;
}

std::string response_for(const Answer& a, const Request& r) {
  if (a.result != Result::Ok) return error_response(a.status, a.reason);
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " +
         accept_key(trim(r.key)) + "\r\nSec-WebSocket-Protocol: " + a.subprotocol + "\r\n\r\n";
}

// ---- client role ---------------------------------------------------------------------

std::string new_key() {
  uint8_t b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    // Only uniqueness matters for the key (RFC 6455 4.1: a nonce), not secrecy.
    static thread_local uint64_t n = 0x9E3779B97F4A7C15ull;
    for (auto& x : b) x = static_cast<uint8_t>((n = n * 6364136223846793005ull + 1) >> 56);
  }
  return base64(b, sizeof b);
}

std::string client_request(std::string_view host, std::string_view target,
                           std::string_view protocol, std::string_view key,
                           const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string out = "GET ";
  out += target.empty() ? std::string_view("/") : target;
  out += " HTTP/1.1\r\nHost: ";
  out += host;
  out += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
  out += key;
  out += "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ";
  out += protocol;
  out += "\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  return out;
}

Result check_response(const Response& r, std::string_view key, std::string_view protocol) {
  if (r.status != 101 || !has_token(r.upgrade, "websocket") ||
      !has_token(r.connection, "upgrade") || trim(r.accept) != accept_key(key))
    return Result::BadResponse;
  // No subprotocol in the answer is accepted; another one than offered is not.
  if (!r.protocol.empty() && !iequals(trim(r.protocol), protocol)) return Result::BadResponse;
  return Result::Ok;
}

}  // namespace net::ws
