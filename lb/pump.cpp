#include "lb/pump.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <new>
#include <span>

namespace lb {

std::optional<uint8_t> ConnackWatch::feed(const uint8_t* data, size_t len) {
  for (size_t i = 0; i < len && st_ != St::Done; ++i) {
    const uint8_t b = data[i];
    switch (st_) {
      case St::Type:
        first_ = b;
        len_ = 0;
        mult_ = 1;
        len_bytes_ = 0;
        pos_ = 0;
        st_ = St::Length;
        break;
      case St::Length:
        len_ += (b & 0x7Fu) * mult_;
        mult_ *= 128;
        if (++len_bytes_ > 4) {
          st_ = St::Done;  // malformed: stop watching
          break;
        }
        if (!(b & 0x80)) st_ = len_ == 0 ? St::Type : St::Body;
        break;
      case St::Body: {
        if ((first_ >> 4) == 2) {  // CONNACK: flags byte, then the code
          if (pos_ == 1) {
            st_ = St::Done;
            return b;
          }
          if (++pos_ >= len_) st_ = St::Type;
          break;
        }
        // Any other packet (AUTH): skip its body, as much of it as is here.
        size_t left = len_ - pos_;
        size_t here = len - i;
        size_t k = left < here ? left : here;
        pos_ += static_cast<uint32_t>(k);
        i += k - 1;
        if (pos_ >= len_) st_ = St::Type;
        break;
      }
      case St::Done:
        break;
    }
  }
  return std::nullopt;
}

Pump::Pump(PumpHost& host, net::Transport* client, net::Transport* backend,
           const Counters& counters, uint64_t idle_ms, bool watch_connack)
    : host_(host), client_(client), backend_(backend), counters_(&counters), idle_ms_(idle_ms) {
  if (watch_connack) watch_.emplace();
  if (counters_->on_userspace) counters_->on_userspace->Increment();
}

void Pump::start() {
  last_activity_ms_ = host_.now_ms();
  host_.arm_timer(idle_ms_);
  backend_->start_read();
  client_->start_read();  // a TLS client may deliver held records from inside this call
  if (k_ && !done_) maybe_join();
}

void Pump::on_read(net::Transport* t, const uint8_t* data, size_t len) {
  if (done_) return;
  if (k_ && k_->kernel && !k_->replaying) {
    (t == client_ ? k_->us_read_c : k_->us_read_b) += len;
    // Taken back, the sockets still read through the sockmap: check each
    // read against what TCP received, before forwarding it.
    if (kstate() == KState::Back && (t == client_ || t == backend_) && overread(t)) return;
  }
  if (kstate() == KState::Joined || kstate() == KState::TakingBack) {
    // Only bytes the verdict left to userspace come here: hold them (one read
    // at most per side: the side stops) until the kernel's backlog is out.
    if (t != client_ && t != backend_) return;
    std::vector<uint8_t>& h = t == client_ ? k_->held_client : k_->held_backend;
    h.insert(h.end(), data, data + len);
    t->stop_read();
    KernelSplice::Sample smp;
    SpliceFallback why = SpliceFallback::Event;
    if (k_->kernel->sample(smp)) {
      uint32_t r = t == client_ ? smp.c2b.pass_reason : smp.b2c.pass_reason;
      if (r == 1) why = SpliceFallback::Backpressure;  // SPLICE_WHY_BACKPRESSURE
      if (r == 2) why = SpliceFallback::Malformed;     // SPLICE_WHY_MALFORMED
    }
    return take_back(why);
  }
  if (finishing_) return on_read_finishing(t, data, len);
  if (t == client_) {
    c2b_.feed(std::span<const uint8_t>(data, len));
    return forward(client_, backend_, data, len);
  }
  if (t != backend_) return;
  b2c_.feed(std::span<const uint8_t>(data, len));
  if (watch_) {
    if (auto code = watch_->feed(data, len)) {
      watch_.reset();
      host_.connack_seen(*code);
    }
  }
  forward(backend_, client_, data, len);
}

void Pump::forward(net::Transport* from, net::Transport* to, const uint8_t* data, size_t len) {
  last_activity_ms_ = host_.now_ms();
  prometheus::Counter* c = from == client_ ? counters_->c2b : counters_->b2c;
  if (c) c->Increment(static_cast<double>(len));
  if (to->write(data, len) != 0) {
    done_ = true;
    return host_.pump_done(from == client_ ? CloseReason::Backend : CloseReason::Client, true);
  }
  if (to->pending() > kHighWater) {
    (from == client_ ? client_paused_ : backend_paused_) = true;
    from->stop_read();
  } else if (k_ && kstate() == KState::Off && to->pending() == 0) {
    maybe_join();
  }
}

void Pump::finish_with(std::vector<uint8_t> to_client, std::vector<uint8_t> to_backend,
                       CloseReason why) {
  if (done_ || finishing_) return;
  if (kstate() == KState::Joined || kstate() == KState::TakingBack) {
    // At a packet boundary only userspace can say: take the session back first.
    if (!k_->held_finish) {
      k_->held_finish = true;
      k_->held_to_client = std::move(to_client);
      k_->held_to_backend = std::move(to_backend);
      k_->held_why = why;
    }
    return take_back(SpliceFallback::Event);
  }
  inject_.reset(new (std::nothrow) Inject);
  if (!inject_) {  // no memory for the goodbye: end at once
    done_ = true;
    return host_.pump_done(why, true);
  }
  finishing_ = true;
  reason_ = why;
  inject_->to_client = std::move(to_client);
  inject_->to_backend = std::move(to_backend);
  host_.arm_timer(kFinishMs);
  // A direction already at a boundary (or whose source has ended) ends now;
  // the other keeps reading its source until the next boundary.
  if (b2c_.at_boundary() || b2c_.malformed() || backend_eof_) end_direction(client_);
  if (done_) return;
  if (c2b_.at_boundary() || c2b_.malformed() || client_eof_) end_direction(backend_);
  if (done_) return;
  if (!to_client_done_ && !backend_eof_) {
    backend_paused_ = false;
    backend_->start_read();
  }
  if (!to_backend_done_ && !client_eof_) {
    client_paused_ = false;
    client_->start_read();  // may deliver held records at once
  }
}

void Pump::end_direction(net::Transport* to) {
  const bool into_client = to == client_;
  bool& done = into_client ? to_client_done_ : to_backend_done_;
  if (done) return;
  done = true;
  net::Transport* source = into_client ? backend_ : client_;
  source->stop_read();  // what it sends after the boundary is not forwarded
  std::vector<uint8_t>& bytes = into_client ? inject_->to_client : inject_->to_backend;
  if (!bytes.empty() && to->write(bytes.data(), bytes.size()) != 0) {
    done_ = true;
    return host_.pump_done(reason_, true);
  }
  std::vector<uint8_t>().swap(bytes);
  to->shutdown();  // FIN after the queued bytes; on_shutdown then
}

void Pump::on_read_finishing(net::Transport* t, const uint8_t* data, size_t len) {
  const bool from_client = t == client_;
  if (!from_client && t != backend_) return;
  if (from_client ? to_backend_done_ : to_client_done_) return;  // past its boundary: dropped
  mqtt::StreamScanner& scan = from_client ? c2b_ : b2c_;
  size_t upto = scan.feed_to_boundary(std::span<const uint8_t>(data, len));
  net::Transport* to = from_client ? backend_ : client_;
  if (upto > 0 && to->write(data, upto) != 0) {
    done_ = true;
    return host_.pump_done(reason_, true);
  }
  last_activity_ms_ = host_.now_ms();
  prometheus::Counter* c = from_client ? counters_->c2b : counters_->b2c;
  if (c) c->Increment(static_cast<double>(upto));
  if (scan.at_boundary() || scan.malformed()) end_direction(to);
}

void Pump::on_drained(net::Transport* t) {
  if (done_) return;
  if (kstate() == KState::Joined || kstate() == KState::TakingBack) return;
  if (finishing_) return;  // sources are read until their boundary regardless
  if (t == backend_ && client_paused_) {
    client_paused_ = false;
    if (!client_eof_) client_->start_read();  // may deliver held records at once
  } else if (t == client_ && backend_paused_) {
    backend_paused_ = false;
    if (!backend_eof_) backend_->start_read();
  }
  if (k_ && kstate() == KState::Off) maybe_join();
}

void Pump::on_eof(net::Transport* t) {
  if (done_) return;
  if (kstate() == KState::Joined || kstate() == KState::TakingBack) {
    // The kernel does not forward a FIN: the pump does, after the backlog.
    if (t == client_) k_->held_client_eof = true;
    if (t == backend_) k_->held_backend_eof = true;
    t->stop_read();
    return take_back(SpliceFallback::Event);
  }
  if (k_ && k_->kernel && !eof_is_final(t)) {
    // Bytes the verdict passed are still on their way to the socket's queue.
    (t == client_ ? k_->eof_wait_c : k_->eof_wait_b) = true;
    t->stop_read();
    return host_.arm_timer(kDrainPollMs);
  }
  if (finishing_) {
    if (t == client_) client_eof_ = true;
    if (t == backend_) backend_eof_ = true;
    // An ended source has no further boundary to wait for.
    if (t == backend_) end_direction(client_);
    if (t == client_ && !done_) end_direction(backend_);
    return maybe_finish();
  }
  if (t == client_ && !client_eof_) {
    client_eof_ = true;
    if (!backend_eof_) reason_ = CloseReason::Client;
    backend_->shutdown();  // the half-close follows the queued bytes
  } else if (t == backend_ && !backend_eof_) {
    backend_eof_ = true;
    if (!client_eof_) reason_ = CloseReason::Backend;
    client_->shutdown();
  }
  maybe_finish();
}

void Pump::on_shutdown(net::Transport* t) {
  if (done_) return;
  if (t == client_) client_shut_ = true;
  if (t == backend_) backend_shut_ = true;
  maybe_finish();
}

void Pump::maybe_finish() {
  if (done_) return;
  if (finishing_) {
    // Both directions ended at a boundary and both FINs reached the kernel.
    if (to_client_done_ && to_backend_done_ && client_shut_ && backend_shut_) {
      done_ = true;
      host_.pump_done(reason_, false);
    }
    return;
  }
  if (client_eof_ && backend_eof_ && client_shut_ && backend_shut_) {
    done_ = true;
    host_.pump_done(reason_, false);
  }
}

void Pump::on_error(net::Transport* t, int) {
  if (done_) return;
  done_ = true;
  // A reset on one side is propagated as a reset to the other.
  host_.pump_done(t == client_ ? CloseReason::Client : CloseReason::Backend, true);
}

void Pump::on_timer() {
  if (done_) return;
  if (kstate() == KState::Joined || kstate() == KState::TakingBack ||
      (k_ && (k_->eof_wait_c || k_->eof_wait_b)))
    return kernel_timer();
  if (finishing_) {  // kFinishMs passed: whatever the peers do, it ends now
    done_ = true;
    return host_.pump_done(reason_, false);
  }
  uint64_t quiet = host_.now_ms() - last_activity_ms_;
  if (quiet >= idle_ms_) {
    done_ = true;
    return host_.pump_done(CloseReason::IdleTimeout, false);
  }
  host_.arm_timer(idle_ms_ - quiet);
}

}  // namespace lb
