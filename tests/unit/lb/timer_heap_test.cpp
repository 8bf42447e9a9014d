// lb/timer_heap: the per-worker heap that replaced each session's uv timer.
// Driven by a real libuv loop; deadlines are loop milliseconds.
#include "lb/timer_heap.hpp"

#include <doctest/doctest.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <random>
#include <vector>

namespace {

struct Probe final : lb::TimerNode {
  int id = 0;
  std::vector<int>* fired = nullptr;
  std::function<void(Probe&)> then;
  uint64_t fired_at = 0;
  uv_loop_t* loop = nullptr;
  void on_timer_due() override {
    fired_at = uv_now(loop);
    fired->push_back(id);
    if (then) then(*this);
  }
  ~Probe() = default;
};

struct Loop {
  uv_loop_t loop;
  lb::TimerHeap heap;
  Loop() {
    uv_loop_init(&loop);
    heap.init(&loop);
  }
  ~Loop() {
    heap.close();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
  void run_until_idle() {
    // Every armed node fires, then the loop has only the stopped timer left.
    for (int i = 0; i < 10000 && heap.size() > 0; ++i) uv_run(&loop, UV_RUN_ONCE);
  }
};

}  // namespace

TEST_CASE("timer heap: nodes fire once each, in deadline order, not before their deadline") {
  Loop l;
  std::vector<int> fired;
  std::mt19937 rng(7);
  std::vector<std::unique_ptr<Probe>> probes;
  uint64_t start = uv_now(&l.loop);
  std::vector<uint64_t> due(200);
  for (int i = 0; i < 200; ++i) {
    auto p = std::make_unique<Probe>();
    p->id = i;
    p->fired = &fired;
    p->loop = &l.loop;
    due[i] = rng() % 60;
    l.heap.arm(*p, due[i]);
    probes.push_back(std::move(p));
  }
  // Re-arming replaces the deadline; disarming cancels.
  l.heap.arm(*probes[0], 70);
  due[0] = 70;
  for (int i = 1; i < 200; i += 10) l.heap.disarm(*probes[i]);
  CHECK(l.heap.size() == 180);
  l.run_until_idle();
  CHECK(fired.size() == 180);
  for (size_t k = 1; k < fired.size(); ++k)
    CHECK(probes[fired[k - 1]]->fired_at <= probes[fired[k]]->fired_at);
  for (int id : fired) {
    CHECK(id % 10 != 1);
    CHECK(probes[id]->fired_at >= start + due[id]);
  }
  CHECK(fired.back() == 0);  // the re-armed one, last
}

TEST_CASE("timer heap: callbacks may re-arm themselves, arm earlier nodes and disarm others") {
  Loop l;
  std::vector<int> fired;
  Probe a, b, c, d;
  for (Probe* p : {&a, &b, &c, &d}) {
    p->fired = &fired;
    p->loop = &l.loop;
  }
  a.id = 1;
  b.id = 2;
  c.id = 3;
  d.id = 4;
  int again = 0;
  uint64_t first = 0;
  a.then = [&](Probe& self) {
    if (++again > 1) return;
    first = self.fired_at;
    l.heap.arm(self, 0);  // 0 ms from its own callback: a later tick, not a busy loop
    l.heap.disarm(c);     // c was due later: never fires
    l.heap.arm(d, 3);     // earlier than b, the earliest deadline left
  };
  l.heap.arm(a, 5);
  l.heap.arm(b, 500);
  l.heap.arm(c, 400);
  l.run_until_idle();
  CHECK(fired == std::vector<int>{1, 1, 4, 2});
  CHECK(a.fired_at > first);
  CHECK(d.fired_at < b.fired_at);
  CHECK_FALSE(c.armed());
}

TEST_CASE("timer heap: a node destroyed while armed leaves the heap") {
  Loop l;
  std::vector<int> fired;
  Probe keep;
  keep.fired = &fired;
  keep.loop = &l.loop;
  keep.id = 9;
  {
    Probe gone;
    gone.fired = &fired;
    gone.loop = &l.loop;
    l.heap.arm(gone, 1);
    l.heap.arm(keep, 2);
  }
  CHECK(l.heap.size() == 1);
  l.run_until_idle();
  CHECK(fired == std::vector<int>{9});
}
