/* The MQTT framing of the in-kernel forwarding (docs/forwarding.md): fixed
 * header type byte, Remaining Length varint of at most 4 bytes, body. Shared,
 * as the same source, by the BPF verdict (splice.bpf.c, clang -target bpf) and
 * userspace (tests/fuzz/fuzz_splice_scan.cpp compares it with mqtt::StreamScanner).
 *
 * Pure: no BPF helper, no function pointer (BPF has none), no loop (the
 * verdict loops with bpf_loop, a step per call); the caller reads the bytes
 * (bpf_skb_load_bytes in the kernel) and keeps pos < len before each step.
 * A step returns 1 to stop the scan (malformed: `bad` is set), 0 to go on.
 *
 * The verdict scans a skb in the socket's `work` copy (splice_scan_begin),
 * and only when the whole skb is framed without error copies the framing
 * back (splice_scan_commit): a skb left to userspace leaves the state as it
 * was after the last redirected byte, for mqtt::StreamScanner to continue. */
#ifndef MQTTLB_SPLICE_SCAN_H
#define MQTTLB_SPLICE_SCAN_H

#include "splice_abi.h"

#define SPLICE_MAX_REMAINING 268435455u /* the MQTT maximum (0xFF 0xFF 0xFF 0x7F) */
#define SPLICE_SCAN_STEPS (1u << 16)    /* framing steps per skb (bpf_loop bound) */

/* The working copy for a skb of `len` bytes, from the socket's state. */
static inline void splice_scan_begin(struct splice_scan* w, const struct splice_state* s,
                                     __u32 len) {
  w->pos = 0;
  w->len = len;
  w->state = s->scan_state;
  w->body_left = s->body_left;
  w->len_value = s->len_value;
  w->len_mult = s->len_mult;
  w->len_bytes = s->len_bytes;
  w->max_packet = s->max_packet ? s->max_packet : SPLICE_MAX_REMAINING;
  w->packets = 0;
  w->bad = 0;
}

/* The framing after a skb scanned whole (the counters are the caller's:
 * the verdict adds them atomically). */
static inline void splice_scan_commit(struct splice_state* s, const struct splice_scan* w) {
  s->scan_state = w->state;
  s->body_left = w->body_left;
  s->len_value = w->len_value;
  s->len_mult = w->len_mult;
  s->len_bytes = w->len_bytes;
}

/* In SPLICE_SCAN_BODY: skips as much of the body as the skb holds. */
static inline int splice_scan_skip_body(struct splice_scan* c) {
  __u32 here = c->len - c->pos;
  __u32 k = c->body_left < here ? c->body_left : here;
  c->pos += k;
  c->body_left -= k;
  if (c->body_left == 0) {
    c->state = SPLICE_SCAN_TYPE;
    c->packets++;
  }
  return 0;
}

/* In SPLICE_SCAN_TYPE or SPLICE_SCAN_LENGTH: takes the header byte `b` at pos.
 * On a malformed byte, pos is past it. */
static inline int splice_scan_header_byte(struct splice_scan* c, __u8 b) {
  c->pos++;
  if (c->state == SPLICE_SCAN_TYPE) {
    if ((b >> 4) == 0) { /* packet type 0 is reserved: malformed */
      c->bad = 1;
      return 1;
    }
    c->state = SPLICE_SCAN_LENGTH;
    c->len_value = 0;
    c->len_mult = 1;
    c->len_bytes = 0;
    return 0;
  }
  /* SPLICE_SCAN_LENGTH */
  c->len_value += (b & 0x7Fu) * c->len_mult;
  c->len_mult *= 128;
  c->len_bytes++;
  if (b & 0x80) {
    if (c->len_bytes >= 4) { /* a 5th length byte: malformed [MQTT-1.5.5-1] */
      c->bad = 1;
      return 1;
    }
    return 0;
  }
  if (c->len_value > c->max_packet) {
    c->bad = 1;
    return 1;
  }
  c->body_left = c->len_value;
  if (c->body_left == 0) {
    c->state = SPLICE_SCAN_TYPE;
    c->packets++;
  } else {
    c->state = SPLICE_SCAN_BODY;
  }
  return 0;
}

#endif
