#include "net/ws_frame.hpp"

#include <openssl/rand.h>
#include <wslay/wslay.h>

#include <cstring>

namespace net::ws {

const char* to_string(FrameError e) {
  switch (e) {
    case FrameError::None:
      return "none";
    case FrameError::Unmasked:
      return "mask";
    case FrameError::TextFrame:
      return "text_frame";
    case FrameError::BadOpcode:
      return "bad_opcode";
    case FrameError::BadContinuation:
      return "bad_continuation";
    case FrameError::BadClose:
      return "bad_close";
    case FrameError::Malformed:
      return "malformed";
    default:
      return "other";
  }
}

namespace {

bool valid_close_code(uint16_t c) {
  // RFC 6455 7.4: codes a peer may send (1005, 1006 and 1015 only ever reported locally).
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
}

size_t header_length(uint64_t payload, bool mask) {
  // wslay refuses non-minimal length encodings, so this is exact.
  return 2 + (payload < 126 ? 0 : payload <= 0xFFFF ? 2 : 8) + (mask ? 4 : 0);
}

}  // namespace

FrameDecoder::~FrameDecoder() {
  release();
}

void FrameDecoder::release() {
  if (ctx_) wslay_frame_context_free(ctx_);
  ctx_ = nullptr;
  release_pending_ = false;
}

ssize_t FrameDecoder::recv_cb(uint8_t* buf, size_t len, int, void* user) {
  auto* d = static_cast<FrameDecoder*>(user);
  std::span<const uint8_t>& in = *d->in_;
  size_t n = in.size() < len ? in.size() : len;
  if (n == 0) return -1;  // wslay: WSLAY_ERR_WANT_READ
  std::memcpy(buf, in.data(), n);
  in = in.subspan(n);
  d->fed_ += n;
  return static_cast<ssize_t>(n);
}

Event FrameDecoder::fail(FrameError e, uint16_t code) {
  finished_ = true;
  release();
  Event ev;
  ev.kind = Event::Kind::Error;
  ev.error = e;
  ev.code = code;
  return ev;
}

Event FrameDecoder::next(std::span<const uint8_t>& in) {
  if (release_pending_) release();
  if (finished_) return {};
  struct Scope {  // in_ points at the caller's span only during this call
    FrameDecoder* d;
    ~Scope() { d->in_ = nullptr; }
  } scope{this};
  in_ = &in;
  // Each turn either returns or consumes a frame header or payload bytes; the
  // bound only guards against a wslay that would stop taking input.
  for (int guard = 0; guard < 1'000'000; ++guard) {
    if (!ctx_) {
      if (in.empty()) return {};
      wslay_frame_callbacks cb{nullptr, &FrameDecoder::recv_cb, nullptr};
      if (wslay_frame_context_init(&ctx_, &cb, this) != 0) {
        ctx_ = nullptr;
        return fail(FrameError::Malformed, kCloseGoingAway);  // out of memory
      }
      fed_ = used_ = 0;
    }
    wslay_frame_iocb io{};
    ssize_t r = wslay_frame_recv(ctx_, &io);
    if (r == WSLAY_ERR_WANT_READ) {
      if (in.empty()) return {};
      continue;
    }
    if (r < 0) return fail(FrameError::Malformed, kCloseProtocol);
    if (!in_frame_) {  // the first bytes of a new frame: its header is complete
      used_ += header_length(io.payload_length, io.mask != 0);
      if (io.rsv != 0) return fail(FrameError::BadOpcode, kCloseProtocol);
      // RFC 6455 5.1: clients mask every frame, servers none.
      if ((io.mask != 0) != (role_ == Role::Server))
        return fail(FrameError::Unmasked, kCloseProtocol);
      switch (io.opcode) {
        case kOpText:
          return fail(FrameError::TextFrame, kCloseUnsupported);  // [MQTT-6.0.0-1]
        case kOpBinary:
          if (msg_open_) return fail(FrameError::BadContinuation, kCloseProtocol);
          msg_open_ = !io.fin;
          break;
        case kOpContinuation:
          if (!msg_open_) return fail(FrameError::BadContinuation, kCloseProtocol);
          msg_open_ = !io.fin;
          break;
        case kOpClose:
        case kOpPing:
        case kOpPong:
          break;  // wslay checked: final, at most 125 bytes
        default:
          return fail(FrameError::BadOpcode, kCloseProtocol);
      }
      in_frame_ = true;
      frame_left_ = io.payload_length;
      opcode_ = io.opcode;
      ctrl_len_ = 0;
    }
    used_ += io.data_length;
    frame_left_ -= io.data_length;
    const bool complete = frame_left_ == 0;
    if (complete) in_frame_ = false;
    // Between frames with nothing read ahead: wslay's state is empty.
    const bool empty = complete && fed_ == used_;
    if (opcode_ & 0x8) {  // control frame: collected whole (at most 125 bytes)
      if (io.data_length > sizeof ctrl_ - ctrl_len_)
        return fail(FrameError::Malformed, kCloseProtocol);
      std::memcpy(ctrl_ + ctrl_len_, io.data, io.data_length);
      ctrl_len_ += io.data_length;
      if (!complete) continue;
      if (empty) release();
      Event ev;
      ev.data = ctrl_;
      ev.len = ctrl_len_;
      if (opcode_ == kOpPing) {
        ev.kind = Event::Kind::Ping;
      } else if (opcode_ == kOpPong) {
        ev.kind = Event::Kind::Pong;
      } else {
        if (ctrl_len_ == 1) return fail(FrameError::BadClose, kCloseProtocol);
        ev.kind = Event::Kind::Close;
        ev.code = kCloseNoStatus;
        if (ctrl_len_ >= 2) {
          ev.code = static_cast<uint16_t>(ctrl_[0] << 8 | ctrl_[1]);
          if (!valid_close_code(ev.code)) return fail(FrameError::BadClose, kCloseProtocol);
        }
        finished_ = true;  // nothing after a Close is read (RFC 6455 5.5.1)
        release();
      }
      return ev;
    }
    if (io.data_length == 0) {
      if (empty) release();
      continue;
    }
    release_pending_ = empty;  // io.data points into wslay's buffer
    Event ev;
    ev.kind = Event::Kind::Data;
    ev.data = io.data;
    ev.len = io.data_length;
    return ev;
  }
  return fail(FrameError::Malformed, kCloseProtocol);
}

// ---- encoder ----------------------------------------------------------------------

namespace {

// A wslay context per thread for sending: a frame is always sent whole
// (the callback takes every byte), so it is back at its initial state after
// each call and can serve every connection of the thread.
struct Sender {
  wslay_frame_context* ctx = nullptr;
  std::vector<uint8_t>* out = nullptr;
  uint64_t rng = 0;

  Sender() {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&rng), sizeof rng) != 1 || rng == 0)
      rng = 0x9E3779B97F4A7C15ull ^ reinterpret_cast<uintptr_t>(this);
    wslay_frame_callbacks cb{&Sender::send_cb, nullptr, &Sender::mask_cb};
    if (wslay_frame_context_init(&ctx, &cb, this) != 0) ctx = nullptr;
  }
  ~Sender() {
    if (ctx) wslay_frame_context_free(ctx);
  }
  static ssize_t send_cb(const uint8_t* data, size_t len, int, void* user) {
    auto* s = static_cast<Sender*>(user);
    s->out->insert(s->out->end(), data, data + len);
    return static_cast<ssize_t>(len);
  }
  // Masking keys (RFC 6455 5.3: unpredictable to the page script that would
  // choose the payload) from a per-thread xorshift64* seeded by RAND_bytes:
  // the client role here runs no untrusted script, the mask only satisfies
  // the brokers' framing rule.
  static int mask_cb(uint8_t* buf, size_t len, void* user) {
    auto* s = static_cast<Sender*>(user);
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    uint64_t v = s->rng * 2685821657736338717ull;
    for (size_t i = 0; i < len; ++i) buf[i] = static_cast<uint8_t>(v >> (8 * (i % 8)));
    return 0;
  }
};

void encode_header_only(std::vector<uint8_t>& out, uint8_t opcode, const uint8_t* p, size_t len,
                        bool mask) {
  // Without a wslay context (out of memory at thread start): the same bytes by hand.
  out.push_back(static_cast<uint8_t>(0x80 | opcode));
  uint8_t m = mask ? 0x80 : 0;
  if (len < 126) {
    out.push_back(static_cast<uint8_t>(m | len));
  } else if (len <= 0xFFFF) {
    out.push_back(m | 126);
    out.push_back(static_cast<uint8_t>(len >> 8));
    out.push_back(static_cast<uint8_t>(len));
  } else {
    out.push_back(m | 127);
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(uint64_t{len} >> (8 * i)));
  }
  uint8_t key[4] = {0x6d, 0x71, 0x74, 0x74};
  if (mask) out.insert(out.end(), key, key + 4);
  for (size_t i = 0; i < len; ++i) out.push_back(mask ? p[i] ^ key[i % 4] : p[i]);
}

}  // namespace

void append_frame(std::vector<uint8_t>& out, uint8_t opcode, const uint8_t* payload, size_t len,
                  bool mask) {
  // Two contexts: wslay remembers that a context masked once (its omask is
  // never cleared), so masked and unmasked frames never share one.
  static thread_local Sender masked, plain;
  Sender& sender = mask ? masked : plain;
  if (!sender.ctx) return encode_header_only(out, opcode, payload, len, mask);
  sender.out = &out;
  wslay_frame_iocb io{};
  io.fin = 1;
  io.opcode = opcode;
  io.mask = mask ? 1 : 0;
  io.payload_length = len;
  io.data = payload;
  io.data_length = len;
  // The callback takes everything, so one call sends the frame whole.
  ssize_t r = wslay_frame_send(sender.ctx, &io);
  sender.out = nullptr;
  (void)r;
}

void append_close(std::vector<uint8_t>& out, uint16_t code, bool mask) {
  uint8_t p[2] = {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code)};
  append_frame(out, kOpClose, p, sizeof p, mask);
}

}  // namespace net::ws
