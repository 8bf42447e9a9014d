// The pump's in-kernel forwarding (lb/kernel_splice.hpp, docs/forwarding.md):
// when to join, the take-back, and what the kernel counted.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lb/log.hpp"
#include "lb/pump.hpp"

namespace lb {

namespace {

SpliceFallback reason_of(uint32_t pass_reason) {
  if (pass_reason == 1) return SpliceFallback::Backpressure;  // SPLICE_WHY_BACKPRESSURE
  if (pass_reason == 2) return SpliceFallback::Malformed;     // SPLICE_WHY_MALFORMED
  return SpliceFallback::Event;
}

}  // namespace

void Pump::watch_ends() {
  if (!client_->watch_hangup(true) || !backend_->watch_hangup(true)) {
    client_->watch_hangup(false);
    return;  // both keep reading: an EOF still shows there
  }
  k_->ends_watched = true;
  client_->stop_read();
  backend_->stop_read();
}

void Pump::unwatch_ends() {
  if (!k_->ends_watched) return;
  k_->ends_watched = false;
  client_->watch_hangup(false);
  backend_->watch_hangup(false);
}

// An EOF or an error on a joined socket: the pump reads again and sees it.
void Pump::kernel_event() {
  if (kstate() == KState::Joined) take_back(SpliceFallback::Event);
}

Pump::~Pump() {
  if (k_) {
    *k_->alive = false;  // the transports may be gone already: their watches end with them
    if (k_->kernel) sync_kernel(true);
  }
  prometheus::Gauge* g =
      kstate() == KState::Joined ? counters_->on_kernel : counters_->on_userspace;
  if (g) g->Decrement();
}

void Pump::count_fallback(SpliceFallback why) {
  if (fallback_counted_) return;
  fallback_counted_ = true;
  if (prometheus::Counter* c = counters_->fallbacks[static_cast<size_t>(why)]) c->Increment();
}

// Joins when nothing is held in userspace either way: both write queues
// empty, no direction ended, no stream watched (enhanced authentication),
// no finish in progress. Called again whenever that may have become true.
void Pump::maybe_join() {
  if (!k_ || kstate() != KState::Off || done_ || finishing_ || watch_) return;
  if (client_eof_ || backend_eof_ || client_paused_ || backend_paused_) return;
  if (client_->pending() != 0 || backend_->pending() != 0) return;
  if (c2b_.malformed() || b2c_.malformed()) return;  // byte for byte in userspace, as ever
  int cfd = client_->native_fd(), bfd = backend_->native_fd();
  if (cfd < 0 || bfd < 0) {
    k_->kstate = KState::Back;
    return count_fallback(SpliceFallback::Transport);
  }
  k_->kernel = std::make_unique<KernelSplice>(*k_->engine);
  int r = k_->kernel->join(cfd, bfd, c2b_.raw(), b2c_.raw());
  if (r == -EAGAIN) {  // unread bytes: after the pump read them
    k_->kernel.reset();
    return;
  }
  if (r != 0) {
    logf(LogLevel::Debug, "kernel forwarding: join failed: %s", strerror(-r));
    // Whatever joined is in PASS mode: userspace reads it as before.
    k_->kstate = KState::Back;
    return count_fallback(SpliceFallback::JoinFailed);
  }
  k_->kstate = KState::Joined;
  logf(LogLevel::Debug, "kernel forwarding: joined");
  if (counters_->joins) counters_->joins->Increment();
  if (counters_->on_userspace) counters_->on_userspace->Decrement();
  if (counters_->on_kernel) counters_->on_kernel->Increment();
  uint64_t quiet = host_.now_ms() - last_activity_ms_;
  uint64_t left = quiet < idle_ms_ ? idle_ms_ - quiet : 0;
  host_.arm_timer(left < kSyncMs ? left : kSyncMs);
  watch_ends();
  // A skb between the two sockets' joins found no peer: it waits for us.
  KernelSplice::Sample smp;
  if (k_->kernel->sample(smp) && (smp.c2b.passed || smp.b2c.passed))
    take_back(reason_of(smp.c2b.passed ? smp.c2b.pass_reason : smp.b2c.pass_reason));
}

// What the kernel forwarded since the last call: into the byte counters and
// the last-activity time.
void Pump::sync_kernel(bool final) {
  (void) final;
  KernelSplice::Sample s;
  if (!k_->kernel || !k_->kernel->sample(s)) return;
  if (s.c2b.bytes > k_->k_c2b) {
    if (counters_->c2b) counters_->c2b->Increment(static_cast<double>(s.c2b.bytes - k_->k_c2b));
    k_->k_c2b = s.c2b.bytes;
  }
  if (s.b2c.bytes > k_->k_b2c) {
    if (counters_->b2c) counters_->b2c->Increment(static_cast<double>(s.b2c.bytes - k_->k_b2c));
    k_->k_b2c = s.b2c.bytes;
  }
  if (s.c2b.packets > k_->k_pkm_c2b) {
    if (counters_->packets_c2b)
      counters_->packets_c2b->Increment(static_cast<double>(s.c2b.packets - k_->k_pkm_c2b));
    k_->k_pkm_c2b = s.c2b.packets;
  }
  if (s.b2c.packets > k_->k_pkm_b2c) {
    if (counters_->packets_b2c)
      counters_->packets_b2c->Increment(static_cast<double>(s.b2c.packets - k_->k_pkm_b2c));
    k_->k_pkm_b2c = s.b2c.packets;
  }
  // bpf_ktime_get_ns() and uv_now() both count CLOCK_MONOTONIC, but uv_now()
  // is the loop's cached time: a redirect just now can be later than it.
  uint64_t last_ms = s.last_ns / 1'000'000;
  const uint64_t now = host_.now_ms();
  if (last_ms > now) last_ms = now;
  if (last_ms > last_activity_ms_) last_activity_ms_ = last_ms;
}

void Pump::take_back(SpliceFallback why) {
  if (kstate() != KState::Joined) return;  // already under way
  k_->kstate = KState::TakingBack;
  logf(LogLevel::Debug, "kernel forwarding: take-back (%s)", to_string(why));
  count_fallback(why);
  if (counters_->on_kernel) counters_->on_kernel->Decrement();
  if (counters_->on_userspace) counters_->on_userspace->Increment();
  k_->kernel->pass_both();
  // The pump reads both sides again (what the verdict passed, EOFs, errors).
  unwatch_ends();
  if (!client_eof_ && !client_paused_ && !k_->held_client_eof && k_->held_client.empty())
    client_->start_read();
  if (!backend_eof_ && !backend_paused_ && !k_->held_backend_eof && k_->held_backend.empty())
    backend_->start_read();
  // Every later skb now waits in its own socket for recv(); wait (polling:
  // the kernel tells nothing) until what was redirected is in the peers'
  // send queues, then the pump writes there itself.
  host_.arm_timer(0);
}

// The kernel handed this socket's bytes out more often than TCP received
// them (a sockmap defect, docs/forwarding.md "Known defect"): the stream is
// corrupt from here on. The read is not forwarded; the session ends (reset
// both ways), counted and logged, rather than go on with duplicated bytes.
bool Pump::overread(net::Transport* t) {
  const bool c = t == client_;
  uint64_t excess = 0;
  if (!k_->kernel->overread(c, c ? k_->us_read_c : k_->us_read_b, excess)) return false;
  static LogLimiter limit(1000);
  uint64_t skipped = 0;
  if (limit.allow(static_cast<int64_t>(host_.now_ms()), skipped))
    logf(LogLevel::Error,
         "kernel forwarding: the %s socket gave %llu bytes more than TCP received on it (a "
         "kernel sockmap defect); session closed%s",
         c ? "client" : "broker", static_cast<unsigned long long>(excess),
         skipped ? " (more since the last report)" : "");
  if (counters_->overreads) counters_->overreads->Increment();
  done_ = true;
  host_.pump_done(CloseReason::Error, true);
  return true;
}

bool Pump::eof_is_final(net::Transport* t) {
  const bool c = t == client_;
  KernelSplice::Sample s;
  if (!k_->kernel->sample(s)) return true;
  uint64_t accounted = (c ? s.c2b.bytes : s.b2c.bytes) + (c ? k_->us_read_c : k_->us_read_b);
  return k_->kernel->received(c) <= accounted + 1;  // + the FIN
}

// An EOF came before bytes the verdict passed: read the socket directly
// (libuv stopped at the EOF) until they are all in, then the EOF.
void Pump::poll_eof_wait() {
  for (int side = 0; side < 2; ++side) {
    bool& wait = side == 0 ? k_->eof_wait_c : k_->eof_wait_b;
    if (!wait) continue;
    net::Transport* t = side == 0 ? client_ : backend_;
    net::Transport* to = side == 0 ? backend_ : client_;
    std::shared_ptr<bool> alive = k_->alive;
    while (to->pending() <= kHighWater) {
      uint8_t buf[16 * 1024];
      ssize_t n = ::recv(t->native_fd(), buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      on_read(t, buf, static_cast<size_t>(n));
      if (!*alive || done_) return;
    }
    if (eof_is_final(t)) {
      wait = false;
      on_eof(t);
      if (!*alive || done_) return;
    }
  }
}

void Pump::kernel_timer() {
  sync_kernel(false);
  uint64_t now = host_.now_ms();
  uint64_t quiet = now - last_activity_ms_;
  if (kstate() == KState::Back) {  // waiting for passed bytes before an EOF
    if (quiet >= idle_ms_) {
      done_ = true;
      return host_.pump_done(CloseReason::IdleTimeout, false);
    }
    std::shared_ptr<bool> alive = k_->alive;
    poll_eof_wait();
    if (!*alive || done_) return;
    if (k_->eof_wait_c || k_->eof_wait_b) return host_.arm_timer(kDrainPollMs);
    quiet = host_.now_ms() - last_activity_ms_;
    return host_.arm_timer(quiet < idle_ms_ ? idle_ms_ - quiet : 0);
  }
  if (kstate() == KState::TakingBack) {
    if (k_->kernel->drained()) return finish_take_back();
    // A peer that does not read keeps the backlog; the idle timeout still holds.
    if (quiet >= idle_ms_) {
      done_ = true;
      return host_.pump_done(CloseReason::IdleTimeout, false);
    }
    return host_.arm_timer(kDrainPollMs);
  }
  if (quiet >= idle_ms_) {
    done_ = true;
    return host_.pump_done(CloseReason::IdleTimeout, false);
  }
  KernelSplice::Sample smp;  // joined: skbs the verdict left to userspace?
  if (k_->kernel->sample(smp) && (smp.c2b.passed || smp.b2c.passed))
    return take_back(reason_of(smp.c2b.passed ? smp.c2b.pass_reason : smp.b2c.pass_reason));
  uint64_t left = idle_ms_ - quiet;
  host_.arm_timer(left < kSyncMs ? left : kSyncMs);
}

// The kernel's backlog is out: userspace continues each stream exactly after
// the last byte the kernel redirected, then replays what it held, in order.
void Pump::finish_take_back() {
  KernelSplice::Sample s;
  if (k_->kernel->sample(s)) {
    c2b_.set_raw(s.c2b.scan, s.c2b.packets - k_->k_pk_c2b);
    b2c_.set_raw(s.b2c.scan, s.b2c.packets - k_->k_pk_b2c);
    k_->k_pk_c2b = s.c2b.packets;
    k_->k_pk_b2c = s.b2c.packets;
  }
  sync_kernel(false);
  logf(LogLevel::Debug,
       "kernel forwarding: taken back after %llu bytes to the broker, %llu to the client; "
       "held %zu + %zu bytes, eof %d %d, finish %d",
       static_cast<unsigned long long>(k_->k_c2b), static_cast<unsigned long long>(k_->k_b2c),
       k_->held_client.size(), k_->held_backend.size(), k_->held_client_eof, k_->held_backend_eof,
       k_->held_finish);
  k_->kstate = KState::Back;
  uint64_t quiet = host_.now_ms() - last_activity_ms_;
  host_.arm_timer(quiet < idle_ms_ ? idle_ms_ - quiet : 0);

  // Each replayed event may end the session (and destroy *this).
  std::shared_ptr<bool> alive = k_->alive;
  auto gone = [&] { return !*alive || done_; };
  k_->replaying = true;
  std::vector<uint8_t> hc, hb;
  hc.swap(k_->held_client);
  hb.swap(k_->held_backend);
  const bool ceof = k_->held_client_eof, beof = k_->held_backend_eof;
  const bool fin = k_->held_finish;
  k_->held_finish = false;
  std::vector<uint8_t> to_client, to_backend;
  to_client.swap(k_->held_to_client);
  to_backend.swap(k_->held_to_backend);
  if (!hc.empty()) on_read(client_, hc.data(), hc.size());
  if (gone()) return;
  if (!hb.empty()) on_read(backend_, hb.data(), hb.size());
  if (gone()) return;
  k_->replaying = false;
  if (ceof) on_eof(client_);
  if (gone()) return;
  if (beof) on_eof(backend_);
  if (gone()) return;
  if (fin) {
    finish_with(std::move(to_client), std::move(to_backend), k_->held_why);
    return;  // it reads the sources again as it needs
  }
  if (finishing_) return;
  if (!client_eof_ && !client_paused_) client_->start_read();
  if (gone()) return;
  if (!backend_eof_ && !backend_paused_) backend_->start_read();
}

}  // namespace lb
