// In-kernel forwarding of a placed plain-TCP session (docs/forwarding.md):
// the client's and the broker's sockets joined in a BPF sockhash whose stream
// verdict (lb/bpf/splice.bpf.c) redirects each skb to the other socket, so the
// forwarded bytes never come up to userspace.
//
// SpliceEngine: the loaded program and its maps, once per process (any
// thread; the map calls are syscalls). KernelSplice: one joined session,
// owned by its Pump on the session's worker loop.
//
// Take-back (the pump wants the bytes again: an event on a side, finish_with,
// or the verdict gave a skb to userspace by itself): both sockets are set to
// PASS (the verdict leaves every later skb in the socket's own receive queue,
// where recv() reads it), then the pump waits until every byte the kernel
// redirected is in the peer's send queue (drained()) before it writes there
// itself — no byte lost, none reordered. The sockets stay in the sockhash
// (leaving it would drop what waits in the psock queue) until they close.
#pragma once

#include <cstdint>
#include <string>

#include "mqtt/frame.hpp"

namespace lb {

// Why a session that could have been forwarded in the kernel is not (or no
// longer) — mqttlb_kernel_fallbacks_total{reason}.
enum class SpliceFallback : uint8_t {
  Unavailable,   // the programs did not load (no BPF, no privileges, built without)
  Transport,     // TLS / WebSocket on a side: userspace only
  JoinFailed,    // the map update failed (sockhash full, socket state)
  Backpressure,  // a slow reader: the peer's backlog passed the bound
  Malformed,     // the framing went bad (kept byte for byte by the pump)
  Event,         // a side half-closed, a packet to inject, a drain, shutdown
  Count
};
const char* to_string(SpliceFallback f);

class SpliceEngine {
 public:
  // The process's engine, loaded on first call; nullptr when it cannot be
  // (then `why` says why, the same text each time).
  static SpliceEngine* get(std::string* why);
  int socks_fd() const { return socks_fd_; }
  int states_fd() const { return states_fd_; }

 private:
  SpliceEngine() = default;
  int socks_fd_ = -1;
  int states_fd_ = -1;
};

class KernelSplice {
 public:
  // Redirected to the peer but not yet in its send queue, at most, per
  // direction: past it the verdict hands the session back (backpressure).
  static constexpr uint64_t kMaxInflight = 256 * 1024;

  struct Dir {
    uint64_t bytes = 0, packets = 0;  // totals redirected so far
    mqtt::StreamScanner::Raw scan;    // framing after the last redirected byte
    bool passed = false;              // the verdict gave a skb to userspace
    uint32_t pass_reason = 0;         // SPLICE_WHY_*
  };
  struct Sample {
    Dir c2b, b2c;
    uint64_t last_ns = 0;  // CLOCK_MONOTONIC of the last redirect either way (0: none)
  };

  explicit KernelSplice(SpliceEngine& e) : e_(e) {}
  ~KernelSplice();  // removes the states entries (the sockets leave the map on close)
  KernelSplice(const KernelSplice&) = delete;
  KernelSplice& operator=(const KernelSplice&) = delete;

  // Joins two connected sockets with nothing queued in userspace. 0 or -errno
  // (then nothing is left in the maps). c2b / b2c: the framing so far.
  int join(int client_fd, int backend_fd, const mqtt::StreamScanner::Raw& c2b,
           const mqtt::StreamScanner::Raw& b2c);
  bool sample(Sample& out) const;
  // Take-back: the verdict passes every later skb of both sockets to userspace.
  void pass_both();
  // After pass_both(): every redirected byte reached the peer's send queue.
  bool drained() const;
  // Bytes TCP received on the client's / the broker's socket since the join
  // (a FIN counts 1): an EOF read by userspace is the end of the stream only
  // when every one of them was redirected or read (a skb the verdict passed
  // may wait in the psock's backlog while the FIN is already visible).
  uint64_t received(bool client) const;
  // Whether `read` bytes read by userspace from the client's / the broker's
  // socket since the join, plus what the verdict redirected from it, are more
  // than TCP received there: the kernel handed a stretch out twice (seen on
  // 6.18 after a take-back, docs/forwarding.md "Known defect"). False when
  // TCP_INFO cannot be read. `excess` gets the difference.
  bool overread(bool client, uint64_t read, uint64_t& excess) const;

 private:
  // received() when TCP_INFO can be read.
  bool received_since_join(bool client, uint64_t& out) const;
  // Bytes written into fd's send queue since connect (+1 for the SYN).
  static uint64_t queued_total(int fd);
  static uint64_t received_total(int fd);
  void release();  // slots entries and slots given back

  SpliceEngine& e_;
  int cfd_ = -1, bfd_ = -1;
  uint64_t ccookie_ = 0, bcookie_ = 0;
  uint64_t cslot_ = 0, bslot_ = 0;                       // index + 1 in the states array (0: none)
  uint64_t cq0_ = 0, bq0_ = 0;                           // queued_total at join
  uint64_t cr0_ = 0, br0_ = 0;                           // bytes received at join
  bool joined_client_ = false, joined_backend_ = false;  // in the sockhash
};

}  // namespace lb
