// MQTT over WebSocket as a Transport: wraps the client's transport (TCP or
// TLS) or a broker connection, and presents the MQTT byte stream to its user
// exactly like a plain connection would, so the session's stages (peek,
// place, pump: affinity, refusal CONNACKs, evacuation DISCONNECTs) need no
// change. Framing and HTTP: net/ws_frame.hpp, net/ws_http.hpp.
//
// Server role (a listener with "websocket"): reads the HTTP Upgrade request
// (at most max_handshake_bytes), answers 101 with the negotiated subprotocol
// ("mqtt", or "mqttv3.1"), or an error page (400/404/405/426/431) after which
// the sink hears on_error(kWsFailed) and the inner transport is half-closed
// (the user lingers, reading and discarding, then closes). Then it decodes the
// client's frames: binary data (fragmented or not, split anywhere) goes to the
// sink as bytes; a Ping is answered with a Pong; a Close ends the stream
// (on_eof after every byte before it; our Close goes with shutdown() or
// close()); a protocol violation sends a Close with its code and reports
// on_error(kWsFailed). Writes become one unmasked binary frame each (split
// at kMaxFrame).
//
// Client role (to_backend "websocket"): once the inner transport connected
// (TLS: once its handshake completed) it sends the preamble (the PROXY header,
// raw, plain TCP only) and the Upgrade request, checks the 101 (accept key,
// subprotocol) and only then reports on_connect(this, 0); a wrong answer is
// on_connect(this, kWsFailed). Writes become masked binary frames.
//
// Reading follows the Transport contract (net/transport.hpp): after
// stop_read() nothing reaches the sink; what was already received stays
// undecoded in a backlog of at most one inner read and the inner read is
// stopped; start_read() delivers it (possibly from inside start_read()).
// Decoded bytes are handed over in runs of up to kOut bytes (one per inner
// read for ordinary frames). pending() is the inner transport's.
//
// Ownership: a heap object that never moves, one loop thread. It owns the
// inner transport (and is its sink) until that one's on_closed; then it
// reports on_closed(this) as its last action (the sink may delete it). An idle
// connection holds no buffer: the handshake parser is freed once the
// handshake ended, the frame decoder holds wslay's context only mid-frame,
// and the backlog is empty whenever the user reads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "net/transport.hpp"
#include "net/ws_frame.hpp"
#include "net/ws_http.hpp"

namespace net {

// Handshake outcomes and protocol errors, for metrics and logs (loop thread).
class WsObserver {
 public:
  virtual ~WsObserver() = default;
  // role: Server (a client's handshake with us) or Client (ours with a broker).
  virtual void on_ws_handshake(ws::Role role, ws::Result r) = 0;
  virtual void on_ws_protocol_error(ws::Role role, ws::FrameError e) = 0;
};

struct WsServerOptions {
  std::string path = "/mqtt";
  size_t max_handshake_bytes = 8192;
};

struct WsClientOptions {
  std::string host;                                          // the Host header
  std::string target;                                        // path and query of the request
  std::string protocol;                                      // the subprotocol offered
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. X-Forwarded-For
  std::vector<uint8_t> preamble;                             // raw bytes before the request
  size_t max_response_bytes = 8192;
};

class WsTransport final : public Transport, private TransportSink {
 public:
  // Reported through on_error / on_connect when the WebSocket layer failed
  // (distinct from TlsTransport::kTlsFailed, which passes through unchanged).
  static constexpr int kWsFailed = UV_EILSEQ;
  static constexpr size_t kMaxFrame = 64 * 1024;  // payload per frame we send
  static constexpr size_t kOut = 64 * 1024;       // decoded bytes per on_read, at most

  // Server role. Takes ownership of `inner` and becomes its sink.
  WsTransport(Transport* inner, TransportSink* sink, WsServerOptions opts, WsObserver* obs);
  // Client role: `inner` is connecting (or will be); see above.
  WsTransport(Transport* inner, TransportSink* sink, WsClientOptions opts, WsObserver* obs);
  ~WsTransport() override;

  Transport* inner() { return inner_; }
  bool open() const { return state_ == State::Open; }
  // Server role, once open: what the client asked for.
  const std::string& target() const { return target_; }
  const std::string& subprotocol() const { return subprotocol_; }
  // The client's handshake did not complete in time (the user's deadline):
  // counted once as Result::Timeout.
  void count_timeout();
  // The code our Close frame carries (default kCloseNormal).
  void set_close_code(uint16_t code) { close_code_ = code; }
  // Nothing held (tests: idle connections hold no buffer).
  bool holds_buffers() const { return head_ != nullptr || !dec_.idle() || !backlog_.empty(); }

  // Transport
  void set_sink(TransportSink* sink) override { sink_ = sink; }
  void start_read() override;
  void stop_read() override;
  int write(const uint8_t* data, size_t len) override;
  size_t pending() const override { return inner_ ? inner_->pending() : 0; }
  void shutdown() override;
  void close(bool reset) override;
  bool closing() const override { return closing_; }
  std::string error_detail() const override;

 private:
  enum class State : uint8_t { Handshake, Refused, AwaitConnect, AwaitResponse, Open, Failed };

  // TransportSink, for the inner transport.
  void on_read(Transport* t, const uint8_t* data, size_t len) override;
  void on_eof(Transport* t) override;
  void on_error(Transport* t, int err) override;
  void on_connect(Transport* t, int status) override;
  void on_drained(Transport* t) override;
  void on_shutdown(Transport* t) override;
  void on_closed(Transport* t) override;

  void handshake_bytes(const uint8_t* data, size_t len);  // server: the request
  void response_bytes(const uint8_t* data, size_t len);   // client: the 101
  // Open: decodes the backlog and then `data` while the user reads, keeps the
  // rest, reports EOF after the last byte, and sets the inner read.
  void frames(const uint8_t* data, size_t len);
  int send_control(uint8_t opcode, const uint8_t* p, size_t len);
  void send_close(uint16_t code);
  void protocol_error(ws::FrameError e, uint16_t code);
  void count(ws::Result r);

  TransportSink* sink_;
  Transport* inner_;  // owned; deleted in on_closed
  WsObserver* obs_;
  ws::Role role_;
  State state_;
  WsServerOptions server_;
  WsClientOptions client_;
  std::unique_ptr<ws::HeadParser> head_;  // while handshaking
  std::string key_;                       // client role: our Sec-WebSocket-Key
  std::string target_, subprotocol_;
  ws::FrameDecoder dec_;
  std::vector<uint8_t> backlog_;  // undecoded bytes of one inner read (the user paused)
  std::string detail_;
  uint16_t close_code_ = ws::kCloseNormal;
  bool want_read_ = false;
  bool delivering_ = false;  // inside frames(): re-entrant calls only set flags
  bool inner_eof_ = false;
  bool eof_reported_ = false;
  bool close_sent_ = false;
  bool counted_ = false;
  bool got_bytes_ = false;  // server role: any request byte arrived
  bool closing_ = false;
};

}  // namespace net
