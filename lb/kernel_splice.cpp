#include "lb/kernel_splice.hpp"

#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>

#ifdef MQTTLB_HAVE_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>

#include "lb/bpf/splice_abi.h"

// The compiled lb/bpf/splice.bpf.c (generated at build time).
extern const unsigned char kSpliceBpfObject[];
extern const size_t kSpliceBpfObjectSize;
#endif

namespace lb {

const char* to_string(SpliceFallback f) {
  switch (f) {
    case SpliceFallback::Unavailable:
      return "unavailable";
    case SpliceFallback::Transport:
      return "transport";
    case SpliceFallback::JoinFailed:
      return "join_failed";
    case SpliceFallback::Backpressure:
      return "backpressure";
    case SpliceFallback::Malformed:
      return "malformed";
    case SpliceFallback::Event:
      return "take_back";
    case SpliceFallback::Count:
      break;
  }
  return "?";
}

#ifndef MQTTLB_HAVE_BPF

SpliceEngine* SpliceEngine::get(std::string* why) {
  if (why) *why = "mqttlb was built without BPF (MQTTLB_BPF=OFF: no clang or libbpf at build time)";
  return nullptr;
}
KernelSplice::~KernelSplice() = default;
int KernelSplice::join(int, int, const mqtt::StreamScanner::Raw&, const mqtt::StreamScanner::Raw&) {
  return -ENOSYS;
}
bool KernelSplice::sample(Sample&) const {
  return false;
}
void KernelSplice::pass_both() {}
bool KernelSplice::drained() const {
  return true;
}
uint64_t KernelSplice::queued_total(int) {
  return 0;
}
uint64_t KernelSplice::received_total(int) {
  return 0;
}
uint64_t KernelSplice::received(bool) const {
  return 0;
}
bool KernelSplice::overread(bool, uint64_t, uint64_t&) const {
  return false;
}
void KernelSplice::release() {}

#else

namespace {

// A full barrier against the BPF program reading the same mmapped slots on
// another CPU. gcc refuses std::atomic_thread_fence under ThreadSanitizer
// (-Wtsan, an error with -Werror); TSan cannot see the kernel's side anyway,
// so its builds use the builtin barrier.
inline void full_barrier() {
#if defined(__SANITIZE_THREAD__)
  __sync_synchronize();
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// The mmapped states array and its free slots: all workers share them.
struct Shared {
  std::mutex mu;
  // Guarded by mu. FIFO: a slot is reused as late as possible, long after a
  // verdict that looked it up before its socket left could still write it.
  std::deque<uint32_t> free;
  splice_state* states = nullptr;
  int slots_fd = -1;
  bpf_object* obj = nullptr;  // loaded once, kept for the process's life (the maps with it)
  std::string why;
};
Shared g;
SpliceEngine* g_engine = nullptr;
std::once_flag g_once;
std::string g_libbpf_log;

int libbpf_log(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  if (g_libbpf_log.size() < 4096) g_libbpf_log += buf;
  return 0;
}

uint64_t cookie_of(int fd) {
  uint64_t c = 0;
  socklen_t n = sizeof c;
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &n) != 0) return 0;
  return c;
}

uint32_t take_slot() {
  std::lock_guard<std::mutex> l(g.mu);
  if (g.free.empty()) return UINT32_MAX;
  uint32_t s = g.free.front();
  g.free.pop_front();
  return s;
}

void give_slot(uint32_t s) {
  std::lock_guard<std::mutex> l(g.mu);
  g.free.push_back(s);
}

splice_state* state_at(uint64_t slot_plus_one) {
  return slot_plus_one ? &g.states[slot_plus_one - 1] : nullptr;
}

}  // namespace

SpliceEngine* SpliceEngine::get(std::string* why) {
  std::call_once(g_once, [] {
    libbpf_set_print(libbpf_log);
    bpf_object_open_opts opts{};
    opts.sz = sizeof opts;
    opts.object_name = "mqttlb_splice";
    bpf_object* obj = bpf_object__open_mem(kSpliceBpfObject, kSpliceBpfObjectSize, &opts);
    if (!obj) {
      g.why = "the BPF object does not open: " + g_libbpf_log;
      return;
    }
    if (int r = bpf_object__load(obj); r != 0) {
      g.why = std::string("the BPF programs do not load: ") + strerror(-r) +
              " (they need root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON, and Linux 5.17+ with "
              "BTF); libbpf says: " +
              g_libbpf_log;
      bpf_object__close(obj);
      return;
    }
    g.obj = obj;
    static SpliceEngine engine;  // lives as long as the process
    SpliceEngine* e = &engine;
    e->socks_fd_ = bpf_object__find_map_fd_by_name(obj, "socks");
    e->states_fd_ = bpf_object__find_map_fd_by_name(obj, "states");
    g.slots_fd = bpf_object__find_map_fd_by_name(obj, "slots");
    bpf_program* prog = bpf_object__find_program_by_name(obj, "splice_verdict");
    int pfd = prog ? bpf_program__fd(prog) : -1;
    auto fail = [&](std::string why) {
      g.why = std::move(why);
      bpf_object__close(obj);
      g.obj = nullptr;
    };
    if (e->socks_fd_ < 0 || e->states_fd_ < 0 || g.slots_fd < 0 || pfd < 0)
      return fail("the BPF object lacks its maps or program");
    if (bpf_prog_attach(pfd, e->socks_fd_, BPF_SK_SKB_STREAM_VERDICT, 0) != 0)
      return fail(std::string("attaching the stream verdict failed: ") + strerror(errno));
    void* m = mmap(nullptr, sizeof(splice_state) * SPLICE_SLOTS, PROT_READ | PROT_WRITE, MAP_SHARED,
                   e->states_fd_, 0);
    if (m == MAP_FAILED)
      return fail(std::string("mmap of the states map failed: ") + strerror(errno));
    g.states = static_cast<splice_state*>(m);
    for (uint32_t i = 0; i < SPLICE_SLOTS; ++i) g.free.push_back(i);
    g_engine = e;
  });
  if (!g_engine && why) *why = g.why;
  return g_engine;
}

uint64_t KernelSplice::queued_total(int fd) {
  tcp_info ti{};
  socklen_t n = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &n) != 0) return 0;
  int outq = 0;
  if (ioctl(fd, SIOCOUTQ, &outq) != 0) return 0;
  // snd_una - isn, plus write_seq - snd_una.
  return ti.tcpi_bytes_acked + static_cast<uint64_t>(outq);
}

uint64_t KernelSplice::received_total(int fd) {
  tcp_info ti{};
  socklen_t n = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &n) != 0) return UINT64_MAX;
  return ti.tcpi_bytes_received;
}

bool KernelSplice::received_since_join(bool client, uint64_t& out) const {
  const uint64_t now = received_total(client ? cfd_ : bfd_);
  const uint64_t base = client ? cr0_ : br0_;
  if (now == UINT64_MAX || now < base) return false;
  out = now - base;
  return true;
}

uint64_t KernelSplice::received(bool client) const {
  uint64_t n = 0;
  return received_since_join(client, n) ? n : 0;
}

bool KernelSplice::overread(bool client, uint64_t read, uint64_t& excess) const {
  const splice_state* st = state_at(client ? cslot_ : bslot_);
  uint64_t rcv = 0;
  if (!st || !received_since_join(client, rcv)) return false;
  const uint64_t got = read + __atomic_load_n(&st->bytes, __ATOMIC_ACQUIRE);
  if (got <= rcv) return false;
  excess = got - rcv;
  return true;
}

int KernelSplice::join(int client_fd, int backend_fd, const mqtt::StreamScanner::Raw& c2b,
                       const mqtt::StreamScanner::Raw& b2c) {
  // Not with unread bytes: the verdict reads whole skbs, so the rest of one
  // the pump read in part would be forwarded whole (its head twice). The
  // pump is reading them now; it tries again after.
  int inq = 0;
  // Cheap first (a busy session fails here, once per forwarded chunk).
  if (ioctl(client_fd, SIOCINQ, &inq) != 0 || inq != 0) return -EAGAIN;
  if (ioctl(backend_fd, SIOCINQ, &inq) != 0 || inq != 0) return -EAGAIN;
  // The received baselines before the check that counts: whatever came
  // after it is either redirected or read, and counted so.
  const uint64_t cr0 = received_total(client_fd), br0 = received_total(backend_fd);
  if (ioctl(client_fd, SIOCINQ, &inq) != 0 || inq != 0) return -EAGAIN;
  if (ioctl(backend_fd, SIOCINQ, &inq) != 0 || inq != 0) return -EAGAIN;
  uint64_t cc = cookie_of(client_fd), bc = cookie_of(backend_fd);
  if (!cc || !bc) return -errno;
  uint32_t cs = take_slot();
  if (cs == UINT32_MAX) return -ENOSPC;
  uint32_t bs = take_slot();
  if (bs == UINT32_MAX) {
    give_slot(cs);
    return -ENOSPC;
  }
  auto init = [](splice_state& s, uint64_t peer, const mqtt::StreamScanner::Raw& r) {
    std::memset(&s, 0, sizeof s);
    s.peer = peer;
    s.max_inflight = kMaxInflight;
    s.scan_state = r.state;
    s.body_left = static_cast<uint32_t>(r.body_left);
    s.len_value = r.len_value;
    s.len_mult = r.len_mult;
    s.len_bytes = r.len_bytes;
  };
  init(g.states[cs], bc, c2b);
  init(g.states[bs], cc, b2c);
  full_barrier();
  cslot_ = cs + 1;
  bslot_ = bs + 1;
  cfd_ = client_fd;
  bfd_ = backend_fd;
  ccookie_ = cc;
  bcookie_ = bc;
  cr0_ = cr0;
  br0_ = br0;
  cq0_ = queued_total(client_fd);
  bq0_ = queued_total(backend_fd);

  if (bpf_map_update_elem(g.slots_fd, &cc, &cs, BPF_NOEXIST) != 0 ||
      bpf_map_update_elem(g.slots_fd, &bc, &bs, BPF_NOEXIST) != 0) {
    int err = -errno;
    release();
    return err;
  }
  uint64_t v = static_cast<uint64_t>(client_fd);
  if (bpf_map_update_elem(e_.socks_fd(), &cc, &v, BPF_NOEXIST) != 0) {
    int err = -errno;
    release();
    return err;
  }
  v = static_cast<uint64_t>(backend_fd);
  if (bpf_map_update_elem(e_.socks_fd(), &bc, &v, BPF_NOEXIST) != 0) {
    // The client's socket stays in the map (leaving would drop what its psock
    // holds): in PASS mode it reads as before.
    int err = -errno;
    pass_both();
    joined_client_ = true;
    return err;
  }
  joined_client_ = joined_backend_ = true;
  // Bytes that came between the pump's last read and the join wait in the
  // receive queue until the next skb: SO_RCVLOWAT's setter runs the data
  // ready callback (the verdict) now.
  int one = 1;
  setsockopt(client_fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  setsockopt(backend_fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  return 0;
}

void KernelSplice::release() {
  if (ccookie_) bpf_map_delete_elem(g.slots_fd, &ccookie_);
  if (bcookie_) bpf_map_delete_elem(g.slots_fd, &bcookie_);
  ccookie_ = bcookie_ = 0;
  if (cslot_) give_slot(static_cast<uint32_t>(cslot_ - 1));
  if (bslot_) give_slot(static_cast<uint32_t>(bslot_ - 1));
  cslot_ = bslot_ = 0;
}

KernelSplice::~KernelSplice() {
  // A verdict still running on a slot finishes before the slot is reused:
  // deleting the slots entries first stops new ones; RCU ends running ones
  // before the map update of the next join returns.
  release();
}

bool KernelSplice::sample(Sample& out) const {
  const splice_state* c = state_at(cslot_);
  const splice_state* b = state_at(bslot_);
  if (!c || !b) return false;
  auto dir = [](const splice_state& s, Dir& d) {
    d.bytes = __atomic_load_n(&s.bytes, __ATOMIC_ACQUIRE);
    d.packets = __atomic_load_n(&s.packets, __ATOMIC_RELAXED);
    d.scan.state = static_cast<uint8_t>(s.scan_state);
    d.scan.body_left = s.body_left;
    d.scan.len_value = s.len_value;
    d.scan.len_mult = s.len_mult;
    d.scan.len_bytes = static_cast<uint8_t>(s.len_bytes);
    uint32_t mode = __atomic_load_n(&s.mode, __ATOMIC_RELAXED);
    d.pass_reason = mode == SPLICE_PASS ? s.pass_reason : 0;
    d.passed = d.pass_reason != SPLICE_WHY_NONE;
  };
  dir(*c, out.c2b);
  dir(*b, out.b2c);
  uint64_t lc = __atomic_load_n(&c->last_ns, __ATOMIC_RELAXED);
  uint64_t lb = __atomic_load_n(&b->last_ns, __ATOMIC_RELAXED);
  out.last_ns = lc > lb ? lc : lb;
  return true;
}

void KernelSplice::pass_both() {
  if (splice_state* c = state_at(cslot_)) __atomic_store_n(&c->mode, SPLICE_PASS, __ATOMIC_SEQ_CST);
  if (splice_state* b = state_at(bslot_)) __atomic_store_n(&b->mode, SPLICE_PASS, __ATOMIC_SEQ_CST);
  full_barrier();
}

bool KernelSplice::drained() const {
  const splice_state* c = state_at(cslot_);
  const splice_state* b = state_at(bslot_);
  if (!c || !b) return true;
  // No verdict between its mode check and its commit (an odd count), then
  // every byte counted has reached the peer's send queue.
  if ((__atomic_load_n(&c->busy, __ATOMIC_SEQ_CST) & 1) ||
      (__atomic_load_n(&b->busy, __ATOMIC_SEQ_CST) & 1))
    return false;
  uint64_t to_b = __atomic_load_n(&c->bytes, __ATOMIC_ACQUIRE);
  uint64_t to_c = __atomic_load_n(&b->bytes, __ATOMIC_ACQUIRE);
  return queued_total(bfd_) - bq0_ >= to_b && queued_total(cfd_) - cq0_ >= to_c;
}

#endif

}  // namespace lb
