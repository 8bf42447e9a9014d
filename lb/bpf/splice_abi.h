/* What the BPF verdict program (splice.bpf.c) and userspace (lb/kernel_splice.cpp)
 * share: one entry per joined socket in the "states" array (BPF_F_MMAPABLE:
 * userspace reads and writes it in place), at the slot the "slots" hash gives
 * for the socket's cookie (SO_COOKIE). Plain C: compiled by clang -target bpf too.
 *
 * Writers: the verdict, one skb of a socket at a time, writes everything but
 * `mode` = SPLICE_PASS set by userspace; userspace initialises the entry
 * before the socket joins. `busy` is odd while a verdict runs on the entry
 * (userspace waits for it to be even before it trusts `bytes` after PASS). */
#ifndef MQTTLB_SPLICE_ABI_H
#define MQTTLB_SPLICE_ABI_H

#include <linux/types.h>

/* mode: what the verdict does with the next skb read from this socket. */
#define SPLICE_FORWARD 0 /* redirect to the peer's egress */
#define SPLICE_PASS 1    /* leave it to userspace (the socket's own receive queue) */

/* Why the verdict turned a socket to SPLICE_PASS by itself (pass_reason). */
#define SPLICE_WHY_NONE 0
#define SPLICE_WHY_BACKPRESSURE 1 /* the peer has more than max_inflight unsent */
#define SPLICE_WHY_MALFORMED 2    /* a Remaining Length over 4 bytes / over max_packet */
#define SPLICE_WHY_NO_PEER 3      /* the peer left the map (closing) */
#define SPLICE_WHY_SCAN 4         /* more packets in one skb than the scan bound */

/* MQTT framing state of the stream read from this socket, before the next
 * byte (mqtt::StreamScanner's, so userspace can continue it). */
#define SPLICE_SCAN_TYPE 0
#define SPLICE_SCAN_LENGTH 1
#define SPLICE_SCAN_BODY 2

#define SPLICE_SLOTS 65536 /* sockets joined at once (two per session) */

/* The verdict's working copy of the framing while it scans one skb: in the
 * socket's own entry (a socket's skbs are read one at a time, under its
 * lock), not per CPU (a softirq can interrupt a verdict run from process
 * context on the same CPU), not on the stack (the verifier would track its
 * fields as constants across bpf_loop iterations and never converge). */
struct splice_scan {
  __u32 pos, len;
  __u32 state, body_left, len_value, len_mult, len_bytes, max_packet;
  __u64 packets;
  __u32 bad, pad;
};

struct splice_state {
  __u64 peer;         /* cookie of the socket this one's bytes go to */
  __u64 bytes;        /* bytes redirected to the peer */
  __u64 packets;      /* complete MQTT packets redirected */
  __u64 last_ns;      /* bpf_ktime_get_ns() of the last redirect */
  __u64 max_inflight; /* redirected but not yet in the peer's send queue, at most */
  __u32 max_packet;   /* largest Remaining Length forwarded (0: the MQTT maximum) */
  __u32 mode;         /* SPLICE_FORWARD / SPLICE_PASS */
  __u32 pass_reason;  /* SPLICE_WHY_* when the verdict set SPLICE_PASS */
  __u32 peer_ws0;     /* peer's tcp write_seq before the first redirect */
  __u32 ws0_set;      /* peer_ws0 is valid */
  /* framing (SPLICE_SCAN_*) */
  __u32 scan_state;
  __u32 body_left;
  __u32 len_value;
  __u32 len_mult;
  __u32 len_bytes;
  __u32 busy;
  __u32 pad;
  struct splice_scan work; /* the verdict's only */
};

#endif
