// A thread mailbox for one libuv loop: any thread posts a function, the loop's
// thread runs it (mutex-guarded queue + uv_async). Used by the balancer's
// workers and the health monitor.
//
// Ownership: embedded in an object that never moves; init() and close() on
// the loop's thread (or before the loop runs). After close() posts are
// dropped (post returns false) and nothing queued runs any more.
#pragma once

#include <uv.h>

#include <functional>
#include <mutex>
#include <vector>

namespace net {

class Mailbox {
 public:
  Mailbox() = default;
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  int init(uv_loop_t* loop);
  bool post(std::function<void()> fn);  // any thread
  void close();                         // loop thread; idempotent
  bool open() const;

 private:
  static void async_cb(uv_async_t* a);
  uv_async_t async_;
  mutable std::mutex mu_;  // guards queue_ and open_
  std::vector<std::function<void()>> queue_;
  bool open_ = false;
};

}  // namespace net
