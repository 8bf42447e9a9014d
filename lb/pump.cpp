#include "lb/pump.hpp"

#include <prometheus/counter.h>

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

Pump::Pump(PumpHost& host, net::Transport* client, net::Transport* backend, Counters counters,
           uint64_t idle_ms, bool watch_connack)
    : host_(host), client_(client), backend_(backend), counters_(counters), idle_ms_(idle_ms) {
  if (watch_connack) watch_.emplace();
}

void Pump::start() {
  last_activity_ms_ = host_.now_ms();
  host_.arm_timer(idle_ms_);
  backend_->start_read();
  client_->start_read();  // a TLS client may deliver held records from inside this call
}

void Pump::on_read(net::Transport* t, const uint8_t* data, size_t len) {
  if (done_) return;
  if (t == client_) return forward(client_, backend_, data, len);
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
  prometheus::Counter* c = from == client_ ? counters_.c2b : counters_.b2c;
  if (c) c->Increment(static_cast<double>(len));
  if (to->write(data, len) != 0) {
    done_ = true;
    return host_.pump_done(from == client_ ? CloseReason::Backend : CloseReason::Client, true);
  }
  if (to->pending() > kHighWater) {
    (from == client_ ? client_paused_ : backend_paused_) = true;
    from->stop_read();
  }
}

void Pump::on_drained(net::Transport* t) {
  if (done_) return;
  if (t == backend_ && client_paused_) {
    client_paused_ = false;
    if (!client_eof_) client_->start_read();  // may deliver held records at once
  } else if (t == client_ && backend_paused_) {
    backend_paused_ = false;
    if (!backend_eof_) backend_->start_read();
  }
}

void Pump::on_eof(net::Transport* t) {
  if (done_) return;
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
  uint64_t quiet = host_.now_ms() - last_activity_ms_;
  if (quiet >= idle_ms_) {
    done_ = true;
    return host_.pump_done(CloseReason::IdleTimeout, false);
  }
  host_.arm_timer(idle_ms_ - quiet);
}

}  // namespace lb
