#include "net/fd_transport.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#include "net/budget.hpp"

namespace net {

// ---- PollSet ----

PollSet::~PollSet() {
  if (epfd_ >= 0) ::close(epfd_);
}

bool PollSet::init(uv_loop_t* loop, Slab* slab, MemoryBudget* budget) {
  loop_ = loop;
  slab_ = slab;
  budget_ = budget;
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return false;
  // libuv's own epoll set (listeners, timers, async wakeups) nests in ours:
  // the loop waits on one set, and the sockets' events come straight from it.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = this;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, uv_backend_fd(loop), &ev) != 0) {
    int e = errno;
    ::close(epfd_);
    epfd_ = -1;
    errno = e;
    return false;
  }
  // What keeps the loop alive (and libuv's timeout finite) until close().
  if (int r = uv_async_init(loop, &alive_, nullptr); r != 0) {
    ::close(epfd_);  // the set goes with its registration of libuv's
    epfd_ = -1;
    errno = -r;
    return false;
  }
  alive_.data = this;
  return true;
}

bool PollSet::turn(int max_wait_ms) {
  uv_update_time(loop_);
  int timeout = deferred_.empty() ? uv_backend_timeout(loop_) : 0;  // libuv: -1 (none) or its next timer
  if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms)) timeout = max_wait_ms;
  // A bounded batch per turn; level-triggered, so what is left comes next turn.
  epoll_event evs[128];
  int n = ::epoll_wait(epfd_, evs, 128, timeout);  // EINTR: -1, an empty turn
  uv_update_time(loop_);                          // uv_now() for the callbacks below
  bool uv_ready = false;
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.ptr == this) {
      uv_ready = true;
      continue;
    }
    ++dispatched_;
    // A transport closed by an earlier event of this batch left the set, and
    // is freed only from on_closed, which is delivered below.
    static_cast<FdTransport*>(evs[i].data.ptr)->on_events(evs[i].events);
  }
  deliver_deferred();
  bool alive = true;
  // libuv's phases only when they have something: its set is readable, a timer
  // is due, or a callback, an idle handle or a close is pending. Otherwise a
  // turn is one epoll_wait.
  if (uv_ready || uv_backend_timeout(loop_) == 0) {
    ++uv_runs_;
    alive = uv_run(loop_, UV_RUN_NOWAIT) != 0;
    deliver_deferred();  // what its callbacks deferred (a stage timer closing a session)
  }
  return alive || !deferred_.empty();
}

void PollSet::run() {
  while (turn(-1)) {
  }
}

void PollSet::defer(FdTransport* t) { deferred_.push_back(t); }

void PollSet::deliver_deferred() {
  if (deferred_.empty()) return;
  // What the callbacks defer meanwhile (a session closing its other
  // transport) is delivered in the same turn.
  for (size_t i = 0; i < deferred_.size(); ++i)  // grows meanwhile: by index
    deferred_[i]->on_deferred();                 // may free it (on_closed)
  deferred_.clear();
  maybe_close_handles();
}

void PollSet::close() {
  closing_ = true;
  maybe_close_handles();
}

void PollSet::maybe_close_handles() {
  if (!closing_ || handles_closed_ || !deferred_.empty() || epfd_ < 0) return;
  handles_closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&alive_), nullptr);
}

// ---- FdTransport ----

struct FdTransport::Chunk {
  Chunk* next;
  size_t len;
  size_t off;  // bytes of it already sent
  uint8_t bytes[1];
};

FdTransport::FdTransport(PollSet& set, TransportSink* sink) : set_(set), sink_(sink) {}

FdTransport::Chunk* FdTransport::head() const {
  return tail_ ? tail_->next : nullptr;
}

FdTransport::~FdTransport() {
  drop_queue();
  if (fd_ >= 0) ::close(fd_);  // never opened through close(): only a test can get here
}

int FdTransport::open(int fd) {
  if (fd_ >= 0 || closing_) return UV_EBUSY;
  int one = 1;
  if (::ioctl(fd, FIONBIO, &one) != 0) return -errno;
  fd_ = fd;
  if (nodelay_) set_nodelay(true);
  return 0;
}

void FdTransport::set_nodelay(bool on) {
  nodelay_ = on;
  if (fd_ < 0) return;
  int v = on ? 1 : 0;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);  // best effort, as uv_tcp_nodelay
}

int FdTransport::connect(const sockaddr* addr) {
  if (fd_ >= 0 || closing_) return UV_EBUSY;
  int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  fd_ = fd;
  if (nodelay_) set_nodelay(true);
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  int r;
  do {
    r = ::connect(fd, addr, len);
  } while (r != 0 && errno == EINTR);
  if (r == 0) {  // connected at once (loopback may): reported from the loop, as always
    connect_status_ = 0;
    defer(kConnect);
    return 0;
  }
  if (errno == EINPROGRESS) {
    connecting_ = true;
    watch();
    return 0;
  }
  if (errno == ECONNREFUSED) {  // like libuv: a refusal is the callback's news
    connect_status_ = UV_ECONNREFUSED;
    defer(kConnect);
    return 0;
  }
  int err = -errno;
  ::close(fd_);
  fd_ = -1;
  return err;
}

void FdTransport::watch() {
  if (closing_ || fd_ < 0) return;
  uint8_t want = 0;
  if (reading_) want |= kIn | kRdHup;
  if (hangup_ && !reading_) want |= kRdHup;
  if (connecting_ || tail_) want |= kOut;
  if (want == watched_) return;
  epoll_event ev{};
  ev.events = ((want & kIn) ? EPOLLIN : 0u) | ((want & kOut) ? EPOLLOUT : 0u) |
              ((want & kRdHup) ? EPOLLRDHUP : 0u);
  ev.data.ptr = this;
  int op = watched_ == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (::epoll_ctl(set_.epfd_, op, fd_, &ev) == 0 || op == EPOLL_CTL_DEL) watched_ = want;
  // ADD/MOD can only fail for lack of kernel memory: the transport then waits
  // for nothing, and its session's stage timer or idle timeout ends it.
}

void FdTransport::defer(uint8_t what) {
  bool queued = deferred_ != 0;
  deferred_ |= what;
  if (!queued) set_.defer(this);
}

void FdTransport::on_deferred() {
  uint8_t what = deferred_;
  deferred_ = 0;
  if (what & kClosed) {
    sink_->on_closed(this);  // last: the sink may free *this
    return;
  }
  if (closing_) return;
  if (what & kConnect) {
    sink_->on_connect(this, connect_status_);
    if (closing_) return;  // on_closed was queued again by close()
    if (connect_status_ == 0 && (tail_ || shut_pending_)) flush();  // what waited for the connect
  }
  if (!closing_ && (what & kShutdown)) sink_->on_shutdown(this);
}

void FdTransport::on_events(uint32_t ev) {
  if (closing_) return;
  if (connecting_) {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    connecting_ = false;
    watch();
    sink_->on_connect(this, err ? static_cast<int>(-err) : 0);
    if (closing_ || err) return;
    if (tail_ || shut_pending_) flush();  // what waited for the connect
    return;
  }
  if (tail_ && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    flush();
    if (closing_) return;
  }
  if (reading_) {
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_once();
  } else if (hangup_ && (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    hangup_ = false;  // once: reading again tells what it was
    watch();
    sink_->on_hangup(this);
  }
}

bool FdTransport::watch_hangup(bool on) {
  if (closing_ || fd_ < 0) return false;
  hangup_ = on;
  watch();
  return true;
}

void FdTransport::read_once() {
  Slab* slab = set_.slab_;
  ssize_t n;
  do {
    n = ::recv(fd_, slab->data, Slab::kSize, 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    sink_->on_read(this, reinterpret_cast<const uint8_t*>(slab->data), static_cast<size_t>(n));
  } else if (n == 0) {
    stop_read();
    sink_->on_eof(this);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    int err = -errno;
    stop_read();
    sink_->on_error(this, err);
  }
}

void FdTransport::start_read() {
  if (reading_ || closing_) return;
  reading_ = true;
  watch();
}

void FdTransport::stop_read() {
  if (!reading_) return;
  reading_ = false;
  watch();
}

int FdTransport::write(const uint8_t* data, size_t len) {
  if (closing_) return UV_ECANCELED;
  if (write_failed_) return UV_EPIPE;
  if (fd_ < 0) return UV_EBADF;
  if (len == 0) return 0;
  size_t done = 0;
  if (!tail_ && !connecting_ && !(deferred_ & kConnect)) {
    ssize_t n;
    do {
      n = ::send(fd_, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n >= 0) {
      done = static_cast<size_t>(n);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return -errno;
    }
  }
  if (done == len) return 0;
  size_t rest = len - done;
  void* mem = std::malloc(offsetof(Chunk, bytes) + rest);
  if (!mem) return UV_ENOMEM;
  auto* c = static_cast<Chunk*>(mem);
  c->len = rest;
  c->off = 0;
  std::memcpy(c->bytes, data + done, rest);
  if (tail_) {  // into the ring, after the newest
    c->next = tail_->next;
    tail_->next = c;
  } else {
    c->next = c;
  }
  tail_ = c;
  pending_ += rest;
  if (MemoryBudget* b = set_.budget_) b->charge(rest);
  watch();
  return 0;
}

void FdTransport::flush() {
  const size_t before = pending_;
  while (tail_) {
    iovec iov[64];
    int cnt = 0;
    size_t offered = 0;
    Chunk* c = tail_->next;
    do {
      iov[cnt] = {c->bytes + c->off, c->len - c->off};
      offered += iov[cnt].iov_len;
      ++cnt;
      c = c->next;
    } while (c != tail_->next && cnt < 64);
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(cnt);
    ssize_t n;
    do {
      n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail_write(-errno);
      return;
    }
    size_t sent = static_cast<size_t>(n);
    pending_ -= sent;
    if (MemoryBudget* b = set_.budget_) b->release(sent);
    while (sent > 0) {
      Chunk* h = tail_->next;
      size_t left = h->len - h->off;
      if (sent < left) {
        h->off += sent;
        break;
      }
      sent -= left;
      if (h == tail_)
        tail_ = nullptr;  // the last one
      else
        tail_->next = h->next;
      std::free(h);
    }
    if (static_cast<size_t>(n) < offered) break;  // the socket is full: wait for EPOLLOUT
  }
  watch();
  if (before > kLowWater && pending_ <= kLowWater) {
    sink_->on_drained(this);
    if (closing_) return;
  }
  if (!tail_ && shut_pending_) {
    shut_pending_ = false;
    do_shutdown();
    sink_->on_shutdown(this);
  }
}

void FdTransport::fail_write(int err) {
  write_failed_ = true;
  shut_pending_ = false;
  drop_queue();
  watch();
  sink_->on_error(this, err);
}

void FdTransport::drop_queue() {
  if (!tail_) return;
  Chunk* c = tail_->next;
  tail_->next = nullptr;  // open the ring
  tail_ = nullptr;
  while (c) {
    Chunk* next = c->next;
    size_t left = c->len - c->off;
    pending_ -= left;
    if (MemoryBudget* b = set_.budget_) b->release(left);
    std::free(c);
    c = next;
  }
}

void FdTransport::do_shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);  // a failure shows on the read side
}

void FdTransport::shutdown() {
  if (shut_ || closing_) return;
  shut_ = true;
  if (tail_ || connecting_ || (deferred_ & kConnect)) {
    shut_pending_ = true;  // after the queued bytes (flush)
    return;
  }
  do_shutdown();
  defer(kShutdown);
}

void FdTransport::close(bool reset) {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  connecting_ = false;
  if (fd_ >= 0) {
    if (watched_) {
      epoll_event ev{};
      ::epoll_ctl(set_.epfd_, EPOLL_CTL_DEL, fd_, &ev);
      watched_ = 0;
    }
    // As uv_tcp_close_reset: an RST, unless a FIN was already asked for.
    if (reset && !shut_) {
      linger l{1, 0};
      ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    ::close(fd_);
    fd_ = -1;
  }
  drop_queue();
  defer(kClosed);
}

}  // namespace net
