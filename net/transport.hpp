// The transport seam between a socket and the code that uses it (the
// balancer's session stages, the health checker, the load generator). Users
// only talk to `Transport` (read/write/shutdown/close) and hear back through
// `TransportSink`; TLS (net/tls_transport.hpp) is another Transport wrapping an
// inner one, so TLS changes nothing above it.
//
// Contract (every implementation, tested in tests/unit/net):
//  - After stop_read() returns, no on_read/on_eof/on_error(read) reaches the
//    sink until start_read(). Bytes the transport already holds (TLS: records
//    decrypted from the same TCP read) are kept, in order, and delivered after
//    start_read() — possibly from inside start_read() itself.
//  - EOF is reported after every byte before it.
//  - write() takes what the kernel takes at once and queues a copy of the
//    rest; pending() is what backpressure sees. on_drained fires when pending()
//    falls to the low-water mark.
//
// Ownership: a Transport is a heap object that never moves, used only on its
// loop's thread. close() is idempotent; the owner frees it only from
// TransportSink::on_closed (exactly once, after the last uv_close callback). A
// queued write owns its bytes until its callback, whatever its status. The
// sink may be replaced (set_sink) when another stage takes the transport over.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace net {

class MemoryBudget;
class Transport;

class TransportSink {
 public:
  virtual ~TransportSink() = default;
  virtual void on_read(Transport* t, const uint8_t* data, size_t len) = 0;
  virtual void on_eof(Transport* t) = 0;
  virtual void on_error(Transport* t, int uv_err) = 0;    // read/write error or reset
  virtual void on_connect(Transport* t, int status) = 0;  // outgoing connections
  virtual void on_drained(Transport* t) = 0;              // pending() fell to the low-water mark
  virtual void on_shutdown(Transport* t) = 0;             // our half-close reached the kernel
  virtual void on_closed(Transport* t) = 0;               // last callback; the sink may free t
  // While not reading, with watch_hangup(true): the peer's FIN, a reset or a
  // socket error happened (once; the watch is then off). Reading again reports
  // what it was, after any bytes before it.
  virtual void on_hangup(Transport*) {}
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual void set_sink(TransportSink* sink) = 0;
  virtual void start_read() = 0;
  virtual void stop_read() = 0;
  // Writes at once what the kernel takes; queues a copy of the rest. Returns
  // 0 or a uv error; on an error nothing more is queued and no on_error
  // follows for it: the caller handles the return (a reset socket is also
  // reported by the read side).
  virtual int write(const uint8_t* data, size_t len) = 0;
  virtual size_t pending() const = 0;  // bytes queued, not yet taken by the kernel
  virtual void shutdown() = 0;         // half-close after the queued bytes
  virtual void close(bool reset) = 0;  // idempotent; reset sends RST
  virtual bool closing() const = 0;
  // Why the last connect/read failed beyond the uv error (e.g. a TLS alert); may be empty.
  virtual std::string error_detail() const { return {}; }
  // The connected TCP socket when every byte written here goes to it as is
  // (plain TCP), else -1 (TLS, WebSocket): what in-kernel forwarding
  // (lb/kernel_splice.hpp) can join.
  virtual int native_fd() const { return -1; }
  // Asks for on_hangup while not reading (in-kernel forwarding watches the
  // ends of joined streams so). False: this transport cannot; nothing changed.
  virtual bool watch_hangup(bool) { return false; }
};

// Per-loop read slab: every read on a loop lands here and is consumed (or
// copied into a write request) inside the read callback, so idle connections
// own no buffers.
struct Slab {
  static constexpr size_t kSize = 64 * 1024;
  alignas(64) char data[kSize];
};

class TcpTransport final : public Transport {
 public:
  // The tcp handle is initialised on `loop`; the caller then open()s an
  // accepted descriptor, or connect()s. budget (optional) is charged with the
  // bytes queued for writing.
  TcpTransport(uv_loop_t* loop, Slab* slab, TransportSink* sink, MemoryBudget* budget = nullptr);
  uv_tcp_t* tcp() { return &tcp_; }
  int open(int fd);  // adopts an accepted, connected socket (uv_tcp_open)
  int connect(const sockaddr* addr);

  void set_sink(TransportSink* sink) override { sink_ = sink; }
  void start_read() override;
  void stop_read() override;
  int write(const uint8_t* data, size_t len) override;
  size_t pending() const override { return pending_; }
  void shutdown() override;
  void close(bool reset) override;
  bool closing() const override { return closing_; }
  int native_fd() const override;

  static constexpr size_t kLowWater = 16 * 1024;

 private:
  static void alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void write_cb(uv_write_t* req, int status);
  static void connect_cb(uv_connect_t* req, int status);
  static void shutdown_cb(uv_shutdown_t* req, int status);
  static void close_cb(uv_handle_t* h);

  uv_tcp_t tcp_;
  Slab* slab_;
  TransportSink* sink_;
  MemoryBudget* budget_;
  size_t pending_ = 0;
  bool reading_ = false;
  bool shut_ = false;
  bool closing_ = false;
};

}  // namespace net
