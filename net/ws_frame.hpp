// WebSocket framing (RFC 6455 section 5) for MQTT over WebSocket: a pull
// decoder and a frame encoder on top of wslay's frame layer (Debian's
// libwslay). Pure: bytes in, events out; no I/O. Fuzzed by
// tests/fuzz/fuzz_ws_frame.cpp (and fuzz_ws_connect.cpp: a CONNECT in random
// frames decodes to the same packet).
//
// What the decoder enforces on top of wslay (which checks lengths and
// control-frame rules, RFC 6455 5.2/5.5):
//  - server role: every frame from the client is masked (5.1); client role:
//    none from the server is;
//  - no reserved bits (no extension is negotiated), no reserved opcode;
//  - text frames are refused [MQTT-6.0.0-1]: MQTT rides in binary frames;
//  - continuation frames only inside a fragmented message, and no new
//    message before the last one ended (5.4); control frames may interleave.
// Data is a byte stream: MQTT packets need not align with frames [MQTT-6.0.0-2].
//
// Memory: wslay's context (about 4 KiB) exists only while a frame is half
// received; between frames the decoder holds nothing (idle()).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

struct wslay_frame_context;

namespace net::ws {

enum class Role : uint8_t { Server, Client };

// Close codes used here (RFC 6455 7.4.1).
constexpr uint16_t kCloseNormal = 1000;
constexpr uint16_t kCloseGoingAway = 1001;
constexpr uint16_t kCloseProtocol = 1002;
constexpr uint16_t kCloseUnsupported = 1003;
constexpr uint16_t kCloseNoStatus = 1005;  // received a Close without a code (never sent)

// Why a peer's frames were refused (the `reason` label of
// mqttlb_websocket_protocol_errors_total).
enum class FrameError : uint8_t {
  None,
  Unmasked,         // server role: a client frame without a mask (or client role: a masked one)
  TextFrame,        // [MQTT-6.0.0-1]
  BadOpcode,        // reserved opcode or reserved bits
  BadContinuation,  // continuation without a message, or a new message inside one
  BadClose,         // a Close payload of one byte, or an invalid code
  Malformed,        // wslay: bad length encoding, control frame too long or fragmented
  Count
};
const char* to_string(FrameError e);

struct Event {
  enum class Kind : uint8_t { NeedMore, Data, Ping, Pong, Close, Error };
  Kind kind = Kind::NeedMore;
  const uint8_t* data = nullptr;  // Data: payload bytes, unmasked; Ping/Pong/Close: payload
  size_t len = 0;                 // valid until the next call
  uint16_t code = 0;              // Close: the peer's code (kCloseNoStatus if none); Error: ours
  FrameError error = FrameError::None;
};

class FrameDecoder {
 public:
  // The most payload one Data event carries.
  static constexpr size_t kMaxChunk = 4096;

  explicit FrameDecoder(Role role) : role_(role) {}
  ~FrameDecoder();
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // The next event; takes bytes from the front of `in` as it needs them.
  // NeedMore: `in` is empty (every byte was taken; a partial frame is kept).
  // After Close or Error the decoder is finished: it returns NeedMore and
  // takes nothing.
  Event next(std::span<const uint8_t>& in);
  bool idle() const { return ctx_ == nullptr; }
  bool finished() const { return finished_; }
  // A fragmented message is open (its last frame has not come).
  bool in_message() const { return msg_open_; }

 private:
  Event fail(FrameError e, uint16_t code);
  void release();

  Role role_;
  wslay_frame_context* ctx_ = nullptr;
  std::span<const uint8_t>* in_ = nullptr;  // during next(): what wslay reads from
  uint64_t fed_ = 0;                        // bytes wslay took since ctx_ was made
  uint64_t used_ = 0;                       // bytes of the frames it returned (headers + payload)
  bool in_frame_ = false;                   // a frame's payload is partly received
  uint64_t frame_left_ = 0;
  uint8_t opcode_ = 0;
  bool msg_open_ = false;
  bool finished_ = false;
  uint8_t ctrl_[125];  // a control frame's payload, until complete
  size_t ctrl_len_ = 0;

  bool release_pending_ = false;  // the last Data event points into ctx_: freed on the next call

  static ssize_t recv_cb(uint8_t* buf, size_t len, int flags, void* user);
};

// Appends one final frame (FIN set) with `opcode` and `payload` to `out`;
// masked with a fresh key when `mask` (the client role, RFC 6455 5.3).
// Control frames: payload of at most 125 bytes.
void append_frame(std::vector<uint8_t>& out, uint8_t opcode, const uint8_t* payload, size_t len,
                  bool mask);
// A Close frame's payload: the code, big-endian.
void append_close(std::vector<uint8_t>& out, uint16_t code, bool mask);

constexpr uint8_t kOpContinuation = 0x0, kOpText = 0x1, kOpBinary = 0x2, kOpClose = 0x8,
                  kOpPing = 0x9, kOpPong = 0xA;

}  // namespace net::ws
