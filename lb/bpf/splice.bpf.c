/* In-kernel forwarding of a placed MQTT session (docs/forwarding.md).
 *
 * Both sockets of a session are in the `socks` sockhash (key: socket cookie)
 * with this program as their stream verdict (no stream parser: the skbs come
 * whole, in stream order, one socket at a time). For each skb read from a
 * socket the verdict:
 *   - leaves it to userspace (SK_PASS: the socket's own receive queue, read
 *     with recv()) when the socket is not in `states`, is in PASS mode, when
 *     the peer's unsent backlog is over max_inflight (backpressure), or when
 *     the MQTT framing is malformed;
 *   - drops a skb without data (a FIN: the socket shows the EOF anyway);
 *   - otherwise scans the MQTT fixed headers in it (packet count, framing
 *     state so userspace can take the stream back mid-packet), counts it and
 *     redirects it to the peer's egress.
 * A skb left to userspace does not change the state, so userspace continues
 * exactly from the last byte redirected. */
#include <linux/bpf.h>
/* after linux/bpf.h: it uses its types */
#include <bpf/bpf_helpers.h>

#include "splice_abi.h"
#include "splice_scan.h"

/* CO-RE: only the field used, relocated against the running kernel's BTF. */
struct tcp_sock {
  __u32 write_seq;
} __attribute__((preserve_access_index));

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, SPLICE_SLOTS);
  __type(key, __u64);
  __type(value, __u64);
} socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SPLICE_SLOTS);
  __type(key, __u64);   /* socket cookie */
  __type(value, __u32); /* index in states */
} slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SPLICE_SLOTS);
  __uint(map_flags, BPF_F_MMAPABLE);
  __type(key, __u32);
  __type(value, struct splice_state);
} states SEC(".maps");

struct scan_ctx {
  struct __sk_buff* skb;
  struct splice_scan* w;
};

/* One framing step (splice_scan.h): skip as much body as is here, or take
 * one header byte. Returns 1 to stop (end of skb or malformed). */
static long scan_step(__u32 i, void* data) {
  struct scan_ctx* x = data;
  struct splice_scan* c = x->w;
  (void)i;
  if (c->pos >= c->len) return 1;
  if (c->state == SPLICE_SCAN_BODY) return splice_scan_skip_body(c);
  __u8 b = 0;
  if (bpf_skb_load_bytes(x->skb, c->pos, &b, 1) < 0) {
    c->bad = 1;
    return 1;
  }
  return splice_scan_header_byte(c, b);
}

static int pass(struct splice_state* s, __u32 why) {
  s->mode = SPLICE_PASS;
  s->pass_reason = why;
  return SK_PASS;
}

static int verdict(struct __sk_buff* skb, struct splice_state* s);

SEC("sk_skb/stream_verdict")
int splice_verdict(struct __sk_buff* skb) {
  __u64 cookie = bpf_get_socket_cookie(skb);
  __u32* slot = bpf_map_lookup_elem(&slots, &cookie);
  if (!slot) return SK_PASS;
  __u32 idx = *slot;
  struct splice_state* s = bpf_map_lookup_elem(&states, &idx);
  if (!s) return SK_PASS;
  /* Full barriers both: userspace stores mode, then loads busy. */
  __sync_fetch_and_add(&s->busy, 1);
  int r = verdict(skb, s);
  __sync_fetch_and_add(&s->busy, 1);
  return r;
}

static __attribute__((noinline)) int verdict(struct __sk_buff* skb, struct splice_state* s) {
  /* A skb without data carries the FIN. Redirected, or passed while the
   * psock's backlog is not empty, the backlog would "send" 0 bytes and take
   * that for a broken pipe (EPIPE on the socket, its backlog stopped). The
   * FIN is in the socket state already: userspace reads the EOF. */
  if (skb->len == 0) return SK_DROP;
  if (s->mode != SPLICE_FORWARD) return SK_PASS;

  /* Backpressure: bytes redirected to the peer but not yet accepted by its
   * send queue (they wait in the peer's psock backlog, unbounded by the
   * kernel) are bytes_redirected - (peer write_seq - write_seq at start). */
  struct bpf_sock* peer = bpf_map_lookup_elem(&socks, &s->peer);
  if (!peer) return pass(s, SPLICE_WHY_NO_PEER);
  struct tcp_sock* tp = bpf_skc_to_tcp_sock(peer);
  __u32 ws = tp ? tp->write_seq : 0;
  bpf_sk_release(peer);
  if (!tp) return pass(s, SPLICE_WHY_NO_PEER);
  if (!s->ws0_set) {
    s->peer_ws0 = ws;
    s->ws0_set = 1;
  }
  __u32 accepted = ws - s->peer_ws0;
  __u32 inflight = (__u32)s->bytes - accepted;
  if (inflight > s->max_inflight) return pass(s, SPLICE_WHY_BACKPRESSURE);

  struct splice_scan* w = &s->work;
  splice_scan_begin(w, s, skb->len);
  struct scan_ctx c = {.skb = skb, .w = w};
  bpf_loop(SPLICE_SCAN_STEPS, scan_step, &c, 0);
  if (w->bad) return pass(s, SPLICE_WHY_MALFORMED);
  if (w->pos < w->len) return pass(s, SPLICE_WHY_SCAN);

  splice_scan_commit(s, w);
  __sync_fetch_and_add(&s->packets, w->packets);
  __sync_fetch_and_add(&s->bytes, skb->len);
  s->last_ns = bpf_ktime_get_ns();
  return bpf_sk_redirect_hash(skb, &socks, &s->peer, 0);
}

char _license[] SEC("license") = "GPL";
