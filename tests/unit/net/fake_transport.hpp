// A Transport driven by the test: it records what is written to it and lets
// the test deliver reads, EOF, errors and connect results to its sink. It
// checks the contract its users rely on: nothing is delivered while reading
// is stopped (deliver() refuses and reports it), on_closed exactly once.
#pragma once

#include <string>

#include "net/transport.hpp"

namespace test {

class FakeTransport final : public net::Transport {
 public:
  explicit FakeTransport(net::TransportSink* sink = nullptr) : sink_(sink) {}

  // net::Transport
  void set_sink(net::TransportSink* s) override { sink_ = s; }
  void start_read() override { reading = true; }
  void stop_read() override { reading = false; }
  int write(const uint8_t* d, size_t n) override {
    if (closed || write_error) return write_error ? write_error : UV_ECANCELED;
    written.append(reinterpret_cast<const char*>(d), n);
    return 0;
  }
  size_t pending() const override { return pending_bytes; }
  void shutdown() override { shut = true; }
  void close(bool r) override {
    if (closed) return;
    closed = true;
    reset = r;
  }
  bool closing() const override { return closed; }

  // Test side. deliver() returns false (and delivers nothing) while not reading.
  bool deliver(const std::string& bytes) {
    if (!reading || closed) return false;
    sink_->on_read(this, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    return true;
  }
  void eof() { sink_->on_eof(this); }
  void error(int e) { sink_->on_error(this, e); }
  void connected(int status = 0) { sink_->on_connect(this, status); }
  void drained() { sink_->on_drained(this); }
  void shut_done() { sink_->on_shutdown(this); }
  // The last callback: the sink may delete this object.
  void finish_close() { sink_->on_closed(this); }

  std::string written;
  size_t pending_bytes = 0;
  int write_error = 0;
  bool reading = false, shut = false, closed = false, reset = false;

 private:
  net::TransportSink* sink_;
};

// A sink that records everything it hears.
class RecordingSink : public net::TransportSink {
 public:
  void on_read(net::Transport* t, const uint8_t* d, size_t n) override {
    got.append(reinterpret_cast<const char*>(d), n);
    if (pause_after && got.size() >= pause_after) {
      pause_after = 0;
      t->stop_read();
    }
  }
  void on_eof(net::Transport*) override { ++eofs; }
  void on_error(net::Transport*, int e) override { last_error = e; }
  void on_connect(net::Transport*, int s) override {
    ++connects;
    connect_status = s;
  }
  void on_drained(net::Transport*) override { ++drains; }
  void on_shutdown(net::Transport*) override { ++shutdowns; }
  void on_closed(net::Transport* t) override {
    ++closes;
    delete t;
  }

  std::string got;
  size_t pause_after = 0;  // stop reading once this many bytes arrived
  int eofs = 0, connects = 0, connect_status = -1, drains = 0, shutdowns = 0, closes = 0;
  int last_error = 0;
};

}  // namespace test
