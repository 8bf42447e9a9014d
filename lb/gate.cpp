#include "lb/gate.hpp"

#include <prometheus/gauge.h>

namespace lb {

GateLane::~GateLane() {
  // Every waiter cancels or releases before its session goes away.
  while (head_) cancel(*head_);
}

GateLane::Take GateLane::take(GateWaiter& w, uint32_t slots, uint32_t queue_max) {
  slots_ = slots == 0 ? 1 : slots;
  if (head_ && in_flight_ < slots_) grant();  // earlier waiters first (slots grew on reload)
  if (in_flight_ < slots_ && !head_) {
    ++in_flight_;
    if (g_in_flight_) g_in_flight_->Increment();
    return Take::Granted;
  }
  if (queued_ >= queue_max) return Take::Full;
  w.queued_ = true;
  w.prev_ = tail_;
  w.next_ = nullptr;
  (tail_ ? tail_->next_ : head_) = &w;
  tail_ = &w;
  ++queued_;
  if (g_queued_) g_queued_->Increment();
  return Take::Queued;  // on_slot() from a later release(), never from inside take()
}

void GateLane::release() {
  if (in_flight_ > 0) {
    --in_flight_;
    if (g_in_flight_) g_in_flight_->Decrement();
  }
  grant();
}

void GateLane::cancel(GateWaiter& w) {
  if (!w.queued_) return;
  (w.prev_ ? w.prev_->next_ : head_) = w.next_;
  (w.next_ ? w.next_->prev_ : tail_) = w.prev_;
  w.prev_ = w.next_ = nullptr;
  w.queued_ = false;
  --queued_;
  if (g_queued_) g_queued_->Decrement();
}

void GateLane::grant() {
  if (granting_) return;  // an on_slot() below released or took: the loop continues
  granting_ = true;
  while (head_ && in_flight_ < slots_) {
    GateWaiter* w = head_;
    cancel(*w);
    ++in_flight_;
    if (g_in_flight_) g_in_flight_->Increment();
    w->on_slot();
  }
  granting_ = false;
}

}  // namespace lb
