// The connect gate: HAProxy's server maxconn + queue, for the step where a
// reconnect storm hurts — connect to a broker until its CONNACK. Each backend
// has one lane per worker (its share of limits.backend_max_connecting slots
// and of limits.backend_queue places); a session takes a slot before it
// connects and gives it back when the CONNACK (or a failure) arrives. Without
// a free slot it waits in FIFO order instead of overflowing the broker's
// listen backlog (which drops SYNs: 1 s, 3 s... retransmits, then refusals).
//
// Thread: a lane belongs to one worker's loop; no locks. Granting is a
// trampoline: a waiter's on_slot() may release or take again (say, a
// synchronous connect failure) without recursing through the whole queue.
#pragma once

#include <cstdint>

namespace prometheus {
class Gauge;
}

namespace lb {

class GateWaiter {
 public:
  virtual ~GateWaiter() = default;
  // A slot was taken for this waiter; it must release() it when done.
  virtual void on_slot() = 0;
  bool queued() const { return queued_; }

 private:
  friend class GateLane;
  GateWaiter* prev_ = nullptr;
  GateWaiter* next_ = nullptr;
  bool queued_ = false;
};

class GateLane {
 public:
  // Gauges (may be null): slots in use and queue length, summed over lanes.
  GateLane(prometheus::Gauge* in_flight, prometheus::Gauge* queued)
      : g_in_flight_(in_flight), g_queued_(queued) {}
  ~GateLane();
  GateLane(const GateLane&) = delete;
  GateLane& operator=(const GateLane&) = delete;

  enum class Take { Granted, Queued, Full };
  // Granted: a slot is the caller's now (on_slot is not called). Queued: on_slot
  // runs later, in FIFO order. Full: neither (the queue holds queue_max).
  Take take(GateWaiter& w, uint32_t slots, uint32_t queue_max);
  void release();              // gives a slot back; grants queued waiters
  void cancel(GateWaiter& w);  // leaves the queue (no slot was taken)

  uint32_t in_flight() const { return in_flight_; }
  uint32_t queued() const { return queued_; }

 private:
  void grant();

  prometheus::Gauge* g_in_flight_;
  prometheus::Gauge* g_queued_;
  uint32_t slots_ = 1;
  uint32_t in_flight_ = 0;
  uint32_t queued_ = 0;
  GateWaiter* head_ = nullptr;
  GateWaiter* tail_ = nullptr;
  bool granting_ = false;
};

}  // namespace lb
