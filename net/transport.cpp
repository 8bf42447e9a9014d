#include "net/transport.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include "net/budget.hpp"

namespace net {

namespace {
// A queued write: owns its bytes (copied inline after the struct) until write_cb.
struct WriteReq {
  uv_write_t req;
  TcpTransport* t;
  size_t len;
  uint8_t bytes[1];
};
}  // namespace

TcpTransport::TcpTransport(uv_loop_t* loop, Slab* slab, TransportSink* sink, MemoryBudget* budget)
    : slab_(slab), sink_(sink), budget_(budget) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
}

int TcpTransport::native_fd() const {
  uv_os_fd_t fd = -1;
  if (closing_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return -1;
  return fd;
}

int TcpTransport::open(int fd) {
  return uv_tcp_open(&tcp_, fd);
}

// The connect and shutdown requests live only while they are in flight (an
// idle session holds neither): libuv calls their callback exactly once, with
// UV_ECANCELED when the handle is closed first, and before the close callback.
int TcpTransport::connect(const sockaddr* addr) {
  auto* req = new (std::nothrow) uv_connect_t;
  if (!req) return UV_ENOMEM;
  req->data = this;
  int r = uv_tcp_connect(req, &tcp_, addr, connect_cb);
  if (r != 0) delete req;
  return r;
}

void TcpTransport::connect_cb(uv_connect_t* req, int status) {
  auto* t = static_cast<TcpTransport*>(req->data);
  delete req;
  if (status == UV_ECANCELED) return;  // closed while connecting; on_closed follows
  t->sink_->on_connect(t, status);
}

void TcpTransport::alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* t = static_cast<TcpTransport*>(h->data);
  *buf = uv_buf_init(t->slab_->data, Slab::kSize);
}

void TcpTransport::read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* t = static_cast<TcpTransport*>(s->data);
  if (n > 0) {
    t->sink_->on_read(t, reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(n));
  } else if (n == UV_EOF) {
    t->stop_read();
    t->sink_->on_eof(t);
  } else if (n < 0) {
    t->stop_read();
    t->sink_->on_error(t, static_cast<int>(n));
  }
}

void TcpTransport::start_read() {
  if (reading_ || closing_) return;
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), alloc_cb, read_cb) == 0) reading_ = true;
}

void TcpTransport::stop_read() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

int TcpTransport::write(const uint8_t* data, size_t len) {
  if (closing_) return UV_ECANCELED;
  if (len == 0) return 0;
  uv_buf_t b = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(data)),
                           static_cast<unsigned>(len));
  size_t done = 0;
  if (pending_ == 0) {
    int r = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
    if (r >= 0) {
      done = static_cast<size_t>(r);
    } else if (r != UV_EAGAIN) {
      return r;
    }
  }
  if (done == len) return 0;
  size_t rest = len - done;
  void* mem = std::malloc(sizeof(WriteReq) + rest);
  if (!mem) return UV_ENOMEM;
  auto* w = new (mem) WriteReq;
  w->t = this;
  w->len = rest;
  std::memcpy(w->bytes, data + done, rest);
  w->req.data = w;
  uv_buf_t wb = uv_buf_init(reinterpret_cast<char*>(w->bytes), static_cast<unsigned>(rest));
  int r = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &wb, 1, write_cb);
  if (r != 0) {
    w->~WriteReq();
    std::free(mem);
    return r;
  }
  pending_ += rest;
  if (budget_) budget_->charge(rest);
  return 0;
}

void TcpTransport::write_cb(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  TcpTransport* t = w->t;
  size_t len = w->len;
  w->~WriteReq();
  std::free(w);
  size_t before = t->pending_;
  t->pending_ -= len;
  if (t->budget_) t->budget_->release(len);
  if (status == UV_ECANCELED || t->closing_) return;
  if (status < 0) {
    t->sink_->on_error(t, status);
    return;
  }
  if (before > kLowWater && t->pending_ <= kLowWater) t->sink_->on_drained(t);
}

void TcpTransport::shutdown() {
  if (shut_ || closing_) return;
  shut_ = true;
  auto* req = new (std::nothrow) uv_shutdown_t;
  if (req) req->data = this;
  if (!req || uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp_), shutdown_cb) != 0) {
    delete req;
    sink_->on_shutdown(this);
  }
}

void TcpTransport::shutdown_cb(uv_shutdown_t* req, int status) {
  auto* t = static_cast<TcpTransport*>(req->data);
  delete req;
  if (status == UV_ECANCELED || t->closing_) return;
  t->sink_->on_shutdown(t);
}

void TcpTransport::close(bool reset) {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  auto* h = reinterpret_cast<uv_handle_t*>(&tcp_);
  // close_reset refuses a handle that is shutting down; a plain close then.
  if (reset && !shut_ && uv_tcp_close_reset(&tcp_, close_cb) == 0) return;
  uv_close(h, close_cb);
}

void TcpTransport::close_cb(uv_handle_t* h) {
  auto* t = static_cast<TcpTransport*>(h->data);
  t->sink_->on_closed(t);
}

}  // namespace net
