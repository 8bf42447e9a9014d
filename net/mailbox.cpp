#include "net/mailbox.hpp"

namespace net {

int Mailbox::init(uv_loop_t* loop) {
  int r = uv_async_init(loop, &async_, async_cb);
  if (r != 0) return r;
  async_.data = this;
  std::lock_guard<std::mutex> g(mu_);
  open_ = true;
  return 0;
}

bool Mailbox::post(std::function<void()> fn) {
  std::lock_guard<std::mutex> g(mu_);
  if (!open_) return false;
  queue_.push_back(std::move(fn));
  uv_async_send(&async_);
  return true;
}

bool Mailbox::open() const {
  std::lock_guard<std::mutex> g(mu_);
  return open_;
}

void Mailbox::close() {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!open_) return;
    open_ = false;
    queue_.clear();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

void Mailbox::async_cb(uv_async_t* a) {
  auto* m = static_cast<Mailbox*>(a->data);
  std::vector<std::function<void()>> q;
  {
    std::lock_guard<std::mutex> g(m->mu_);
    q.swap(m->queue_);
  }
  for (auto& fn : q) fn();  // a function may close() the mailbox: the rest still run
}

}  // namespace net
