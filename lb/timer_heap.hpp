// One loop timer for many deadlines: a binary min-heap of intrusive nodes
// behind a single uv_timer_t per worker, so a session holds 16 bytes of timer
// state instead of its own 152-byte uv_timer_t handle (and has one handle
// fewer to close). Semantics follow a one-shot uv timer: arm(ms) fires once
// when the loop clock (uv_now) reaches now + ms; re-arming replaces the
// deadline; disarm() cancels. A node fires at most once per arm.
//
// Thread: the loop's. Ownership: nodes are not owned; a node must be disarmed
// before it is destroyed (TimerNode's destructor does it). Callbacks may arm
// and disarm any node, including their own, and close sessions: a node
// disarmed by an earlier callback of the same tick does not fire.
#pragma once

#include <uv.h>

#include <cstdint>
#include <vector>

namespace lb {

class TimerHeap;

class TimerNode {
 public:
  TimerNode() = default;
  TimerNode(const TimerNode&) = delete;
  TimerNode& operator=(const TimerNode&) = delete;
  virtual void on_timer_due() = 0;
  bool armed() const { return index_ != kNone; }

 protected:
  ~TimerNode();  // disarms

 private:
  friend class TimerHeap;
  static constexpr uint32_t kNone = UINT32_MAX;
  TimerHeap* heap_ = nullptr;
  uint32_t index_ = kNone;
};

class TimerHeap {
 public:
  TimerHeap() = default;
  void init(uv_loop_t* loop);  // once, on the loop thread or before it runs
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;
  // The loop timer must have been closed (close()) and its callback run.
  ~TimerHeap() = default;

  void arm(TimerNode& n, uint64_t ms);
  void disarm(TimerNode& n);
  // Closes the loop timer (worker stop); arm() does nothing afterwards.
  void close();
  size_t size() const { return heap_.size(); }

 private:
  struct Slot {
    uint64_t due;
    TimerNode* node;
  };
  static void timer_cb(uv_timer_t* t);
  void run_due();
  void schedule();  // the loop timer for the earliest deadline
  void place(uint32_t i, Slot s);
  void sift_up(uint32_t i);
  void sift_down(uint32_t i);
  void remove_at(uint32_t i);

  uv_loop_t* loop_ = nullptr;
  uv_timer_t timer_{};
  std::vector<Slot> heap_;
  uint64_t scheduled_ = UINT64_MAX;  // due of the loop timer, UINT64_MAX: stopped
  bool closed_ = true;               // until init()
  bool running_ = false;             // inside run_due
};

}  // namespace lb
