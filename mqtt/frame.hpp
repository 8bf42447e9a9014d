// Stream framing: fixed header + Remaining Length varint (MQTT 5 section 1.5.5,
// 3.1.1 section 2.2.3). Pure functions over byte spans; usable on arbitrary
// segmentation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace mqtt {

constexpr uint32_t kMaxRemainingLength = 268'435'455;  // 0xFF,0xFF,0xFF,0x7F

enum class DecodeStatus : uint8_t { NeedMore, Ok, Malformed };

struct VarintResult {
  DecodeStatus status = DecodeStatus::NeedMore;
  uint32_t value = 0;
  uint8_t length = 0;  // bytes used by the varint when status == Ok
};

// Decodes a Variable Byte Integer at the start of `in`. A continuation bit on
// the 4th byte is Malformed; fewer than 4 bytes all with continuation bits is
// NeedMore. Non-minimal encodings (e.g. 0x80 0x00) are accepted, as the spec
// does not forbid them for decoding.
VarintResult decode_varint(std::span<const uint8_t> in);

// Number of bytes encode_varint writes for v (1..4); v must be <= kMaxRemainingLength.
uint8_t varint_size(uint32_t v);
// Appends the minimal encoding of v (v <= kMaxRemainingLength).
void append_varint(std::vector<uint8_t>& out, uint32_t v);

struct FrameHeader {
  uint8_t first_byte = 0;  // packet type << 4 | flags
  uint32_t remaining_length = 0;
  uint8_t header_length = 0;  // 1 + varint bytes

  uint8_t type() const { return first_byte >> 4; }
  uint8_t flags() const { return first_byte & 0x0F; }
  size_t total_length() const { return size_t{header_length} + remaining_length; }
};

struct FrameResult {
  DecodeStatus status = DecodeStatus::NeedMore;
  FrameHeader header;  // valid when status == Ok (header complete; body may not be)
};

// Reads the fixed header at the start of `in`. Ok means the header is complete;
// the caller checks `in.size() >= header.total_length()` for the whole packet.
// Packet type 0 is Malformed (reserved). Flags are not checked here.
FrameResult peek_frame(std::span<const uint8_t> in);

// Finds packet boundaries in a byte stream without buffering it: feed every
// chunk in order; the scanner keeps only a few bytes of state. Used by the
// balancer on the broker->client direction so it can inject a packet at a
// boundary. Once Malformed, it stays Malformed.
class StreamScanner {
 public:
  // Consumes the whole chunk. Returns false once the stream is malformed.
  bool feed(std::span<const uint8_t> chunk);
  // Consumes the chunk up to and including the end of the first packet that
  // ends in it; returns how many bytes that is (the whole chunk when no packet
  // ends in it, or once malformed). Used to stop a stream exactly at a
  // boundary and inject a packet there.
  size_t feed_to_boundary(std::span<const uint8_t> chunk);
  // True when everything fed so far ends exactly at a packet boundary.
  bool at_boundary() const { return state_ == State::Type; }
  bool malformed() const { return state_ == State::Bad; }
  // Number of complete packets seen.
  uint64_t packets() const { return packets_; }
  // Bytes still missing to finish the current packet's body (0 in header states).
  uint64_t body_left() const { return body_left_; }

  // The whole state, to hand a stream over to another scanner (the in-kernel
  // forwarding's, lb/bpf/splice_abi.h) and back. state: 0 type, 1 length,
  // 2 body, 3 malformed.
  struct Raw {
    uint8_t state = 0;
    uint8_t len_bytes = 0;
    uint32_t len_value = 0;
    uint32_t len_mult = 1;
    uint64_t body_left = 0;
  };
  Raw raw() const;
  // Continues from `r` (packets() is kept and advanced by `packets`).
  void set_raw(const Raw& r, uint64_t packets);

 private:
  enum class State : uint8_t { Type, Length, Body, Bad };
  State state_ = State::Type;
  uint8_t len_bytes_ = 0;
  uint32_t len_value_ = 0;
  uint32_t len_mult_ = 1;
  uint64_t body_left_ = 0;
  uint64_t packets_ = 0;
};

}  // namespace mqtt
