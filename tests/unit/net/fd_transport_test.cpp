// net::FdTransport on a real loop and real loopback sockets: the Transport
// contract the balancer's sessions rely on (net/transport.hpp), and what the
// epoll set adds to get wrong — a socket that waits for nothing must never be
// reported (errors and hang-ups would spin the loop), callbacks never run
// inside the call that caused them, and on_closed comes exactly once and last.
#include "net/fd_transport.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "net/budget.hpp"

namespace {

struct Sink : net::TransportSink {
  std::string data;
  int eofs = 0, errors = 0, last_error = 0, connects = 0, connect_status = 1, drained = 0,
      shutdowns = 0, closed = 0, hangups = 0;
  bool in_call = false;      // set by the test around its own calls into the transport
  bool reentered = false;    // a callback ran inside one of them
  std::function<void(net::Transport*)> on_read_hook;

  void note() {
    if (in_call) reentered = true;
  }
  void on_read(net::Transport* t, const uint8_t* d, size_t n) override {
    note();
    data.append(reinterpret_cast<const char*>(d), n);
    if (on_read_hook) on_read_hook(t);
  }
  void on_eof(net::Transport*) override {
    note();
    ++eofs;
  }
  void on_error(net::Transport*, int e) override {
    note();
    ++errors;
    last_error = e;
  }
  void on_connect(net::Transport*, int s) override {
    note();
    ++connects;
    connect_status = s;
  }
  void on_drained(net::Transport*) override {
    note();
    ++drained;
  }
  void on_shutdown(net::Transport*) override {
    note();
    ++shutdowns;
  }
  void on_closed(net::Transport*) override {
    note();
    ++closed;
  }
  void on_hangup(net::Transport*) override {
    note();
    ++hangups;
  }
};

struct Loop {
  uv_loop_t loop{};
  net::Slab slab;
  net::MemoryBudget budget;  // charged with what every transport of the set queues
  net::PollSet set;
  Loop() {
    uv_loop_init(&loop);
    REQUIRE(set.init(&loop, &slab, &budget));
  }
  ~Loop() {
    set.close();
    set.run();  // ends only when every handle closed
    CHECK(uv_loop_close(&loop) == 0);
  }
  // Runs the loop until cond() or 5 s.
  bool run_until(const std::function<bool()>& cond) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > end) return false;
      set.turn(1);
    }
    return true;
  }
  void turns(int n) {
    for (int i = 0; i < n; ++i) set.turn(0);
  }
};

int listener(sockaddr_in& addr) {
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len);
  REQUIRE(::listen(l, 16) == 0);
  return l;
}

// A connected pair: {ours, the peer's}; the peer stays blocking.
std::pair<int, int> pair() {
  sockaddr_in addr;
  int l = listener(addr);
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  int a = ::accept(l, nullptr, nullptr);
  REQUIRE(a >= 0);
  ::close(l);
  return {a, c};
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 2000) == 1;
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

void reset(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

}  // namespace

TEST_CASE("property: random writes both ways, a slow reader, pauses: bytes out = bytes in") {
  Loop L;
  std::mt19937 rng(7);
  for (int round = 0; round < 4; ++round) {
    auto [a, peer] = pair();
    int small = 64 * 1024;  // loopback's autotuned buffers would take all 3 MB
    ::setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ::setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    Sink s;
    net::MemoryBudget& budget = L.budget;
    auto* t = new net::FdTransport(L.set, &s);
    REQUIRE(t->open(a) == 0);
    t->start_read();
    // Our side writes 3 MB in random pieces while the peer does not read: the
    // queue must hold what the kernel does not take, and drain in order.
    std::string sent;
    while (sent.size() < 3u << 20) {
      std::string piece(1 + rng() % 70000, '\0');
      for (auto& c : piece) c = static_cast<char>(rng());
      s.in_call = true;
      REQUIRE(t->write(reinterpret_cast<const uint8_t*>(piece.data()), piece.size()) == 0);
      s.in_call = false;
      sent += piece;
    }
    CHECK(t->pending() > net::FdTransport::kLowWater);
    CHECK(budget.used() == static_cast<int64_t>(t->pending()));
    // The peer sends its own random bytes meanwhile, with our reading paused
    // now and then.
    std::string theirs;
    std::string got;
    char buf[65536];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while ((got.size() < sent.size() || s.data.size() < theirs.size() || theirs.size() < 500000) &&
           std::chrono::steady_clock::now() < deadline) {
      if (theirs.size() < 500000) {
        std::string p(1 + rng() % 3000, '\0');
        for (auto& c : p) c = static_cast<char>(rng());
        ssize_t n = ::send(peer, p.data(), p.size(), MSG_DONTWAIT);
        if (n > 0) theirs.append(p.data(), static_cast<size_t>(n));
      }
      if (rng() % 4 == 0) {
        ssize_t n = ::recv(peer, buf, 1 + rng() % sizeof buf, MSG_DONTWAIT);
        if (n > 0) got.append(buf, static_cast<size_t>(n));
      }
      if (rng() % 16 == 0) t->stop_read();
      if (rng() % 8 == 0) t->start_read();
      L.turns(1);
    }
    t->start_read();
    CHECK(got == sent);
    CHECK(s.data == theirs);
    CHECK(t->pending() == 0);
    CHECK(budget.used() == 0);
    CHECK(s.drained >= 1);
    CHECK_FALSE(s.reentered);
    ::shutdown(peer, SHUT_WR);
    REQUIRE(L.run_until([&] { return s.eofs == 1; }));
    s.in_call = true;
    t->close(false);
    s.in_call = false;
    CHECK(s.closed == 0);  // from the loop, never inside close()
    REQUIRE(L.run_until([&] { return s.closed == 1; }));
    delete t;
    ::close(peer);
    CHECK(s.errors == 0);
    CHECK(s.eofs == 1);
  }
}

TEST_CASE("stop_read: nothing is read until start_read; then every byte, then EOF") {
  Loop L;
  auto [a, peer] = pair();
  Sink s;
  auto* t = new net::FdTransport(L.set, &s);
  REQUIRE(t->open(a) == 0);
  t->start_read();
  REQUIRE(::send(peer, "ab", 2, 0) == 2);
  REQUIRE(L.run_until([&] { return s.data == "ab"; }));
  t->stop_read();
  REQUIRE(::send(peer, "cd", 2, 0) == 2);
  ::shutdown(peer, SHUT_WR);
  REQUIRE(readable(a));  // the bytes and the FIN are there: epoll would report them at once
  L.turns(20);
  CHECK(s.data == "ab");
  CHECK(s.eofs == 0);
  t->start_read();
  REQUIRE(L.run_until([&] { return s.eofs == 1; }));
  CHECK(s.data == "abcd");
  t->close(false);
  REQUIRE(L.run_until([&] { return s.closed == 1; }));
  delete t;
  ::close(peer);
}

TEST_CASE("a socket waiting for nothing is not reported when its peer resets; start_read then says so once") {
  Loop L;
  auto [a, peer] = pair();
  Sink s;
  auto* t = new net::FdTransport(L.set, &s);
  REQUIRE(t->open(a) == 0);
  t->start_read();
  t->stop_read();
  reset(peer);
  REQUIRE(readable(a));  // EPOLLERR|EPOLLHUP pending on the socket
  uint64_t before = L.set.dispatched();
  L.turns(50);
  CHECK(L.set.dispatched() == before);  // level-triggered errors would have come every turn
  t->start_read();
  REQUIRE(L.run_until([&] { return s.errors + s.eofs > 0; }));
  L.turns(20);
  CHECK(s.errors == 1);
  CHECK(s.last_error == UV_ECONNRESET);
  CHECK(L.set.dispatched() - before <= 2);
  t->close(true);
  REQUIRE(L.run_until([&] { return s.closed == 1; }));
  delete t;
}

TEST_CASE("watch_hangup: a stopped reader hears of the peer's FIN or reset once, not of its bytes") {
  Loop L;
  for (bool rst : {false, true}) {
    CAPTURE(rst);
    auto [a, peer] = pair();
    Sink s;
    auto* t = new net::FdTransport(L.set, &s);
    REQUIRE(t->open(a) == 0);
    t->start_read();
    REQUIRE(t->watch_hangup(true));
    t->stop_read();  // as a session joined in the kernel
    REQUIRE(::send(peer, "x", 1, 0) == 1);
    REQUIRE(readable(a));
    uint64_t before = L.set.dispatched();
    L.turns(20);
    CHECK(L.set.dispatched() == before);  // bytes wake nobody
    CHECK(s.data.empty());
    if (rst)
      reset(peer);
    else
      ::shutdown(peer, SHUT_WR);
    REQUIRE(L.run_until([&] { return s.hangups == 1; }));
    L.turns(20);
    CHECK(s.hangups == 1);  // once: the watch is off, nothing spins
    CHECK(L.set.dispatched() - before == 1);
    CHECK(s.eofs + s.errors == 0);
    t->start_read();  // reading again tells what it was, after the bytes before it
    REQUIRE(L.run_until([&] { return s.eofs + s.errors == 1; }));
    if (rst) {
      CHECK(s.last_error == UV_ECONNRESET);
    } else {
      CHECK(s.data == "x");
      CHECK(s.eofs == 1);
    }
    t->close(false);
    REQUIRE(L.run_until([&] { return s.closed == 1; }));
    CHECK(s.hangups == 1);
    delete t;
    if (!rst) ::close(peer);
  }
}

TEST_CASE("queued bytes and a reset peer: one on_error, the queue dropped, later writes refused") {
  Loop L;
  auto [a, peer] = pair();
  Sink s;
  net::MemoryBudget& budget = L.budget;
  auto* t = new net::FdTransport(L.set, &s);
  REQUIRE(t->open(a) == 0);
  std::string big(8u << 20, 'x');
  REQUIRE(t->write(reinterpret_cast<const uint8_t*>(big.data()), big.size()) == 0);
  REQUIRE(t->pending() > 0);
  reset(peer);
  REQUIRE(L.run_until([&] { return s.errors == 1; }));
  L.turns(20);
  CHECK(s.errors == 1);
  CHECK(t->pending() == 0);
  CHECK(budget.used() == 0);
  CHECK(t->write(reinterpret_cast<const uint8_t*>("y"), 1) != 0);
  t->close(false);
  REQUIRE(L.run_until([&] { return s.closed == 1; }));
  CHECK(s.errors == 1);
  delete t;
}

TEST_CASE("closing another transport from a read callback of the same batch") {
  Loop L;
  auto [a1, p1] = pair();
  auto [a2, p2] = pair();
  Sink s1, s2;
  auto* t1 = new net::FdTransport(L.set, &s1);
  auto* t2 = new net::FdTransport(L.set, &s2);
  REQUIRE(t1->open(a1) == 0);
  REQUIRE(t2->open(a2) == 0);
  t1->start_read();
  t2->start_read();
  // Both readable before the loop turns: one epoll_wait returns both.
  REQUIRE(::send(p1, "1", 1, 0) == 1);
  REQUIRE(::send(p2, "2", 1, 0) == 1);
  REQUIRE(readable(a1));
  REQUIRE(readable(a2));
  net::FdTransport* first = nullptr;
  auto closer = [&](net::Transport* t) {
    if (first) return;
    first = static_cast<net::FdTransport*>(t);
    t1->close(false);
    t2->close(true);
  };
  s1.on_read_hook = closer;
  s2.on_read_hook = closer;
  REQUIRE(L.run_until([&] { return s1.closed == 1 && s2.closed == 1; }));
  L.turns(10);
  // Whichever came first was read; the other, closed in between, was not.
  CHECK(s1.data.size() + s2.data.size() == 1);
  CHECK(s1.closed == 1);
  CHECK(s2.closed == 1);
  delete t1;
  delete t2;
  ::close(p1);
  ::close(p2);
}

TEST_CASE("connect: bytes and a shutdown asked before it completes go out after it, in order") {
  Loop L;
  sockaddr_in addr;
  int l = listener(addr);
  Sink s;
  auto* t = new net::FdTransport(L.set, &s);
  t->set_nodelay(true);
  s.in_call = true;
  REQUIRE(t->connect(reinterpret_cast<sockaddr*>(&addr)) == 0);
  REQUIRE(t->write(reinterpret_cast<const uint8_t*>("hello "), 6) == 0);
  REQUIRE(t->write(reinterpret_cast<const uint8_t*>("world"), 5) == 0);
  t->shutdown();
  s.in_call = false;
  REQUIRE(L.run_until([&] { return s.connects == 1 && s.shutdowns == 1; }));
  CHECK(s.connect_status == 0);
  int peer = ::accept(l, nullptr, nullptr);
  REQUIRE(peer >= 0);
  CHECK(read_all(peer) == "hello world");  // then EOF: the FIN came after the bytes
  int nd = 0;
  socklen_t len = sizeof nd;
  ::getsockopt(t->fd(), IPPROTO_TCP, TCP_NODELAY, &nd, &len);
  CHECK(nd == 1);
  CHECK_FALSE(s.reentered);
  t->close(false);
  REQUIRE(L.run_until([&] { return s.closed == 1; }));
  delete t;
  ::close(peer);
  ::close(l);
}

TEST_CASE("connect to a closed port: ECONNREFUSED from the loop, then close") {
  Loop L;
  sockaddr_in addr;
  int l = listener(addr);
  ::close(l);  // nothing listens there now
  Sink s;
  auto* t = new net::FdTransport(L.set, &s);
  s.in_call = true;
  int r = t->connect(reinterpret_cast<sockaddr*>(&addr));
  s.in_call = false;
  REQUIRE(r == 0);
  REQUIRE(L.run_until([&] { return s.connects == 1; }));
  CHECK(s.connect_status == UV_ECONNREFUSED);
  CHECK_FALSE(s.reentered);
  t->close(true);
  REQUIRE(L.run_until([&] { return s.closed == 1; }));
  L.turns(5);
  CHECK(s.connects == 1);
  CHECK(s.closed == 1);
  delete t;
}

TEST_CASE("close(reset) sends an RST; close while connecting reports only on_closed") {
  Loop L;
  {
    auto [a, peer] = pair();
    Sink s;
    auto* t = new net::FdTransport(L.set, &s);
    REQUIRE(t->open(a) == 0);
    t->close(true);
    char c;
    REQUIRE(readable(peer));
    CHECK(::recv(peer, &c, 1, 0) < 0);
    CHECK(errno == ECONNRESET);
    REQUIRE(L.run_until([&] { return s.closed == 1; }));
    delete t;
    ::close(peer);
  }
  {
    sockaddr_in addr;
    int l = listener(addr);
    Sink s;
    auto* t = new net::FdTransport(L.set, &s);
    REQUIRE(t->connect(reinterpret_cast<sockaddr*>(&addr)) == 0);
    t->close(true);
    REQUIRE(L.run_until([&] { return s.closed == 1; }));
    L.turns(5);
    CHECK(s.connects == 0);
    delete t;
    ::close(l);
  }
}

TEST_CASE("an FdTransport is 56 bytes (an idle session holds two)") {
  CHECK(sizeof(net::FdTransport) <= 56);
}

TEST_CASE("PollSet::close waits for the on_closed still due: the loop ends with every transport told") {
  Sink s1, s2;
  net::FdTransport* t1;
  net::FdTransport* t2;
  int p1, p2;
  {
    Loop L;
    auto [a1, q1] = pair();
    auto [a2, q2] = pair();
    p1 = q1;
    p2 = q2;
    t1 = new net::FdTransport(L.set, &s1);
    t2 = new net::FdTransport(L.set, &s2);
    REQUIRE(t1->open(a1) == 0);
    REQUIRE(t2->open(a2) == 0);
    t1->start_read();
    t1->close(false);
    t2->close(true);
    // ~Loop closes the set at once and runs the loop to its end.
  }
  CHECK(s1.closed == 1);
  CHECK(s2.closed == 1);
  delete t1;
  delete t2;
  ::close(p1);
  ::close(p2);
}

// The PollSet drives the loop (net/fd_transport.hpp): the sockets' events come
// from its own set, libuv's set is nested in it, and libuv's phases run only
// when libuv has work. Running them every turn costs one more epoll_wait per
// turn, which at saturation was a third more syscalls per message.

TEST_CASE("loop: a turn that only moves bytes skips libuv, yet a libuv timer fires while bytes flow") {
  Loop L;
  auto [a, c] = pair();
  // Ping-pong between two transports on the set: every turn has events.
  Sink s1, s2;
  auto* t1 = new net::FdTransport(L.set, &s1);
  auto* t2 = new net::FdTransport(L.set, &s2);
  REQUIRE(t1->open(a) == 0);
  REQUIRE(t2->open(c) == 0);
  static const uint8_t kMsg[64] = {1};
  s1.on_read_hook = [&](net::Transport* t) { t->write(kMsg, sizeof kMsg); };
  s2.on_read_hook = [&](net::Transport* t) { t->write(kMsg, sizeof kMsg); };
  t1->start_read();
  t2->start_read();
  uv_timer_t timer;
  int fired = 0;
  uv_timer_init(&L.loop, &timer);
  timer.data = &fired;
  uv_timer_start(&timer, [](uv_timer_t* h) { ++*static_cast<int*>(h->data); }, 20, 20);
  REQUIRE(t1->write(kMsg, sizeof kMsg) == 0);
  const uint64_t runs0 = L.set.uv_runs();
  int turns = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  // Until the timer fired 5 times (100 ms) while the ping-pong went on.
  while (fired < 5 && std::chrono::steady_clock::now() < deadline) {
    REQUIRE(L.set.turn(1000));
    ++turns;
  }
  CHECK(fired >= 5);
  const uint64_t runs = L.set.uv_runs() - runs0;
  const size_t bytes = s1.data.size() + s2.data.size();
  INFO("turns " << turns << ", libuv ran " << runs << " times, " << bytes << " bytes moved");
  CHECK(bytes > 100 * sizeof kMsg);  // the ping-pong went on meanwhile
  CHECK(turns > 100);
  // libuv ran for its timer (about once a firing), not once a turn.
  CHECK(runs <= static_cast<uint64_t>(fired) * 2 + 2);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  t1->close(false);
  t2->close(false);
  REQUIRE(L.run_until([&] { return s1.closed == 1 && s2.closed == 1; }));
  delete t1;
  delete t2;
}

TEST_CASE("loop: a turn with nothing to do sleeps until libuv's next timer, not longer and not busy") {
  Loop L;
  uv_timer_t timer;
  int fired = 0;
  uv_timer_init(&L.loop, &timer);
  timer.data = &fired;
  uv_timer_start(&timer, [](uv_timer_t* h) { ++*static_cast<int*>(h->data); }, 50, 0);
  auto t0 = std::chrono::steady_clock::now();
  int turns = 0;
  while (!fired && turns < 50) {
    L.set.turn(5000);
    ++turns;
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  INFO(turns << " turns, " << ms << " ms");
  CHECK(fired == 1);
  CHECK(turns <= 3);  // it waited, and not in 1 ms steps
  CHECK(ms >= 45);
  CHECK(ms < 2500);   // the 5 s bound was not what ended the wait
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
}

TEST_CASE("loop: run() blocked in epoll_wait wakes for a uv_async_send from another thread, and ends after close") {
  Loop L;
  struct Ctx {
    net::PollSet* set;
    bool got = false;
  } ctx{&L.set};
  uv_async_t async;
  uv_async_init(&L.loop, &async, [](uv_async_t* h) {
    auto* c = static_cast<Ctx*>(h->data);
    c->got = true;
    uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
    c->set->close();  // the loop's last handle: run() returns
  });
  async.data = &ctx;
  auto t0 = std::chrono::steady_clock::now();
  std::thread sender([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    uv_async_send(&async);
  });
  L.set.run();
  sender.join();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ctx.got);
  CHECK(ms < 5000);
}
