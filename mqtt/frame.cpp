#include "mqtt/frame.hpp"

#include <algorithm>
#include <cassert>

namespace mqtt {

VarintResult decode_varint(std::span<const uint8_t> in) {
  VarintResult r;
  uint32_t value = 0;
  uint32_t mult = 1;
  for (size_t i = 0; i < 4; ++i) {
    if (i >= in.size()) return r;  // NeedMore
    uint8_t b = in[i];
    value += static_cast<uint32_t>(b & 0x7F) * mult;
    if ((b & 0x80) == 0) {
      r.status = DecodeStatus::Ok;
      r.value = value;
      r.length = static_cast<uint8_t>(i + 1);
      return r;
    }
    mult *= 128;
  }
  // Continuation bit set on the 4th byte [MQTT-1.5.5-1: at most 4 bytes].
  r.status = DecodeStatus::Malformed;
  return r;
}

uint8_t varint_size(uint32_t v) {
  if (v < 128u) return 1;
  if (v < 16'384u) return 2;
  if (v < 2'097'152u) return 3;
  return 4;
}

void append_varint(std::vector<uint8_t>& out, uint32_t v) {
  assert(v <= kMaxRemainingLength);
  do {
    uint8_t b = v % 128;
    v /= 128;
    if (v > 0) b |= 0x80;
    out.push_back(b);
  } while (v > 0);
}

FrameResult peek_frame(std::span<const uint8_t> in) {
  FrameResult r;
  if (in.empty()) return r;
  if ((in[0] >> 4) == 0) {  // packet type 0 is reserved / forbidden
    r.status = DecodeStatus::Malformed;
    return r;
  }
  VarintResult v = decode_varint(in.subspan(1));
  if (v.status != DecodeStatus::Ok) {
    r.status = v.status;
    return r;
  }
  r.status = DecodeStatus::Ok;
  r.header.first_byte = in[0];
  r.header.remaining_length = v.value;
  r.header.header_length = static_cast<uint8_t>(1 + v.length);
  return r;
}

size_t StreamScanner::feed_to_boundary(std::span<const uint8_t> chunk) {
  size_t i = 0;
  while (i < chunk.size()) {
    if (state_ == State::Bad) return chunk.size();
    // A body is skipped in one step; header bytes one at a time.
    size_t step = state_ == State::Body && body_left_ > 1
                      ? static_cast<size_t>(std::min<uint64_t>(body_left_, chunk.size() - i))
                      : 1;
    feed(chunk.subspan(i, step));
    i += step;
    if (state_ == State::Type) return i;  // a packet just ended
  }
  return i;
}

StreamScanner::Raw StreamScanner::raw() const {
  return Raw{static_cast<uint8_t>(state_), len_bytes_, len_value_, len_mult_, body_left_};
}

void StreamScanner::set_raw(const Raw& r, uint64_t packets) {
  state_ = r.state <= 3 ? static_cast<State>(r.state) : State::Bad;
  len_bytes_ = r.len_bytes;
  len_value_ = r.len_value;
  len_mult_ = r.len_mult;
  body_left_ = r.body_left;
  packets_ += packets;
}

bool StreamScanner::feed(std::span<const uint8_t> chunk) {
  size_t i = 0;
  const size_t n = chunk.size();
  while (i < n) {
    switch (state_) {
      case State::Bad:
        return false;
      case State::Type:
        if ((chunk[i] >> 4) == 0) {
          state_ = State::Bad;
          return false;
        }
        ++i;
        state_ = State::Length;
        len_bytes_ = 0;
        len_value_ = 0;
        len_mult_ = 1;
        break;
      case State::Length: {
        uint8_t b = chunk[i++];
        len_value_ += static_cast<uint32_t>(b & 0x7F) * len_mult_;
        ++len_bytes_;
        if (b & 0x80) {
          if (len_bytes_ == 4) {
            state_ = State::Bad;
            return false;
          }
          len_mult_ *= 128;
        } else if (len_value_ == 0) {
          ++packets_;
          state_ = State::Type;
        } else {
          body_left_ = len_value_;
          state_ = State::Body;
        }
        break;
      }
      case State::Body: {
        uint64_t take = n - i;
        if (take > body_left_) take = body_left_;
        i += take;
        body_left_ -= take;
        if (body_left_ == 0) {
          ++packets_;
          state_ = State::Type;
        }
        break;
      }
    }
  }
  return state_ != State::Bad;
}

}  // namespace mqtt
