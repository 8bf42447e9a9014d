// What the session's stages (peek, place, pump) share: the session's single
// timer, and the counts a session takes, each taken and dropped in one place
// (an RAII token that moves from stage to stage).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "lb/runtime.hpp"

namespace lb {

// One timer per session, owned by the session; the active stage arms it.
class StageTimer {
 public:
  virtual ~StageTimer() = default;
  virtual void arm_timer(uint64_t ms) = 0;  // replaces an earlier arming
  virtual void disarm_timer() = 0;
  virtual uint64_t now_ms() const = 0;  // the loop's clock
};

// A session counted on a backend (BackendState::active, the sessions-active
// gauge): taken when placement picks the backend, dropped when the token is
// reset or destroyed — once, whatever path the session takes.
class BackendCount {
 public:
  BackendCount() = default;
  explicit BackendCount(std::shared_ptr<BackendState> s) : s_(std::move(s)) {
    s_->active.fetch_add(1, std::memory_order_relaxed);
    s_->metrics.active->Increment();
  }
  BackendCount(BackendCount&& o) noexcept : s_(std::move(o.s_)) {}
  BackendCount& operator=(BackendCount&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  BackendCount(const BackendCount&) = delete;
  BackendCount& operator=(const BackendCount&) = delete;
  ~BackendCount() { reset(); }
  void reset() {
    if (!s_) return;
    s_->active.fetch_sub(1, std::memory_order_relaxed);
    s_->metrics.active->Decrement();
    s_.reset();
  }
  BackendState* get() const { return s_.get(); }
  const std::shared_ptr<BackendState>& state() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }

 private:
  std::shared_ptr<BackendState> s_;
};

}  // namespace lb
