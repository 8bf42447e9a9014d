#include "lb/timer_heap.hpp"

namespace lb {

TimerNode::~TimerNode() {
  if (heap_ && armed()) heap_->disarm(*this);
}

void TimerHeap::init(uv_loop_t* loop) {
  loop_ = loop;
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  closed_ = false;
}

void TimerHeap::close() {
  if (closed_) return;
  closed_ = true;
  while (!heap_.empty()) remove_at(static_cast<uint32_t>(heap_.size() - 1));
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void TimerHeap::arm(TimerNode& n, uint64_t ms) {
  if (closed_) return;
  // Armed from a callback of this tick: not before the next one (a 0 ms
  // re-arm must not make run_due a busy loop), as with a uv timer.
  uint64_t due = uv_now(loop_) + (running_ && ms == 0 ? 1 : ms);
  n.heap_ = this;
  if (n.armed()) {
    uint32_t i = n.index_;
    heap_[i].due = due;
    sift_up(i);
    sift_down(n.index_);
  } else {
    heap_.push_back({due, &n});
    n.index_ = static_cast<uint32_t>(heap_.size() - 1);
    sift_up(n.index_);
  }
  if (due < scheduled_) schedule();
}

void TimerHeap::disarm(TimerNode& n) {
  if (!n.armed()) return;
  remove_at(n.index_);
  // The loop timer stays: a wake-up with nothing due only reschedules.
}

void TimerHeap::remove_at(uint32_t i) {
  heap_[i].node->index_ = TimerNode::kNone;
  uint32_t last = static_cast<uint32_t>(heap_.size() - 1);
  if (i != last) {
    place(i, heap_[last]);
    heap_.pop_back();
    sift_up(i);
    sift_down(heap_[i].node->index_);
  } else {
    heap_.pop_back();
  }
}

void TimerHeap::timer_cb(uv_timer_t* t) {
  static_cast<TimerHeap*>(t->data)->run_due();
}

void TimerHeap::run_due() {
  scheduled_ = UINT64_MAX;
  uint64_t now = uv_now(loop_);
  running_ = true;
  while (!heap_.empty() && heap_[0].due <= now) {
    TimerNode* n = heap_[0].node;
    remove_at(0);
    n->on_timer_due();  // may arm/disarm anything, or close its session
  }
  running_ = false;
  if (!closed_) schedule();
}

void TimerHeap::schedule() {
  if (heap_.empty()) {
    uv_timer_stop(&timer_);
    scheduled_ = UINT64_MAX;
    return;
  }
  uint64_t due = heap_[0].due, now = uv_now(loop_);
  scheduled_ = due;
  uv_timer_start(&timer_, timer_cb, due > now ? due - now : 0, 0);
}

void TimerHeap::place(uint32_t i, Slot s) {
  heap_[i] = s;
  s.node->index_ = i;
}

void TimerHeap::sift_up(uint32_t i) {
  Slot s = heap_[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (heap_[parent].due <= s.due) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, s);
}

void TimerHeap::sift_down(uint32_t i) {
  Slot s = heap_[i];
  uint32_t n = static_cast<uint32_t>(heap_.size());
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_[c + 1].due < heap_[c].due) ++c;
    if (heap_[c].due >= s.due) break;
    place(i, heap_[c]);
    i = c;
  }
  place(i, s);
}

}  // namespace lb
