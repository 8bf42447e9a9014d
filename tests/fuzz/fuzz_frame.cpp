// libFuzzer target for the framer (mqtt/frame.hpp).
// Asserts, for any input:
//  - decode_varint: Ok uses 1..4 bytes within the input, value <= max, and
//    round-trips through append_varint/varint_size; Malformed exactly when
//    the first 4 bytes all carry the continuation bit; NeedMore exactly when
//    fewer than 4 bytes are there and all carry it;
//  - peek_frame agrees with decode_varint on the bytes after the first, and
//    rejects packet type 0; the header never claims more bytes than given;
//  - StreamScanner fed the whole input, byte by byte, or in input-chosen
//    chunks agrees with a reference walk over the input with peek_frame:
//    packet count, boundary, malformed, body_left.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mqtt/frame.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

using mqtt::DecodeStatus;

void check_varint(std::span<const uint8_t> in) {
  const mqtt::VarintResult r = mqtt::decode_varint(in);
  size_t cont = 0;  // leading bytes with the continuation bit, up to 4
  while (cont < in.size() && cont < 4 && (in[cont] & 0x80)) ++cont;
  if (cont == 4) {
    FUZZ_CHECK(r.status == DecodeStatus::Malformed);
    return;
  }
  if (cont == in.size()) {
    FUZZ_CHECK(r.status == DecodeStatus::NeedMore);
    return;
  }
  FUZZ_CHECK(r.status == DecodeStatus::Ok);
  FUZZ_CHECK(r.length == cont + 1);
  FUZZ_CHECK(r.length <= in.size());
  FUZZ_CHECK(r.value <= mqtt::kMaxRemainingLength);
  uint64_t v = 0, mult = 1;
  for (size_t i = 0; i < r.length; ++i, mult *= 128) v += (in[i] & 0x7Fu) * mult;
  FUZZ_CHECK(v == r.value);
  std::vector<uint8_t> out;
  mqtt::append_varint(out, r.value);
  FUZZ_CHECK(out.size() == mqtt::varint_size(r.value));
  FUZZ_CHECK(out.size() <= r.length);  // minimal encoding
  const mqtt::VarintResult back = mqtt::decode_varint(out);
  FUZZ_CHECK(back.status == DecodeStatus::Ok && back.value == r.value && back.length == out.size());
}

void check_peek(std::span<const uint8_t> in) {
  const mqtt::FrameResult f = mqtt::peek_frame(in);
  if (in.empty()) {
    FUZZ_CHECK(f.status == DecodeStatus::NeedMore);
    return;
  }
  if ((in[0] >> 4) == 0) {
    FUZZ_CHECK(f.status == DecodeStatus::Malformed);
    return;
  }
  const mqtt::VarintResult v = mqtt::decode_varint(in.subspan(1));
  FUZZ_CHECK(f.status == v.status);
  if (f.status != DecodeStatus::Ok) return;
  FUZZ_CHECK(f.header.first_byte == in[0]);
  FUZZ_CHECK(f.header.remaining_length == v.value);
  FUZZ_CHECK(f.header.header_length == 1 + v.length);
  FUZZ_CHECK(f.header.header_length <= in.size());
  FUZZ_CHECK(f.header.total_length() == f.header.header_length + size_t{v.value});
}

struct Expected {
  uint64_t packets = 0;
  bool boundary = true;
  bool malformed = false;
  uint64_t body_left = 0;
};

// Whole-buffer framing with peek_frame.
Expected reference(std::span<const uint8_t> in) {
  Expected e;
  size_t pos = 0;
  while (pos < in.size()) {
    const mqtt::FrameResult f = mqtt::peek_frame(in.subspan(pos));
    if (f.status == DecodeStatus::Malformed) {
      e.boundary = false;
      e.malformed = true;
      return e;
    }
    if (f.status == DecodeStatus::NeedMore) {
      e.boundary = false;
      return e;
    }
    const size_t total = f.header.total_length();
    FUZZ_CHECK(total >= 2);  // progress: the loop is bounded by in.size()
    if (total > in.size() - pos) {
      e.boundary = false;
      e.body_left = total - (in.size() - pos);
      return e;
    }
    pos += total;
    ++e.packets;
  }
  return e;
}

void check_scanner(const mqtt::StreamScanner& s, const Expected& e, bool fed_ok) {
  FUZZ_CHECK(s.packets() == e.packets);
  FUZZ_CHECK(s.at_boundary() == e.boundary);
  FUZZ_CHECK(s.malformed() == e.malformed);
  FUZZ_CHECK(fed_ok == !e.malformed);
  FUZZ_CHECK(s.body_left() == e.body_left);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  check_varint(in);
  if (size > 0) check_varint(in.subspan(1));
  check_peek(in);

  const Expected e = reference(in);
  {
    mqtt::StreamScanner s;
    const bool ok = s.feed(in);
    check_scanner(s, e, ok);
  }
  {
    mqtt::StreamScanner s;
    bool ok = true;
    for (size_t i = 0; i < size; ++i) ok = s.feed(in.subspan(i, 1)) && ok;
    check_scanner(s, e, ok);
  }
  {
    // Chunk sizes 1..16 from the input's hash, with an empty feed now and then.
    mqtt::StreamScanner s;
    uint64_t h = fuzz_hash(data, size) | 1;
    bool ok = true;
    size_t pos = 0;
    while (pos < size) {
      h ^= h << 13;  // xorshift64: never reaches 0 from a non-zero state
      h ^= h >> 7;
      h ^= h << 17;
      if ((h >> 8 & 7) == 0) ok = s.feed(in.first(0)) && ok;
      size_t n = 1 + static_cast<size_t>(h & 15);
      if (n > size - pos) n = size - pos;
      ok = s.feed(in.subspan(pos, n)) && ok;
      pos += n;
      // Prefix property: what the scanner reports after a prefix equals the
      // reference over that prefix.
      check_scanner(s, reference(in.first(pos)), ok);
    }
    check_scanner(s, e, ok);
  }
  return 0;
}
