// libFuzzer target for the in-kernel forwarding's MQTT framing
// (lb/bpf/splice_scan.h, the code the BPF verdict runs), differential against
// the pump's framer (mqtt::StreamScanner) plus the verdict's max_packet rule.
//
// Input: byte 0 picks max_packet (0: the verdict's default, the MQTT
// maximum), byte 1 the segmentation and a take-back point, the rest is the
// stream read from one socket. The stream is cut into segments (the skbs) and
// each goes through a copy of the verdict's loop: splice_scan_begin from the
// socket's state, at most SPLICE_SCAN_STEPS steps reading bytes only inside
// the segment, then on success splice_scan_commit (a malformed or unfinished
// segment is left to userspace and changes nothing). Asserts, for any input:
//  - after every committed segment, the state (packet count, framing state,
//    body left, the length being read) is the oracle's after the same prefix:
//    userspace can continue there exactly (as the pump does after a take-back);
//  - "malformed" at the same byte as the oracle (packet type 0, a 5th length
//    byte, a Remaining Length over max_packet), never earlier or later;
//  - the same results whole, byte by byte and in input-chosen segments, and
//    StreamScanner fed the same segments agrees at each boundary;
//  - handed to a StreamScanner at any point (the take-back's Raw state), the
//    whole stream's packet count and verdict are the ones of one scanner.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "lb/bpf/splice_scan.h"
#include "mqtt/frame.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

using Raw = mqtt::StreamScanner::Raw;

// The oracle after a prefix of the stream: StreamScanner fed byte by byte,
// malformed too when a complete Remaining Length is over max_packet.
struct Point {
  uint64_t packets = 0;
  Raw raw;
  bool bad = false;
};

std::vector<Point> oracle(std::span<const uint8_t> in, uint32_t max_packet) {
  std::vector<Point> pts(in.size() + 1);
  mqtt::StreamScanner s;
  bool bad = false;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!bad) {
      const uint8_t before = s.raw().state;
      bad = !s.feed(in.subspan(i, 1));
      // A length just completed: Body with the whole body left.
      if (!bad && before == SPLICE_SCAN_LENGTH && s.raw().state == SPLICE_SCAN_BODY &&
          s.body_left() > max_packet)
        bad = true;
    }
    pts[i + 1] = Point{s.packets(), s.raw(), bad};
  }
  return pts;
}

uint32_t pick_max_packet(uint8_t sel) {
  if (sel == 0) return 0;                       // default: SPLICE_MAX_REMAINING
  if (sel <= 128) return sel - 1u;              // 0..127: bodies in the seeds
  if (sel == 255) return SPLICE_MAX_REMAINING;  // explicit maximum
  return 128u << ((sel - 129u) % 21u);          // 128 .. 128 << 20
}

// A sk_skb as the verdict sees it: only bpf_skb_load_bytes of 1 byte.
struct Skb {
  const std::vector<uint8_t>* data;
};

long load_byte(const Skb& skb, uint32_t off, uint8_t* b) {
  FUZZ_CHECK(off < skb.data->size());  // the verdict never asks past the skb
  *b = (*skb.data)[off];
  return 0;
}

// splice.bpf.c's scan_step, with load_byte for bpf_skb_load_bytes.
long scan_step(const Skb& skb, splice_scan* c) {
  if (c->pos >= c->len) return 1;
  if (c->state == SPLICE_SCAN_BODY) return splice_scan_skip_body(c);
  uint8_t b = 0;
  if (load_byte(skb, c->pos, &b) < 0) {
    c->bad = 1;
    return 1;
  }
  return splice_scan_header_byte(c, b);
}

Raw raw_of(const splice_state& s) {  // as KernelSplice::sample reads it
  Raw r;
  r.state = static_cast<uint8_t>(s.scan_state);
  r.body_left = s.body_left;
  r.len_value = s.len_value;
  r.len_mult = s.len_mult;
  r.len_bytes = static_cast<uint8_t>(s.len_bytes);
  return r;
}

void check_same(const splice_state& s, uint64_t packets, const Point& p) {
  FUZZ_CHECK(!p.bad);
  FUZZ_CHECK(packets == p.packets);
  FUZZ_CHECK(s.scan_state == p.raw.state);
  FUZZ_CHECK(s.body_left == p.raw.body_left);
  if (s.scan_state == SPLICE_SCAN_LENGTH) {
    FUZZ_CHECK(s.len_value == p.raw.len_value);
    FUZZ_CHECK(s.len_mult == p.raw.len_mult);
    FUZZ_CHECK(s.len_bytes == p.raw.len_bytes);
  }
}

struct Run {
  size_t committed = 0;  // bytes the kernel forwarded
  uint64_t packets = 0;  // packets it counted in them
  bool bad = false;      // a segment was left to userspace as malformed
  size_t bad_at = 0;     // the malformed byte
  uint64_t total = 0;    // packets with the rest framed in userspace
  bool total_bad = false;
};

// Runs the stream through the verdict's scan in `sizes` segments, taking the
// stream back to userspace after segment `takeback` (or when the verdict
// passes one).
Run run(std::span<const uint8_t> in, const std::vector<size_t>& sizes, uint32_t max_packet,
        size_t takeback, const std::vector<Point>& pts) {
  splice_state st;
  std::memset(&st, 0, sizeof st);
  const Raw r0 = mqtt::StreamScanner().raw();  // as KernelSplice::join sets it
  st.scan_state = r0.state;
  st.len_mult = r0.len_mult;
  st.max_packet = max_packet;
  Run out;
  size_t seg = 0;
  for (size_t n : sizes) {
    if (seg++ == takeback || n == 0) break;
    // The skb: a copy of exactly its bytes (ASan sees a read past it).
    const std::vector<uint8_t> bytes(in.begin() + out.committed, in.begin() + out.committed + n);
    const Skb skb{&bytes};
    splice_scan* w = &st.work;
    splice_scan_begin(w, &st, static_cast<uint32_t>(n));
    for (uint32_t i = 0; i < SPLICE_SCAN_STEPS; ++i) {  // bpf_loop
      const long stop = scan_step(skb, w);
      FUZZ_CHECK(w->pos <= w->len);
      if (stop) break;
    }
    if (w->bad) {
      FUZZ_CHECK(w->pos >= 1);
      out.bad = true;
      out.bad_at = out.committed + w->pos - 1;
      FUZZ_CHECK(pts[out.bad_at + 1].bad && !pts[out.bad_at].bad);
      break;
    }
    // Every step takes at least one byte: a skb within the bound is framed whole.
    FUZZ_CHECK(w->pos == w->len || n > SPLICE_SCAN_STEPS);
    if (w->pos < w->len) break;  // SPLICE_WHY_SCAN: userspace takes it
    splice_scan_commit(&st, w);
    out.packets += w->packets;
    out.committed += n;
    check_same(st, out.packets, pts[out.committed]);
  }
  if (!out.bad) FUZZ_CHECK(!pts[out.committed].bad);
  // The take-back: userspace continues from the committed state.
  mqtt::StreamScanner user;
  user.set_raw(raw_of(st), out.packets);
  user.feed(in.subspan(out.committed));
  out.total = user.packets();
  out.total_bad = user.malformed();
  return out;
}

std::vector<size_t> chosen_sizes(std::span<const uint8_t> in, uint8_t sel) {
  static constexpr size_t kMax[4] = {3, 16, 200, 1500};
  uint64_t h = (fuzz_hash(in.data(), in.size()) ^ sel) | 1;
  std::vector<size_t> sizes;
  for (size_t left = in.size(); left > 0;) {
    h ^= h << 13;  // xorshift64
    h ^= h >> 7;
    h ^= h << 17;
    size_t n = 1 + static_cast<size_t>(h % kMax[sel & 3]);
    if (n > left) n = left;
    sizes.push_back(n);
    left -= n;
  }
  return sizes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint32_t max_packet = pick_max_packet(data[0]);
  const uint8_t seg_sel = data[1];
  const std::span<const uint8_t> in(data + 2, size - 2);
  const uint32_t limit = max_packet ? max_packet : SPLICE_MAX_REMAINING;
  const std::vector<Point> pts = oracle(in, limit);
  const Point& end = pts.back();
  // Malformed first at bad_at in the oracle.
  size_t oracle_bad_at = in.size();
  for (size_t i = 0; i < in.size(); ++i)
    if (pts[i + 1].bad) {
      oracle_bad_at = i;
      break;
    }

  const std::vector<size_t> whole =
      in.empty() ? std::vector<size_t>{} : std::vector<size_t>{in.size()};
  const std::vector<size_t> bytewise(in.size(), 1);
  const std::vector<size_t> chosen = chosen_sizes(in, seg_sel);
  const size_t never = SIZE_MAX;
  const Run a = run(in, whole, max_packet, never, pts);
  const Run b = run(in, bytewise, max_packet, never, pts);
  const Run c = run(in, chosen, max_packet, never, pts);
  // Take back after an input-chosen segment (0: before the first).
  const Run d = run(in, chosen, max_packet, (seg_sel >> 2) % (chosen.size() + 1), pts);

  for (const Run* r : {&b, &c}) {  // the segmentation changes nothing
    FUZZ_CHECK(r->bad == end.bad);
    if (r->bad) FUZZ_CHECK(r->bad_at == oracle_bad_at);
  }
  FUZZ_CHECK(b.packets == end.packets || end.bad);
  if (!end.bad) {
    FUZZ_CHECK(b.committed == in.size() && c.committed == in.size());
    FUZZ_CHECK(c.packets == end.packets);
  }
  // The whole input is one skb: passed as a whole when over the step bound.
  if (in.size() <= SPLICE_SCAN_STEPS) {
    FUZZ_CHECK(a.bad == end.bad);
    if (a.bad) FUZZ_CHECK(a.bad_at == oracle_bad_at);
    if (!end.bad) FUZZ_CHECK(a.packets == end.packets);
  }
  // Continued in userspace, the stream frames as one scanner's: the same
  // count and verdict whatever the kernel did first (userspace has no
  // max_packet: only at the MQTT maximum).
  if (limit == SPLICE_MAX_REMAINING) {
    mqtt::StreamScanner one;
    one.feed(in);
    for (const Run* r : {&a, &b, &c, &d}) {
      FUZZ_CHECK(r->total == one.packets());
      FUZZ_CHECK(r->total_bad == one.malformed());
    }
  }
  // The pump's framer fed the same segments agrees at every boundary.
  {
    mqtt::StreamScanner s;
    size_t pos = 0;
    for (size_t n : chosen) {
      s.feed(in.subspan(pos, n));
      pos += n;
      if (pts[pos].bad) break;
      FUZZ_CHECK(s.packets() == pts[pos].packets && s.raw().state == pts[pos].raw.state);
    }
  }
  return 0;
}
