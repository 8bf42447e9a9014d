// lb::Server's scale-out hooks (lb/server_scale.cpp, docs/scale-out.md), in
// process on loopback: discovered backends merged into the snapshot and
// drained when they leave, and another replica's placement applied (local
// table, cross-replica takeover exactly once).
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <string>

#include "lb/balancer.hpp"
#include "lb/clock.hpp"
#include "lb/server.hpp"

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

conf::Backend backend(const std::string& name, uint16_t port) {
  conf::Backend b;
  b.name = name;
  b.address = {"127.0.0.1", port};
  return b;
}

conf::Config config(uint16_t listen_port, uint16_t backend_port) {
  conf::Config c;
  c.listeners.push_back({"t", {"127.0.0.1", listen_port}, std::nullopt, std::nullopt});
  c.backends.push_back(backend("b1", backend_port));
  c.workers = 2;
  c.balance.retries = 0;
  return c;
}

std::set<std::string> names(const lb::Server& s) {
  std::set<std::string> out;
  for (const auto& b : s.backends()) out.insert(b.cfg.name);
  return out;
}

uint16_t address_port(const lb::Server& s, const std::string& name) {
  for (const auto& b : s.backends())
    if (b.cfg.name == name) return b.cfg.address.port;
  return 0;
}

bool closed_within(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  char c;
  return recv(fd, &c, 1, 0) <= 0;
}

}  // namespace

TEST_CASE("discovered backends join the snapshot, drain when they leave, stop draining if back") {
  uint16_t bport = 0, port = 0;
  int lfd = listen_any(bport);
  close(listen_any(port));
  prometheus::Registry reg;
  {
    lb::Server server(config(port, bport), reg);
    int changed = 0;
    server.on_backends_changed([&] { ++changed; });
    CHECK_FALSE(server.apply_discovered());  // nothing pending

    // A name the file uses itself stays the file's.
    server.set_discovered("dns/A/1883",
                          {backend("d1", 1001), backend("d2", 1002), backend("b1", 9)});
    CHECK(server.apply_discovered());
    CHECK(changed == 1);
    CHECK(names(server) == std::set<std::string>{"b1", "d1", "d2"});
    CHECK(address_port(server, "b1") == bport);
    CHECK(server.file_config().backends.size() == 1);  // the file's own config is untouched

    // The same answer again changes nothing.
    server.set_discovered("dns/A/1883",
                          {backend("d1", 1001), backend("d2", 1002), backend("b1", 9)});
    CHECK_FALSE(server.apply_discovered());
    CHECK(changed == 1);

    // d2 leaves the answer: gone from the snapshot, its sessions evacuated.
    server.set_discovered("dns/A/1883", {backend("d1", 1001)});
    CHECK(server.apply_discovered());
    CHECK(names(server) == std::set<std::string>{"b1", "d1"});
    auto ev = server.evacuation("d2");
    REQUIRE(ev);
    CHECK_FALSE(ev->cancelled.load());
    // Back before the drain is over: the drain stops.
    server.set_discovered("dns/A/1883", {backend("d1", 1001), backend("d2", 1002)});
    CHECK(server.apply_discovered());
    CHECK((ev->cancelled.load() || ev->done()));

    // A second source adds its own; a reload that drops the first drains its backends.
    server.set_discovered("other/SRV", {backend("s1", 2001)});
    server.apply_discovered();
    CHECK(names(server) == std::set<std::string>{"b1", "d1", "d2", "s1"});
    server.retain_discovered({"other/SRV"});
    CHECK(server.apply_discovered());
    CHECK(names(server) == std::set<std::string>{"b1", "s1"});
    CHECK(server.evacuation("d1"));
    CHECK(changed == 5);
  }
  close(lfd);
}

TEST_CASE("apply_remote: local table always; live placements elsewhere take over exactly once") {
  uint16_t bport = 0, port = 0;
  int lfd = listen_any(bport);
  close(listen_any(port));
  prometheus::Registry reg;
  {
    lb::Server server(config(port, bport), reg);
    for (auto& b : server.backends()) b.state->status->state.store(health::State::Up);
    std::string err;
    REQUIRE_MESSAGE(server.start(err), err);

    // Read back while resynchronising: the table learns it, nothing is closed.
    const lb::ClientKey k = lb::client_key("device-1");
    const uint64_t elsewhere = lb::hash64("b9");
    CHECK_FALSE(server.apply_remote(lb::client_key("nobody"), elsewhere, true));
    CHECK(server.affinity().get(lb::client_key("nobody"), lb::steady_ms()) == elsewhere);

    // device-1 placed here on b1 (the broker's CONNACK succeeds).
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE(connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    std::string id = "device-1";
    std::string body =
        std::string("\x00\x04MQTT\x04\x02\x00\x3c\x00", 11) + static_cast<char>(id.size()) + id;
    std::string pkt = std::string("\x10", 1) + static_cast<char>(body.size()) + body;
    REQUIRE(send(c, pkt.data(), pkt.size(), 0) == static_cast<ssize_t>(pkt.size()));
    pollfd p{lfd, POLLIN, 0};
    REQUIRE(poll(&p, 1, 5000) == 1);
    int broker = accept(lfd, nullptr, nullptr);
    REQUIRE(broker >= 0);
    char buf[256];
    REQUIRE(recv(broker, buf, sizeof buf, 0) > 0);
    REQUIRE(send(broker, "\x20\x02\x00\x00", 4, 0) == 4);
    REQUIRE(recv(c, buf, 4, MSG_WAITALL) == 4);
    for (int i = 0; i < 200 && !server.registry().find(k); ++i) usleep(10'000);
    REQUIRE(server.registry().find(k));

    // The same backend elsewhere: the broker takes over itself; nothing closed here.
    CHECK_FALSE(server.apply_remote(k, lb::hash64("b1"), true));
    CHECK_FALSE(closed_within(c, 100));
    CHECK_FALSE(server.apply_remote(k, elsewhere, false));  // resync: never a takeover
    CHECK_FALSE(closed_within(c, 100));
    CHECK(server.apply_remote(k, elsewhere, true));
    CHECK(closed_within(c, 5000));
    CHECK_FALSE(server.apply_remote(k, elsewhere, true));  // once
    CHECK(server.metrics().takeovers_cross->Value() == 1);
    CHECK(server.metrics().takeovers->Value() == 0);
    CHECK(server.affinity().get(k, lb::steady_ms()) == elsewhere);
    close(c);
    close(broker);
    server.close_all_sessions();
    server.join();
  }
  close(lfd);
}
