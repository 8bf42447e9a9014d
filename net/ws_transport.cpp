#include "net/ws_transport.hpp"

#include <cstring>
#include <memory>
#include <span>

namespace net {

namespace {

// Decoded payload lands here and goes to the sink inside the same call, so
// one buffer per loop thread serves every WebSocket connection of that loop.
// On the heap: a 64 KiB thread_local array would sit in every thread's static
// TLS block, carved from each thread's stack (the metrics server's threads
// have small ones).
uint8_t* out_buffer() {
  static thread_local std::unique_ptr<uint8_t[]> buf;
  if (!buf) buf = std::make_unique<uint8_t[]>(WsTransport::kOut);
  return buf.get();
}
// Frames being encoded; copied by the inner transport before write() returns.
thread_local std::vector<uint8_t> t_frame;

static_assert(WsTransport::kOut > 2 * ws::FrameDecoder::kMaxChunk);

}  // namespace

WsTransport::WsTransport(Transport* inner, TransportSink* sink, WsServerOptions opts,
                         WsObserver* obs)
    : sink_(sink),
      inner_(inner),
      obs_(obs),
      role_(ws::Role::Server),
      state_(State::Handshake),
      server_(std::move(opts)),
      head_(std::make_unique<ws::HeadParser>(ws::HeadParser::Kind::Request,
                                             server_.max_handshake_bytes)),
      dec_(ws::Role::Server) {
  inner_->set_sink(this);
}

WsTransport::WsTransport(Transport* inner, TransportSink* sink, WsClientOptions opts,
                         WsObserver* obs)
    : sink_(sink),
      inner_(inner),
      obs_(obs),
      role_(ws::Role::Client),
      state_(State::AwaitConnect),
      client_(std::move(opts)),
      dec_(ws::Role::Client) {
  inner_->set_sink(this);
}

WsTransport::~WsTransport() {
  delete inner_;  // null unless the transport was never closed (owner error)
}

void WsTransport::count(ws::Result r) {
  if (counted_) return;
  counted_ = true;
  if (obs_) obs_->on_ws_handshake(role_, r);
}

void WsTransport::count_timeout() {
  if (state_ == State::Handshake || state_ == State::AwaitResponse) {
    detail_ = "no complete WebSocket handshake in time";
    count(ws::Result::Timeout);
  }
}

std::string WsTransport::error_detail() const {
  if (!detail_.empty()) return detail_;
  return inner_ ? inner_->error_detail() : std::string();
}

// ---- Transport ------------------------------------------------------------------

void WsTransport::start_read() {
  if (closing_ || !inner_) return;
  want_read_ = true;
  if (delivering_) return;  // the delivery loop in progress sees the flag
  switch (state_) {
    case State::Handshake:
    case State::Refused:
    case State::Failed:  // read and discarded until the peer's EOF
    case State::AwaitResponse:
      return inner_->start_read();
    case State::Open:
      return frames(nullptr, 0);
    case State::AwaitConnect:
      return;
  }
}

void WsTransport::stop_read() {
  want_read_ = false;
  // While handshaking the inner read stays on (the handshake must progress);
  // inside the delivery loop the loop stops the inner read itself.
  if (delivering_ || !inner_) return;
  if (state_ == State::Open || state_ == State::Refused || state_ == State::Failed)
    inner_->stop_read();
}

int WsTransport::write(const uint8_t* data, size_t len) {
  if (closing_ || !inner_) return UV_ECANCELED;
  if (state_ != State::Open || close_sent_) return UV_ENOTCONN;
  while (len > 0) {
    size_t n = len < kMaxFrame ? len : kMaxFrame;
    t_frame.clear();
    ws::append_frame(t_frame, ws::kOpBinary, data, n, role_ == ws::Role::Client);
    if (int r = inner_->write(t_frame.data(), t_frame.size()); r != 0) return r;
    data += n;
    len -= n;
  }
  return 0;
}

void WsTransport::shutdown() {
  if (closing_ || !inner_) return;
  if (state_ == State::Open && !close_sent_) send_close(close_code_);
  inner_->shutdown();
}

void WsTransport::close(bool reset) {
  if (closing_) return;
  closing_ = true;
  if (!inner_) return;
  // Our Close: best effort, a TCP write normally takes it at once.
  if (!reset && state_ == State::Open && !close_sent_) send_close(close_code_);
  inner_->close(reset);
}

int WsTransport::send_control(uint8_t opcode, const uint8_t* p, size_t len) {
  t_frame.clear();
  ws::append_frame(t_frame, opcode, p, len, role_ == ws::Role::Client);
  return inner_->write(t_frame.data(), t_frame.size());
}

void WsTransport::send_close(uint16_t code) {
  close_sent_ = true;
  t_frame.clear();
  ws::append_close(t_frame, code, role_ == ws::Role::Client);
  inner_->write(t_frame.data(), t_frame.size());
}

// ---- handshakes -----------------------------------------------------------------------

void WsTransport::handshake_bytes(const uint8_t* data, size_t len) {
  size_t used = 0;
  ws::HeadParser::Status st = head_->feed(data, len, used);
  if (st == ws::HeadParser::Status::NeedMore) return;
  ws::Answer a;
  std::string answer;
  if (st == ws::HeadParser::Status::Error) {
    a.result = head_->error();
    a.status = a.result == ws::Result::TooLarge ? 431 : 400;
    a.reason = a.result == ws::Result::TooLarge ? "request headers too large"
                                                : "not a valid HTTP/1.1 request";
    answer = ws::error_response(a.status, a.reason);
  } else {
    const ws::Request& req = head_->request();
    a = ws::decide(req, server_.path);
    answer = ws::response_for(a, req);
    target_ = req.target;
  }
  head_.reset();
  int r = inner_->write(reinterpret_cast<const uint8_t*>(answer.data()), answer.size());
  if (a.result != ws::Result::Ok) {
    // The error page, then a half-close; the user lingers and closes.
    state_ = State::Refused;
    detail_ =
        std::string("WebSocket handshake refused (") + std::to_string(a.status) + "): " + a.reason;
    count(a.result);
    if (r == 0) inner_->shutdown();
    sink_->on_error(this, kWsFailed);
    return;
  }
  if (r != 0) {
    state_ = State::Failed;
    sink_->on_error(this, r);
    return;
  }
  state_ = State::Open;
  subprotocol_ = a.subprotocol;
  count(ws::Result::Ok);
  frames(data + used, len - used);  // frames sent right behind the request
}

void WsTransport::response_bytes(const uint8_t* data, size_t len) {
  size_t used = 0;
  ws::HeadParser::Status st = head_->feed(data, len, used);
  if (st == ws::HeadParser::Status::NeedMore) return;
  ws::Result res = ws::Result::BadResponse;
  int status = 0;
  if (st == ws::HeadParser::Status::Done) {
    status = head_->response().status;
    res = ws::check_response(head_->response(), key_, client_.protocol);
  }
  head_.reset();
  count(res);
  if (res != ws::Result::Ok) {
    state_ = State::Failed;
    detail_ = status ? "the broker answered the WebSocket upgrade with HTTP " +
                           std::to_string(status) + " (or without a valid Sec-WebSocket-Accept)"
                     : "the broker's answer to the WebSocket upgrade is not HTTP";
    sink_->on_connect(this, kWsFailed);
    return;
  }
  state_ = State::Open;
  sink_->on_connect(this, 0);
  if (!closing_ && inner_) frames(data + used, len - used);
}

// ---- frames ---------------------------------------------------------------------------

void WsTransport::protocol_error(ws::FrameError e, uint16_t code) {
  state_ = State::Failed;
  detail_ = std::string("WebSocket protocol error: ") + ws::to_string(e);
  if (obs_) obs_->on_ws_protocol_error(role_, e);
  if (!close_sent_) send_close(code);
  inner_->shutdown();
  sink_->on_error(this, kWsFailed);
}

void WsTransport::frames(const uint8_t* data, size_t len) {
  if (delivering_) {  // cannot happen (the inner read is not restarted inside the loop)
    backlog_.insert(backlog_.end(), data, data + len);
    return;
  }
  const bool from_backlog = !backlog_.empty();
  if (from_backlog && len > 0) backlog_.insert(backlog_.end(), data, data + len);
  std::span<const uint8_t> in =
      from_backlog ? std::span<const uint8_t>(backlog_) : std::span<const uint8_t>(data, len);
  const size_t in_size = in.size();
  delivering_ = true;
  uint8_t* const t_out = out_buffer();
  size_t out = 0;
  bool peer_close = false;
  ws::Event failure;
  while (!closing_ && want_read_ && state_ == State::Open) {
    if (out + ws::FrameDecoder::kMaxChunk > kOut) {
      sink_->on_read(this, t_out, out);
      out = 0;
      continue;
    }
    ws::Event ev = dec_.next(in);
    if (ev.kind == ws::Event::Kind::NeedMore) break;
    if (ev.kind == ws::Event::Kind::Data) {
      std::memcpy(t_out + out, ev.data, ev.len);
      out += ev.len;
    } else if (ev.kind == ws::Event::Kind::Ping) {
      // RFC 6455 5.5.3 lets a Pong answer only the latest Pings: none is
      // queued behind a full write queue (a Ping flood cannot grow it).
      if (!close_sent_ && inner_->pending() <= kMaxFrame)
        send_control(ws::kOpPong, ev.data, ev.len);
    } else if (ev.kind == ws::Event::Kind::Close) {
      peer_close = true;
      break;
    } else if (ev.kind == ws::Event::Kind::Error) {
      failure = ev;
      break;
    }
  }
  // Decoded while the user was reading: delivered before anything else.
  if (out > 0 && !closing_) sink_->on_read(this, t_out, out);
  if (from_backlog)
    backlog_.erase(backlog_.begin(),
                   backlog_.begin() + static_cast<std::ptrdiff_t>(in_size - in.size()));
  else if (!in.empty())
    backlog_.assign(in.begin(), in.end());  // bounded: at most this one inner read
  if (dec_.finished()) std::vector<uint8_t>().swap(backlog_);  // nothing after Close is read
  delivering_ = false;
  if (closing_ || !inner_) return;
  if (failure.kind == ws::Event::Kind::Error) return protocol_error(failure.error, failure.code);
  if (peer_close) inner_eof_ = true;  // a Close ends the stream like a FIN
  if (backlog_.empty()) std::vector<uint8_t>().swap(backlog_);  // idle: no buffer
  if (!want_read_ || !backlog_.empty()) {
    inner_->stop_read();  // nothing more until the user reads again
    return;
  }
  if (inner_eof_) {
    if (!eof_reported_) {
      eof_reported_ = true;
      sink_->on_eof(this);
    }
    if (!closing_ && inner_ && dec_.finished()) inner_->start_read();  // discard, see the FIN
    return;
  }
  inner_->start_read();
}

// ---- inner transport events -------------------------------------------------------------

void WsTransport::on_read(Transport*, const uint8_t* data, size_t len) {
  if (closing_) return;
  switch (state_) {
    case State::Handshake:
      got_bytes_ = true;
      return handshake_bytes(data, len);
    case State::AwaitResponse:
      return response_bytes(data, len);
    case State::Open:
      if (dec_.finished()) return;  // after the peer's Close: discarded
      return frames(data, len);
    case State::Refused:
    case State::Failed:
    case State::AwaitConnect:
      return;  // discarded
  }
}

void WsTransport::on_eof(Transport*) {
  if (closing_) return;
  switch (state_) {
    case State::Handshake:
      detail_ = "the client closed during the WebSocket handshake";
      if (got_bytes_) count(ws::Result::Closed);  // else a port probe, or TLS that never finished
      return sink_->on_eof(this);
    case State::AwaitConnect:
    case State::AwaitResponse:
      detail_ = "the broker closed during the WebSocket handshake";
      count(ws::Result::Closed);
      state_ = State::Failed;
      return sink_->on_connect(this, UV_EOF);
    case State::Open:
      if (eof_reported_) return;
      inner_eof_ = true;
      return frames(nullptr, 0);  // reported once every held byte is out
    case State::Refused:
    case State::Failed:
      return sink_->on_eof(this);
  }
}

void WsTransport::on_error(Transport*, int err) {
  if (closing_) return;
  if (state_ == State::AwaitConnect || state_ == State::AwaitResponse) {
    if (state_ == State::AwaitResponse) count(ws::Result::Closed);
    state_ = State::Failed;
    return sink_->on_connect(this, err);
  }
  if (state_ == State::Handshake && got_bytes_) count(ws::Result::Closed);
  sink_->on_error(this, err);
}

void WsTransport::on_connect(Transport*, int status) {
  if (closing_ || role_ != ws::Role::Client || state_ != State::AwaitConnect) return;
  if (status != 0) {
    state_ = State::Failed;
    return sink_->on_connect(this, status);
  }
  key_ = ws::new_key();
  std::string req =
      ws::client_request(client_.host, client_.target, client_.protocol, key_, client_.headers);
  // [HAProxy send-proxy] the PROXY header precedes everything, raw.
  int r = 0;
  if (!client_.preamble.empty())
    r = inner_->write(client_.preamble.data(), client_.preamble.size());
  std::vector<uint8_t>().swap(client_.preamble);
  if (r == 0) r = inner_->write(reinterpret_cast<const uint8_t*>(req.data()), req.size());
  if (r != 0) {
    state_ = State::Failed;
    return sink_->on_connect(this, r);
  }
  head_ =
      std::make_unique<ws::HeadParser>(ws::HeadParser::Kind::Response, client_.max_response_bytes);
  state_ = State::AwaitResponse;
  inner_->start_read();
}

void WsTransport::on_drained(Transport*) {
  if (!closing_) sink_->on_drained(this);
}

void WsTransport::on_shutdown(Transport*) {
  if (!closing_) sink_->on_shutdown(this);
}

void WsTransport::on_closed(Transport* t) {
  delete t;
  inner_ = nullptr;
  closing_ = true;
  sink_->on_closed(this);  // last action: the sink may delete this
}

}  // namespace net
