// Framing: Remaining Length varint (MQTT 5 1.5.5, 3.1.1 2.2.3), peek_frame and
// StreamScanner. Every rule has a valid and a violating case; the scanner is
// checked against whole-buffer framing over random segmentations.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "mqtt/frame.hpp"

using mqtt::DecodeStatus;
using Bytes = std::vector<uint8_t>;

namespace {

std::span<const uint8_t> sp(const Bytes& b) { return {b.data(), b.size()}; }

struct VarintCase {
  uint32_t value;
  Bytes encoding;
};

// The boundaries of each encoded length (MQTT 5 table 1-1 / 3.1.1 table 2.4).
const VarintCase kVarintCases[] = {
    {0, {0x00}},
    {127, {0x7F}},
    {128, {0x80, 0x01}},
    {16383, {0xFF, 0x7F}},
    {16384, {0x80, 0x80, 0x01}},
    {2097151, {0xFF, 0xFF, 0x7F}},
    {2097152, {0x80, 0x80, 0x80, 0x01}},
    {268435455, {0xFF, 0xFF, 0xFF, 0x7F}},
};

}  // namespace

TEST_CASE("varint: boundary values decode with 1..4 bytes") {
  for (const auto& c : kVarintCases) {
    CAPTURE(c.value);
    auto r = mqtt::decode_varint(sp(c.encoding));
    REQUIRE(r.status == DecodeStatus::Ok);
    CHECK(r.value == c.value);
    CHECK(r.length == c.encoding.size());
    // Bytes after the varint are not part of it.
    Bytes more = c.encoding;
    more.push_back(0xFF);
    more.push_back(0x01);
    auto r2 = mqtt::decode_varint(sp(more));
    REQUIRE(r2.status == DecodeStatus::Ok);
    CHECK(r2.value == c.value);
    CHECK(r2.length == c.encoding.size());
  }
}

TEST_CASE("varint: encoder writes the minimal encoding") {
  for (const auto& c : kVarintCases) {
    CAPTURE(c.value);
    CHECK(mqtt::varint_size(c.value) == c.encoding.size());
    Bytes out = {0xAA};  // append, never overwrite
    mqtt::append_varint(out, c.value);
    Bytes want = {0xAA};
    want.insert(want.end(), c.encoding.begin(), c.encoding.end());
    CHECK(out == want);
  }
  CHECK(mqtt::kMaxRemainingLength == 268435455u);
}

TEST_CASE("varint: round trip over a spread of values") {
  std::mt19937 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    uint32_t v = rng() % (mqtt::kMaxRemainingLength + 1u);
    if (i % 4 == 0) v = rng() % 300;  // dense near the small boundaries
    Bytes out;
    mqtt::append_varint(out, v);
    auto r = mqtt::decode_varint(sp(out));
    REQUIRE(r.status == DecodeStatus::Ok);
    REQUIRE(r.value == v);
    REQUIRE(r.length == out.size());
    REQUIRE(out.size() == mqtt::varint_size(v));
  }
}

TEST_CASE("varint: continuation bit on the 4th byte is malformed") {
  // Valid counterpart: 0xFF 0xFF 0xFF 0x7F is the maximum (above).
  CHECK(mqtt::decode_varint(sp({0xFF, 0xFF, 0xFF, 0xFF})).status == DecodeStatus::Malformed);
  CHECK(mqtt::decode_varint(sp({0x80, 0x80, 0x80, 0x80, 0x01})).status ==
        DecodeStatus::Malformed);
  CHECK(mqtt::decode_varint(sp({0x80, 0x80, 0x80, 0x80})).status == DecodeStatus::Malformed);
}

TEST_CASE("varint: truncation needs more bytes") {
  CHECK(mqtt::decode_varint(sp({})).status == DecodeStatus::NeedMore);
  for (const auto& c : kVarintCases) {
    // Every proper prefix of an encoding is NeedMore, never a wrong value.
    for (size_t n = 0; n < c.encoding.size(); ++n) {
      CAPTURE(c.value);
      CAPTURE(n);
      Bytes prefix(c.encoding.begin(), c.encoding.begin() + static_cast<long>(n));
      CHECK(mqtt::decode_varint(sp(prefix)).status == DecodeStatus::NeedMore);
    }
  }
  CHECK(mqtt::decode_varint(sp({0xFF, 0xFF, 0xFF})).status == DecodeStatus::NeedMore);
}

TEST_CASE("varint: non-minimal encodings are accepted when decoding") {
  auto r = mqtt::decode_varint(sp({0x80, 0x00}));
  REQUIRE(r.status == DecodeStatus::Ok);
  CHECK(r.value == 0);
  CHECK(r.length == 2);
  auto r2 = mqtt::decode_varint(sp({0x81, 0x80, 0x80, 0x00}));
  REQUIRE(r2.status == DecodeStatus::Ok);
  CHECK(r2.value == 1);
  CHECK(r2.length == 4);
}

TEST_CASE("peek_frame: complete header, body may be missing") {
  auto r = mqtt::peek_frame(sp({0x10, 0x00}));
  REQUIRE(r.status == DecodeStatus::Ok);
  CHECK(r.header.first_byte == 0x10);
  CHECK(r.header.type() == 1);
  CHECK(r.header.flags() == 0);
  CHECK(r.header.remaining_length == 0);
  CHECK(r.header.header_length == 2);
  CHECK(r.header.total_length() == 2);

  // PUBLISH QoS 1 retain (flags 0x3) with a 321-byte body of which only 1 byte is here.
  auto r2 = mqtt::peek_frame(sp({0x33, 0xC1, 0x02, 0x00}));
  REQUIRE(r2.status == DecodeStatus::Ok);
  CHECK(r2.header.type() == 3);
  CHECK(r2.header.flags() == 3);
  CHECK(r2.header.remaining_length == 321);
  CHECK(r2.header.header_length == 3);
  CHECK(r2.header.total_length() == 324);

  // Maximum length, 5-byte header.
  auto r3 = mqtt::peek_frame(sp({0x30, 0xFF, 0xFF, 0xFF, 0x7F}));
  REQUIRE(r3.status == DecodeStatus::Ok);
  CHECK(r3.header.remaining_length == mqtt::kMaxRemainingLength);
  CHECK(r3.header.header_length == 5);
  CHECK(r3.header.total_length() == size_t{mqtt::kMaxRemainingLength} + 5);

  // Flags are not checked here (that is each decoder's job).
  auto r4 = mqtt::peek_frame(sp({0x1F, 0x00}));
  REQUIRE(r4.status == DecodeStatus::Ok);
  CHECK(r4.header.flags() == 0xF);
}

TEST_CASE("peek_frame: truncated header needs more") {
  CHECK(mqtt::peek_frame(sp({})).status == DecodeStatus::NeedMore);
  CHECK(mqtt::peek_frame(sp({0x10})).status == DecodeStatus::NeedMore);
  CHECK(mqtt::peek_frame(sp({0x10, 0x80})).status == DecodeStatus::NeedMore);
  CHECK(mqtt::peek_frame(sp({0x30, 0xFF, 0xFF, 0xFF})).status == DecodeStatus::NeedMore);
}

TEST_CASE("peek_frame: malformed length and reserved type 0") {
  CHECK(mqtt::peek_frame(sp({0x30, 0xFF, 0xFF, 0xFF, 0xFF})).status == DecodeStatus::Malformed);
  CHECK(mqtt::peek_frame(sp({0x30, 0x80, 0x80, 0x80, 0x80, 0x00})).status ==
        DecodeStatus::Malformed);
  CHECK(mqtt::peek_frame(sp({0x00, 0x00})).status == DecodeStatus::Malformed);
  CHECK(mqtt::peek_frame(sp({0x0F, 0x02, 0x00, 0x00})).status == DecodeStatus::Malformed);
  // Every other type is framed (15 = AUTH).
  for (int t = 1; t <= 15; ++t) {
    CAPTURE(t);
    CHECK(mqtt::peek_frame(sp({static_cast<uint8_t>(t << 4), 0x00})).status == DecodeStatus::Ok);
  }
}

namespace {

// A stream of random packets with bodies of interesting sizes.
Bytes random_stream(std::mt19937& rng, int packets, std::vector<size_t>& ends) {
  static const uint32_t kLens[] = {0, 1, 2, 126, 127, 128, 129, 300, 16383, 16384, 20000};
  Bytes s;
  for (int i = 0; i < packets; ++i) {
    uint8_t first = static_cast<uint8_t>(((rng() % 15) + 1) << 4 | (rng() % 16));
    uint32_t len = (rng() % 3 == 0) ? kLens[rng() % std::size(kLens)] : rng() % 64;
    s.push_back(first);
    mqtt::append_varint(s, len);
    for (uint32_t k = 0; k < len; ++k) s.push_back(static_cast<uint8_t>(rng()));
    ends.push_back(s.size());
  }
  return s;
}

// Whole-buffer framing with peek_frame: the packet end offsets.
std::vector<size_t> frame_whole(const Bytes& s) {
  std::vector<size_t> ends;
  size_t pos = 0;
  while (pos < s.size()) {
    auto r = mqtt::peek_frame(std::span<const uint8_t>(s).subspan(pos));
    if (r.status != DecodeStatus::Ok || pos + r.header.total_length() > s.size()) break;
    pos += r.header.total_length();
    ends.push_back(pos);
  }
  return ends;
}

}  // namespace

TEST_CASE("peek_frame: whole-buffer framing finds every packet of a stream") {
  std::mt19937 rng(7);
  std::vector<size_t> ends;
  Bytes s = random_stream(rng, 200, ends);
  CHECK(frame_whole(s) == ends);
}

TEST_CASE("StreamScanner: random segmentations give whole-buffer boundaries") {
  std::mt19937 rng(2024);
  for (int round = 0; round < 60; ++round) {
    CAPTURE(round);
    std::vector<size_t> ends;
    Bytes s = random_stream(rng, 1 + static_cast<int>(rng() % 80), ends);
    REQUIRE(frame_whole(s) == ends);
    std::set<size_t> end_set(ends.begin(), ends.end());

    mqtt::StreamScanner sc;
    CHECK(sc.at_boundary());
    CHECK(sc.packets() == 0);
    size_t pos = 0;
    size_t max_chunk = (round % 3 == 0) ? 3 : (round % 3 == 1) ? 64 : 5000;
    while (pos < s.size()) {
      size_t n = 1 + rng() % max_chunk;
      if (n > s.size() - pos) n = s.size() - pos;
      REQUIRE(sc.feed(std::span<const uint8_t>(s).subspan(pos, n)));
      pos += n;
      // Packets completed so far = ends <= pos.
      uint64_t done = static_cast<uint64_t>(
          std::upper_bound(ends.begin(), ends.end(), pos) - ends.begin());
      REQUIRE(sc.packets() == done);
      REQUIRE(sc.at_boundary() == (end_set.count(pos) == 1));
      REQUIRE_FALSE(sc.malformed());
      if (!sc.at_boundary() && done < ends.size()) {
        // Inside packet number `done`: if its header is complete, body_left is
        // the distance to its end; inside the header it is 0.
        size_t start = done == 0 ? 0 : ends[done - 1];
        auto h = mqtt::peek_frame(std::span<const uint8_t>(s).subspan(start, pos - start));
        if (h.status == DecodeStatus::Ok) {
          REQUIRE(sc.body_left() == ends[done] - pos);
        } else {
          REQUIRE(h.status == DecodeStatus::NeedMore);
          REQUIRE(sc.body_left() == 0);
        }
      }
    }
    CHECK(sc.at_boundary());
    CHECK(sc.packets() == ends.size());
    CHECK(sc.body_left() == 0);
  }
}

TEST_CASE("StreamScanner: several packets in one chunk, empty chunks") {
  // PINGREQ, PINGRESP, PUBACK(id 1), then an incomplete PUBLISH header.
  Bytes s = {0xC0, 0x00, 0xD0, 0x00, 0x40, 0x02, 0x00, 0x01, 0x30};
  mqtt::StreamScanner sc;
  CHECK(sc.feed(std::span<const uint8_t>()));
  CHECK(sc.at_boundary());
  CHECK(sc.feed(sp(s)));
  CHECK(sc.packets() == 3);
  CHECK_FALSE(sc.at_boundary());
  CHECK(sc.feed(sp({0x82})));
  CHECK_FALSE(sc.at_boundary());
  CHECK(sc.body_left() == 0);  // still in the length
  CHECK(sc.feed(sp({0x01})));  // length 130
  CHECK(sc.body_left() == 130);
  CHECK(sc.feed(Bytes(129, 0x41)));
  CHECK(sc.body_left() == 1);
  CHECK(sc.packets() == 3);
  CHECK(sc.feed(sp({0x41, 0xC0})));
  CHECK(sc.packets() == 4);
  CHECK_FALSE(sc.at_boundary());
  CHECK(sc.feed(sp({0x00})));
  CHECK(sc.packets() == 5);
  CHECK(sc.at_boundary());
}

TEST_CASE("StreamScanner: maximum body length without buffering it") {
  mqtt::StreamScanner sc;
  CHECK(sc.feed(sp({0x30, 0xFF, 0xFF, 0xFF, 0x7F})));
  CHECK(sc.body_left() == mqtt::kMaxRemainingLength);
  Bytes chunk(1 << 20, 0x00);
  uint64_t left = mqtt::kMaxRemainingLength;
  int feeds = 0;
  while (left > 0 && feeds < 300) {
    size_t n = left < chunk.size() ? static_cast<size_t>(left) : chunk.size();
    REQUIRE(sc.feed(std::span<const uint8_t>(chunk).first(n)));
    left -= n;
    ++feeds;
    REQUIRE(sc.body_left() == left);
  }
  CHECK(left == 0);
  CHECK(sc.packets() == 1);
  CHECK(sc.at_boundary());
}

TEST_CASE("StreamScanner: malformed length is sticky") {
  mqtt::StreamScanner sc;
  CHECK(sc.feed(sp({0xC0, 0x00})));  // a valid PINGREQ first
  CHECK(sc.packets() == 1);
  CHECK(sc.feed(sp({0x30, 0xFF, 0xFF})));  // 2 of at most 4 length bytes: fine so far
  CHECK_FALSE(sc.malformed());
  CHECK(sc.feed(sp({0xFF})));
  CHECK_FALSE(sc.malformed());
  CHECK_FALSE(sc.feed(sp({0xFF})));  // continuation bit on the 4th length byte
  CHECK(sc.malformed());
  CHECK_FALSE(sc.at_boundary());
  // Stays malformed whatever follows, and counts nothing more.
  CHECK_FALSE(sc.feed(sp({0xC0, 0x00, 0xC0, 0x00})));
  CHECK(sc.malformed());
  CHECK(sc.packets() == 1);
}

TEST_CASE("StreamScanner: reserved packet type 0 is malformed like in peek_frame") {
  mqtt::StreamScanner ok;
  CHECK(ok.feed(sp({0xC0, 0x00, 0xF0, 0x00})));  // PINGREQ, AUTH
  CHECK(ok.packets() == 2);
  mqtt::StreamScanner bad;
  CHECK_FALSE(bad.feed(sp({0xC0, 0x00, 0x00, 0x00})));
  CHECK(bad.malformed());
  CHECK(bad.packets() == 1);
}

TEST_CASE("StreamScanner: one byte at a time equals one chunk, malformed included") {
  std::mt19937 rng(99);
  for (int round = 0; round < 200; ++round) {
    // Short random byte strings hit type 0 and 5-byte lengths often.
    Bytes s(rng() % 40, 0);
    for (auto& b : s) {
      uint32_t k = rng() % 4;
      b = k == 0 ? 0x00 : k == 1 ? 0xFF : k == 2 ? 0x80 : static_cast<uint8_t>(rng());
    }
    mqtt::StreamScanner whole, bytewise;
    bool w = whole.feed(sp(s));
    bool b = true;
    for (uint8_t c : s) b = bytewise.feed(std::span<const uint8_t>(&c, 1)) && b;
    CAPTURE(round);
    REQUIRE(w == b);
    REQUIRE(whole.malformed() == bytewise.malformed());
    REQUIRE(whole.packets() == bytewise.packets());
    REQUIRE(whole.at_boundary() == bytewise.at_boundary());
    REQUIRE(whole.body_left() == bytewise.body_left());
    // And equal to whole-buffer framing when not malformed.
    if (!whole.malformed()) {
      REQUIRE(whole.packets() == frame_whole(s).size());
    }
  }
}

TEST_CASE("StreamScanner::feed_to_boundary stops exactly at every packet end, whatever the chunks") {
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::vector<uint8_t> stream;
    std::vector<size_t> ends;
    int n = 1 + static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      uint32_t len = rng() % 4 == 0 ? 0 : rng() % (rng() % 2 ? 200 : 20000);
      stream.push_back(0x30);
      mqtt::append_varint(stream, len);
      for (uint32_t j = 0; j < len; ++j) stream.push_back(static_cast<uint8_t>(j));
      ends.push_back(stream.size());
    }
    mqtt::StreamScanner s;
    std::vector<size_t> seen;
    size_t pos = 0;
    while (pos < stream.size()) {
      size_t chunk = 1 + rng() % (rng() % 3 ? 7 : 30000);
      chunk = std::min(chunk, stream.size() - pos);
      std::span<const uint8_t> c(stream.data() + pos, chunk);
      while (!c.empty()) {
        size_t k = s.feed_to_boundary(c);
        REQUIRE(k > 0);
        REQUIRE(k <= c.size());
        pos += k;
        c = c.subspan(k);
        if (s.at_boundary()) seen.push_back(pos);
      }
    }
    CHECK(seen == ends);
    CHECK(s.packets() == ends.size());
  }
}

TEST_CASE("StreamScanner: raw() / set_raw() hand a stream over at any byte") {
  // What in-kernel forwarding does on a take-back: one scanner reads a prefix,
  // another continues from its raw state, and the boundaries are the same.
  std::mt19937 rng(77);
  for (int round = 0; round < 40; ++round) {
    CAPTURE(round);
    std::vector<size_t> ends;
    Bytes s = random_stream(rng, 1 + static_cast<int>(rng() % 40), ends);
    size_t cut = rng() % (s.size() + 1);
    mqtt::StreamScanner a, b;
    REQUIRE(a.feed(std::span<const uint8_t>(s).subspan(0, cut)));
    b.set_raw(a.raw(), a.packets());
    REQUIRE(b.feed(std::span<const uint8_t>(s).subspan(cut)));
    CHECK(b.at_boundary());
    CHECK(b.packets() == ends.size());
  }
  mqtt::StreamScanner bad;
  bad.set_raw(mqtt::StreamScanner::Raw{3, 0, 0, 1, 0}, 0);
  CHECK(bad.malformed());
}
