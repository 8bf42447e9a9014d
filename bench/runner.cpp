#include "bench/runner.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "bench/client.hpp"
#include "net/address.hpp"
#include "net/limits.hpp"
#include "tls/context.hpp"
#include "tls/engine.hpp"  // tls::Session

namespace bench {

namespace {
constexpr uint64_t kSec = 1'000'000'000ull;
constexpr uint64_t kRateTickMs = 5;
constexpr uint64_t kDrainMaxNs = 10 * kSec;  // give up waiting for in-flight messages
constexpr uint64_t kDrainIdleNs = 1 * kSec;  // ... or when nothing moved for this long
constexpr uint64_t kCloseGraceMs = 5000;     // DISCONNECTs not written by then: close anyway
}  // namespace

Runner::Runner(const Options& o) : o_(o), slab_(std::make_unique<net::Slab>()) {}
Runner::~Runner() = default;

double Runner::elapsed_s() const {
  return static_cast<double>(uv_hrtime() - t_start_) / 1e9;
}

const sockaddr* Runner::source_for(uint32_t n) const {
  if (sources_.empty()) return nullptr;
  return reinterpret_cast<const sockaddr*>(&sources_[n % sources_.size()]);
}

Client* Runner::publisher(uint32_t index) {
  return index < publishers_.size() ? publishers_[index] : nullptr;
}

bool Runner::setup() {
  net::raise_nofile_limit();
  tty_ = isatty(STDOUT_FILENO) && !o_.json && !o_.quiet;
  if (uv_loop_init(&loop_) != 0) {
    error_ = "cannot initialise the event loop";
    return false;
  }
  loop_inited_ = true;
  // Target address: a literal, or one blocking resolution before the run.
  if (!net::to_sockaddr(o_.host, o_.port, target_)) {
    uv_getaddrinfo_t req;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(&loop_, &req, nullptr, o_.host.c_str(), std::to_string(o_.port).c_str(),
                            &hints);
    if (rc != 0 || !req.addrinfo) {
      error_ = "cannot resolve host '" + o_.host + "': " + uv_strerror(rc);
      return false;
    }
    std::memcpy(&target_, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
  }
  for (const std::string& a : o_.source_addresses) {
    sockaddr_storage ss{};
    if (!net::to_sockaddr(a, 0, ss)) {
      error_ = "--source-addresses: '" + a + "' is not an IP address";
      return false;
    }
    sources_.push_back(ss);
  }
  if (o_.tls) {
    tls::ClientOptions co;
    co.ca = o_.cafile;
    co.verify = !o_.cafile.empty();  // no CA given: encrypt, but do not verify
    std::string err;
    tls_ctx_ = tls::Context::client(co, err);
    if (!tls_ctx_) {
      error_ = "tls: " + err;
      return false;
    }
    tls_session_ = std::make_unique<tls::Session>();
  }

  // Clients, in launch order: subscribers first so they are ready before anyone publishes.
  uint32_t slot = 0;
  switch (o_.mode) {
    case Mode::Conn:
      for (uint32_t i = 0; i < o_.count; i++)
        clients_.push_back(std::make_unique<Client>(*this, Client::Role::Conn, i, slot++));
      break;
    case Mode::Sub:
      for (uint32_t i = 0; i < o_.count; i++) {
        auto c = std::make_unique<Client>(*this, Client::Role::Sub, i, slot++);
        c->set_filters({expand_topic(o_.topic, i)});
        clients_.push_back(std::move(c));
      }
      break;
    case Mode::Pub:
    case Mode::PubSub: {
      uint32_t C = o_.count;
      uint32_t S = o_.mode == Mode::PubSub ? o_.subscribers : 0;
      fanout_.assign(C, 0);
      // Subscriber j listens to publishers i with i % S == j (S <= C), or to
      // publisher j % C (S > C: fan-out). Every publisher has >= 1 subscriber.
      for (uint32_t j = 0; j < S; j++) {
        std::vector<std::string> f;
        if (S <= C) {
          for (uint32_t i = j; i < C; i += S) {
            f.push_back(expand_topic(o_.topic, i));
            fanout_[i]++;
          }
        } else {
          f.push_back(expand_topic(o_.topic, j % C));
          fanout_[j % C]++;
        }
        auto c = std::make_unique<Client>(*this, Client::Role::Sub, j, slot++);
        c->set_filters(std::move(f));
        clients_.push_back(std::move(c));
      }
      for (uint32_t i = 0; i < C; i++) {
        auto c = std::make_unique<Client>(*this, Client::Role::Pub, i, slot++);
        c->set_topic(expand_topic(o_.topic, i));
        c->set_fanout(S ? fanout_[i] : 0);
        publishers_.push_back(c.get());
        clients_.push_back(std::move(c));
      }
      break;
    }
  }
  st_.planned = clients_.size();

  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, on_check);
  uv_idle_init(&loop_, &idle_);
  idle_.data = this;
  for (uv_timer_t* t : {&tick_, &rate_, &launch_, &phase_timer_}) {
    uv_timer_init(&loop_, t);
    t->data = this;
  }
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sigterm_);
  sigint_.data = sigterm_.data = this;
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  return true;
}

int Runner::run() {
  t_start_ = uv_hrtime();
  bool ok = setup();
  if (!ok) {  // error_ says why; no handle was started yet
    if (loop_inited_) uv_loop_close(&loop_);
    return 2;
  }
  st_.t_connect_first = t_start_;
  t_phase_ = t_start_;
  uv_timer_start(&tick_, on_tick, 1000, 1000);
  if (o_.connect_rate > 0) uv_timer_start(&launch_, on_launch, 10, 10);
  launch_more();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  if (aborted_) return 3;
  if (st_.failed > 0 || st_.unacked > 0) return 1;
  return 0;
}

void Runner::launch_more() {
  // A connect that fails synchronously reports back here: the outer call's
  // loop goes on, so no recursion as deep as the client count.
  if (phase_ >= Phase::Closing || launching_) return;
  launching_ = true;
  size_t allowed = clients_.size();
  if (o_.connect_rate > 0) {
    double due = static_cast<double>(uv_hrtime() - t_start_) / 1e9 * o_.connect_rate + 1;
    allowed = std::min(allowed, static_cast<size_t>(due));
  }
  while (next_launch_ < allowed && pending_ < o_.max_pending && phase_ < Phase::Closing) {
    Client& c = *clients_[next_launch_++];
    pending_++;
    open_handles_++;
    st_.attempted++;
    c.start();
  }
  launching_ = false;
  if (next_launch_ >= clients_.size()) uv_timer_stop(&launch_);
}

void Runner::on_connected(Client&) {
  pending_--;
  live_++;
  st_.connected++;
  st_.t_connect_last = uv_hrtime();
  launch_more();
}

void Runner::on_ready(Client&) {
  ready_++;
  check_settled();
}

void Runner::check_settled() {
  if (phase_ != Phase::Connecting || ready_ + failed_early_ < clients_.size()) return;
  uint64_t now = uv_hrtime();
  t_phase_ = now;
  if (ready_ == 0) {
    std::string top;
    uint64_t n = 0;
    for (auto& [why, k] : st_.failures)
      if (k > n) top = why, n = k;
    error_ = "could not connect to " + o_.host + ":" + std::to_string(o_.port) + ": " + top;
    aborted_ = true;
    return begin_close(false);
  }
  switch (o_.mode) {
    case Mode::Conn:
      phase_ = Phase::Holding;
      uv_timer_start(&phase_timer_, on_phase, static_cast<uint64_t>(o_.hold * 1000), 0);
      break;
    case Mode::Sub:
      phase_ = Phase::Running;
      st_.t_run_start = now;
      if (o_.duration > 0)
        uv_timer_start(&phase_timer_, on_phase, static_cast<uint64_t>(o_.duration * 1000), 0);
      break;
    case Mode::Pub:
    case Mode::PubSub:
      start_publishing();
      break;
  }
}

void Runner::start_publishing() {
  phase_ = Phase::Running;
  st_.t_run_start = uv_hrtime();
  if (o_.rate > 0) {
    uv_timer_start(&rate_, on_rate, kRateTickMs, kRateTickMs);
  } else {
    for (Client* p : publishers_) schedule(*p);
  }
  uv_timer_start(&phase_timer_, on_phase, static_cast<uint64_t>(o_.duration * 1000), 0);
}

void Runner::stop_publishing() {
  if (phase_ != Phase::Running) return;
  uv_timer_stop(&rate_);
  if (o_.rate > 0 && o_.mode != Mode::Sub) {
    // Send what fell due since the last tick, then count what could not be sent.
    rate_tick();
    for (size_t i = 0; i < publishers_.size(); i++) st_.behind += due_for(static_cast<uint32_t>(i));
  }
  uint64_t now = uv_hrtime();
  st_.t_run_end = now;
  if (o_.mode == Mode::Sub) return begin_close(true);
  phase_ = Phase::Draining;
  t_phase_ = now;
  last_progress_ = now;
  for (size_t i = 0; i < publishers_.size(); i++)
    if (!fanout_.empty() && o_.mode == Mode::PubSub)
      st_.expected += publishers_[i]->sent() * fanout_[i];
  uv_timer_start(&phase_timer_, on_phase, 20, 20);
}

void Runner::check_drained() {
  uint64_t now = uv_hrtime();
  if (st_.received != last_received_ || st_.acked != last_acked_) {
    last_received_ = st_.received;
    last_acked_ = st_.acked;
    last_progress_ = now;
  }
  bool acked = std::all_of(publishers_.begin(), publishers_.end(),
                           [](Client* p) { return p->idle_publisher(); });
  bool delivered = o_.mode != Mode::PubSub || st_.unique >= st_.expected;
  if ((acked && delivered) || now - last_progress_ > kDrainIdleNs || now - t_phase_ > kDrainMaxNs) {
    // QoS > 0 messages the target never acknowledged: it stopped answering.
    for (Client* p : publishers_) st_.unacked += p->in_flight();
    if (st_.unacked) {
      error_ = std::to_string(st_.unacked) + " PUBLISH not acknowledged by " + o_.host + ":" +
               std::to_string(o_.port) + " (no progress for " +
               std::to_string((now - last_progress_) / 1'000'000) + " ms after publishing stopped)";
    }
    begin_close(true);
  }
}

void Runner::begin_close(bool graceful) {
  if (phase_ >= Phase::Closing) return;
  if (phase_ == Phase::Running && !st_.t_run_end) st_.t_run_end = uv_hrtime();
  phase_ = Phase::Closing;
  uv_timer_stop(&rate_);
  uv_timer_stop(&launch_);
  uv_timer_stop(&phase_timer_);
  for (size_t i = 0; i < next_launch_; i++) {
    if (graceful)
      clients_[i]->disconnect();
    else
      clients_[i]->close();
  }
  if (graceful) uv_timer_start(&phase_timer_, on_phase, kCloseGraceMs, 0);
  finish_if_closed();
}

void Runner::finish_if_closed() {
  if (phase_ != Phase::Closing || open_handles_ > 0) return;
  phase_ = Phase::Done;
  if (tty_) std::printf("\n");
  for (uv_timer_t* t : {&tick_, &rate_, &launch_, &phase_timer_})
    uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
}

void Runner::on_failure(Client& c, const std::string& reason, bool lost) {
  st_.failed++;
  st_.failures[reason]++;
  switch (c.state()) {
    case Client::State::Idle:
    case Client::State::Connecting:
    case Client::State::Handshaking:
    case Client::State::AwaitConnack:
      pending_--;
      failed_early_++;
      break;
    case Client::State::AwaitSuback:
      live_--;
      failed_early_++;
      break;
    case Client::State::Ready:
      live_--;
      break;
    case Client::State::Closed:
      break;
  }
  if (lost) st_.lost++;
  if (phase_ >= Phase::Closing) return;
  if (o_.mode != Mode::Conn) {
    // Publishing figures are meaningless with a client missing: stop now.
    error_ = (lost ? "connection lost during the run: " : "connection failed: ") + reason +
             " (target " + o_.host + ":" + std::to_string(o_.port) + ")";
    aborted_ = true;
    return begin_close(false);
  }
  if (lost && live_ == 0 && phase_ != Phase::Connecting) {
    error_ = "all connections lost: " + reason + " (target " + o_.host + ":" +
             std::to_string(o_.port) + ")";
    aborted_ = true;
    return begin_close(false);
  }
  launch_more();
  check_settled();
}

void Runner::on_closed(Client&) {
  open_handles_--;
  finish_if_closed();
}

void Runner::on_delivered(uint32_t publisher, uint64_t) {
  if (o_.mode != Mode::PubSub || publisher >= publishers_.size()) return;
  Client* p = publishers_[publisher];
  p->on_delivered();
  if (phase_ == Phase::Running) schedule(*p);
}

void Runner::schedule(Client& c) {
  if (c.scheduled) return;
  c.scheduled = true;
  // From a timer callback the check phase comes only after the poll phase:
  // the active idle handle keeps that poll from blocking until the next timer,
  // which would hold the bytes back (and add up to one tick to latency).
  if (dirty_.empty()) uv_idle_start(&idle_, on_idle);
  dirty_.push_back(&c);
}

void Runner::on_check(uv_check_t* h) {
  auto* r = static_cast<Runner*>(h->data);
  // Index loop: flushing may schedule more clients (appended, handled here too).
  // Publishers with budget left after their flush (e.g. QoS 0, socket not
  // full) go to the next turn; the idle handle keeps that turn from blocking.
  size_t n = r->dirty_.size();
  for (size_t i = 0; i < r->dirty_.size(); i++) {
    Client* c = r->dirty_[i];
    c->scheduled = false;
    if (c->role() == Client::Role::Pub) {
      if (r->o_.rate <= 0)
        c->pump();
      else if (r->phase_ == Phase::Running)
        c->send_due(r->due_for(c->index()));  // catch up
    }
    c->flush();
    if (i < n && c->wants_to_send()) r->again_.push_back(c);
  }
  r->dirty_.clear();
  for (Client* c : r->again_) r->schedule(*c);
  r->again_.clear();
  if (r->dirty_.empty())
    uv_idle_stop(&r->idle_);
  else
    uv_idle_start(&r->idle_, on_idle);
}

void Runner::on_idle(uv_idle_t*) {}

void Runner::on_rate(uv_timer_t* t) {
  static_cast<Runner*>(t->data)->rate_tick();
}

uint32_t Runner::due_for(uint32_t i) const {
  // Publisher i is offset by i/n of a period so sends spread over the tick.
  double elapsed = static_cast<double>(uv_hrtime() - st_.t_run_start) / 1e9;
  double n = static_cast<double>(publishers_.size());
  double due = std::floor(elapsed * o_.rate + static_cast<double>(i) / n) -
               static_cast<double>(publishers_[i]->sent());
  return due > 0 ? static_cast<uint32_t>(std::min(due, 1e6)) : 0;
}

void Runner::rate_tick() {
  if (phase_ != Phase::Running) return;
  for (size_t i = 0; i < publishers_.size(); i++) {
    uint32_t due = due_for(static_cast<uint32_t>(i));
    if (due) publishers_[i]->send_due(due);
  }
}

void Runner::on_launch(uv_timer_t* t) {
  static_cast<Runner*>(t->data)->launch_more();
}

void Runner::on_phase(uv_timer_t* t) {
  auto* r = static_cast<Runner*>(t->data);
  switch (r->phase_) {
    case Phase::Holding:
      return r->begin_close(true);
    case Phase::Running:
      return r->stop_publishing();
    case Phase::Draining:
      return r->check_drained();
    case Phase::Closing:
      // Grace period over: close whatever has not finished its DISCONNECT.
      for (size_t i = 0; i < r->next_launch_; i++) r->clients_[i]->close();
      return;
    default:
      return;
  }
}

void Runner::on_signal(uv_signal_t* s, int) {
  auto* r = static_cast<Runner*>(s->data);
  r->interrupted_ = true;
  if (r->phase_ == Phase::Running && r->o_.mode != Mode::Sub && r->o_.mode != Mode::Conn)
    return r->stop_publishing();
  if (r->phase_ < Phase::Closing) return r->begin_close(true);
  for (size_t i = 0; i < r->next_launch_; i++) r->clients_[i]->close();
}

void Runner::on_tick(uv_timer_t* t) {
  static_cast<Runner*>(t->data)->tick();
}

void Runner::tick() {
  uint64_t now = uv_hrtime();
  uint64_t timeout = static_cast<uint64_t>(o_.connect_timeout * 1e9);
  for (size_t i = 0; i < next_launch_ && phase_ < Phase::Closing; i++) {
    Client& c = *clients_[i];
    c.check_connect_timeout(now, timeout);
    c.keepalive(now);
    if (phase_ == Phase::Running && o_.rate <= 0) c.check_stall(now);
  }
  if (tty_) progress_line();
}

void Runner::progress_line() {
  double el = elapsed_s();
  uint64_t ds = st_.sent - prev_sent_, dr = st_.received - prev_recv_;
  prev_sent_ = st_.sent;
  prev_recv_ = st_.received;
  std::printf("\r[%6.1fs] conn %llu/%llu fail %llu | sent %llu/s recv %llu/s | p99 %.2f ms   ", el,
              static_cast<unsigned long long>(live_), static_cast<unsigned long long>(st_.planned),
              static_cast<unsigned long long>(st_.failed), static_cast<unsigned long long>(ds),
              static_cast<unsigned long long>(dr),
              static_cast<double>(st_.latency.percentile(99)) / 1e6);
  std::fflush(stdout);
}

}  // namespace bench
