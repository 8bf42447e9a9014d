// lb::Server end to end on loopback, in-process: the contract the health
// monitor relies on (shutdown_backend_sessions), the no-backend refusal, and a
// clean stop (every handle closed, every worker joined; ASan checks the rest).
#include "lb/server.hpp"

#include "lb/listener.hpp"
#include "lb/worker.hpp"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

namespace {

int listen_any(uint16_t& port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(fd, 64) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

uint16_t free_port() {
  uint16_t p = 0;
  close(listen_any(p));
  return p;
}

int connect_to(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

// Reads up to n bytes within timeout_ms; returns what arrived ("" on EOF/timeout).
std::string read_some(int fd, size_t n, int timeout_ms) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (out.size() < n) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) break;
    char buf[4096];
    ssize_t r = recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

// True when the peer closes fd (EOF or reset) within timeout_ms.
bool closed_within(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  char c;
  return recv(fd, &c, 1, 0) <= 0;
}

std::string connect_packet(const std::string& id) {
  std::string body = std::string("\x00\x04MQTT\x04\x02\x00\x3c", 10);
  body += static_cast<char>(id.size() >> 8);
  body += static_cast<char>(id.size() & 0xff);
  body += id;
  return std::string("\x10", 1) + static_cast<char>(body.size()) + body;
}

conf::Config config(uint16_t listen_port, uint16_t backend_port) {
  conf::Config c;
  c.listeners.push_back({"t", {"127.0.0.1", listen_port}, std::nullopt, std::nullopt});
  conf::Backend b;
  b.name = "b1";
  b.address = {"127.0.0.1", backend_port};
  c.backends.push_back(b);
  c.workers = 2;
  c.balance.retries = 0;
  return c;
}

}  // namespace

TEST_CASE("shutdown_backend_sessions closes that backend's sessions, spread, from any thread") {
  uint16_t bport = 0;
  int backend = listen_any(bport);
  uint16_t port = free_port();
  prometheus::Registry reg;
  {
    lb::Server server(config(port, bport), reg);
    for (auto& b : server.backends()) b.state->status->state.store(health::State::Up);
    std::string err;
    REQUIRE_MESSAGE(server.start(err), err);

    std::vector<int> clients, peers;
    for (int i = 0; i < 6; ++i) {
      std::string pkt = connect_packet("dev" + std::to_string(i));
      int c = connect_to(port);
      REQUIRE(send(c, pkt.data(), pkt.size(), 0) == static_cast<ssize_t>(pkt.size()));
      pollfd p{backend, POLLIN, 0};
      REQUIRE(poll(&p, 1, 5000) == 1);
      int s = accept(backend, nullptr, nullptr);
      REQUIRE(s >= 0);
      CHECK(read_some(s, pkt.size(), 5000) == pkt);  // the CONNECT, byte for byte
      // The broker accepts: only now is the session placed (and forwarded).
      REQUIRE(send(s, "\x20\x02\x00\x00", 4, 0) == 4);
      CHECK(read_some(c, 4, 5000) == std::string("\x20\x02\x00\x00", 4));
      clients.push_back(c);
      peers.push_back(s);
    }
    CHECK(server.backends()[0].state->active.load() == 6);

    auto t0 = std::chrono::steady_clock::now();
    server.shutdown_backend_sessions("b1", 300);
    for (int c : clients) CHECK(closed_within(c, 5000));
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    CHECK(ms >= 100);  // spread, not all at once (6 sessions over 300 ms on 2 workers)
    CHECK(server.metrics().closed(lb::CloseReason::BackendShutdown).Value() == 6);
    for (int s : peers) CHECK(closed_within(s, 5000));  // the broker side is closed too
    for (int fd : clients) close(fd);
    for (int fd : peers) close(fd);

    server.stop_accepting();
    server.close_all_sessions();
    server.join();
    CHECK(server.active_connections() == 0);
    CHECK(server.backends()[0].state->active.load() == 0);
  }
  close(backend);
}

TEST_CASE("no backend up: CONNACK 0x03, then close; counted") {
  uint16_t bport = 0;
  int backend = listen_any(bport);
  uint16_t port = free_port();
  prometheus::Registry reg;
  {
    lb::Server server(config(port, bport), reg);  // backends stay Down: no monitor here
    std::string err;
    REQUIRE_MESSAGE(server.start(err), err);
    int c = connect_to(port);
    std::string pkt = connect_packet("lonely");
    REQUIRE(send(c, pkt.data(), pkt.size(), 0) == static_cast<ssize_t>(pkt.size()));
    CHECK(read_some(c, 4, 5000) == std::string("\x20\x02\x00\x03", 4));
    CHECK(closed_within(c, 5000));
    close(c);
    CHECK(server.metrics().rejected(lb::Reject::NoBackend).Value() == 1);
    pollfd p{backend, POLLIN, 0};
    CHECK(poll(&p, 1, 0) == 0);  // the backend was never contacted
    server.close_all_sessions();
    server.join();
  }
  close(backend);
}

TEST_CASE("the default connection limit leaves descriptors for what each session holds") {
  // Two sockets per session, joined in the kernel or not (the ends of joined
  // streams are watched on the sockets themselves: test_lb_kernel_forwarding
  // counts the descriptors), so a full house never hits EMFILE first.
  CHECK(lb::default_max_connections(20000) == (20000 - 128) / 2);
  CHECK(lb::default_max_connections(100) == 1);
  CHECK(lb::default_max_connections(1ull << 40) == 10'000'000);
}

namespace {

// Whether a stranger could bind the port now (Worker::check_free: no SO_REUSEPORT).
bool bindable(uint16_t port) {
  conf::Listener l;
  l.name = "probe";
  l.bind = {"127.0.0.1", port};
  std::string err;
  return lb::Worker::check_free({l}, err);
}

}  // namespace

TEST_CASE("a listening socket counts as ours from its creation until it is closed") {
  // A reload's sockets wait in a worker's queue until that worker adopts
  // them; the next reload may move the address back before it did, and must
  // join them, not probe the port as a stranger's (EADDRINUSE: a reload
  // refused, seen once in 1,102 reloads under ASan).
  const conf::Endpoint ep{"127.0.0.1", free_port()};
  std::string err;
  CHECK_FALSE(lb::Listener::held(ep));
  int fd = lb::Listener::open_socket(ep, 16, err);
  REQUIRE_MESSAGE(fd >= 0, err);
  CHECK(lb::Listener::held(ep));  // adopted by nobody yet
  CHECK_FALSE(bindable(ep.port));
  int fd2 = lb::Listener::open_socket(ep, 16, err);  // a second worker's socket
  REQUIRE_MESSAGE(fd2 >= 0, err);
  lb::Listener::close_socket(fd, ep);
  CHECK(lb::Listener::held(ep));  // one is still open
  lb::Listener::close_socket(fd2, ep);
  CHECK_FALSE(lb::Listener::held(ep));
  CHECK(bindable(ep.port));
}

TEST_CASE("a reload may bind an address whose sockets an earlier reload opened and no worker took yet") {
  uint16_t bport = 0;
  int backend = listen_any(bport);
  const uint16_t port = free_port(), extra = free_port();
  prometheus::Registry reg;
  {
    conf::Config base = config(port, bport);
    base.workers = 1;
    lb::Server server(base, reg);
    std::string err;
    REQUIRE_MESSAGE(server.start(err), err);
    conf::Config moved = base;
    moved.listeners.push_back({"extra", {"127.0.0.1", extra}, std::nullopt, std::nullopt});
    std::vector<std::string> errors;
    auto first = server.prepare(moved, errors);
    REQUIRE(first);
    // Its sockets are open, as they are in a worker's queue after a commit.
    auto second = server.prepare(moved, errors);
    CHECK_MESSAGE(errors.empty(), (errors.empty() ? "" : errors.front()));
    REQUIRE(second);
    first.reset();  // closes its sockets: the second's stay
    server.commit(std::move(second));
    int c = connect_to(extra);  // the extra listener is there
    close(c);
    CHECK_FALSE(bindable(extra));
    server.stop_accepting();
    server.close_all_sessions();
    server.join();
    CHECK_FALSE(lb::Listener::held({"127.0.0.1", extra}));
  }
  close(backend);
}
