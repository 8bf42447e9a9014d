// health::Monitor + Checker against an in-process fake broker: classification
// of every answer, persistent vs reconnect sessions, admin commands, metrics.
// Real sockets on 127.0.0.1; every wait is bounded by a deadline.
#include <doctest/doctest.h>
#include <prometheus/registry.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fake_broker.hpp"
#include "health/checker.hpp"
#include "health/monitor.hpp"

using health::Admin;
using health::State;
using namespace std::chrono_literals;

namespace {

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

conf::Health fast_health() {
  conf::Health hc;
  hc.interval_ms = 100;
  hc.timeout_ms = 300;
  hc.rise = 1;
  hc.fall = 1;
  return hc;
}

// A plain backend on 127.0.0.1.
conf::Backend local_backend(const std::string& name, uint16_t port) {
  conf::Backend b;
  b.name = name;
  b.address.host = "127.0.0.1";
  b.address.port = port;
  return b;
}

// A Monitor over one backend, collecting transitions and log lines.
struct Harness {
  prometheus::Registry registry;
  std::shared_ptr<health::Status> status = std::make_shared<health::Status>();
  std::mutex mu;
  std::vector<std::string> transitions;  // "from->to"
  std::vector<std::string> logs;
  std::unique_ptr<health::Monitor> monitor;

  Harness(uint16_t port, conf::Health hc, conf::ProxyProtocol pp = conf::ProxyProtocol::None) {
    conf::Backend b = local_backend("b1", port);
    b.proxy_protocol = pp;
    monitor = std::make_unique<health::Monitor>(
        std::vector<health::MonitoredBackend>{{b, status}}, hc, registry,
        [this](const std::string&, State from, State to, const std::string&) {
          std::lock_guard<std::mutex> l(mu);
          transitions.push_back(std::string(health::to_string(from)) + "->" +
                                health::to_string(to));
        },
        [this](const std::string& line) {
          std::lock_guard<std::mutex> l(mu);
          logs.push_back(line);
        });
    std::string err;
    REQUIRE(monitor->start(err));
  }
  State state() const { return status->state.load(); }
  bool logged(const std::string& needle) {
    std::lock_guard<std::mutex> l(mu);
    for (auto& s : logs)
      if (s.find(needle) != std::string::npos) return true;
    return false;
  }
  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> l(mu);
    return transitions;
  }
  // The Monitor publishes a new state in Status before it calls the transition
  // callback, so a test that saw the state must wait for the callback too.
  std::vector<std::string> seen_at_least(size_t n) {
    eventually([&] { return seen().size() >= n; });
    return seen();
  }
  // Value of a counter/gauge sample whose labels include all of `want`.
  double metric(const std::string& family, const std::map<std::string, std::string>& want) {
    for (auto& f : registry.Collect()) {
      if (f.name != family) continue;
      for (auto& m : f.metric) {
        size_t hits = 0;
        for (auto& l : m.label)
          if (want.count(l.name) && want.at(l.name) == l.value) ++hits;
        if (hits != want.size()) continue;
        if (f.type == prometheus::MetricType::Counter) return m.counter.value;
        if (f.type == prometheus::MetricType::Gauge) return m.gauge.value;
        if (f.type == prometheus::MetricType::Histogram)
          return static_cast<double>(m.histogram.sample_count);
      }
    }
    return -1;
  }
};

}  // namespace

TEST_CASE("classify_connack: liveness refusals vs failures, 3.1.1 and 5.0") {
  using health::classify_connack;
  using health::ConnackVerdict;
  CHECK(classify_connack(0, false) == ConnackVerdict::Accepted);
  CHECK(classify_connack(0, true) == ConnackVerdict::Accepted);
  for (uint8_t c : {0x02, 0x04, 0x05})
    CHECK(classify_connack(c, false) == ConnackVerdict::LivenessRefusal);
  for (uint8_t c : {0x01, 0x03, 0x06}) CHECK(classify_connack(c, false) == ConnackVerdict::Failure);
  for (uint8_t c : {0x85, 0x86, 0x87})
    CHECK(classify_connack(c, true) == ConnackVerdict::LivenessRefusal);
  for (uint8_t c : {0x80, 0x84, 0x88, 0x89, 0x8B, 0x9F})
    CHECK(classify_connack(c, true) == ConnackVerdict::Failure);
  CHECK(health::connack_code_name(0x05, false) == "0x05 not authorized");
  CHECK(health::connack_code_name(0x89, true) == "0x89 server busy");
}

TEST_CASE("make_client_id: prefix + instance + name, <= 23 bytes, distinct per backend") {
  CHECK(health::make_client_id("mqttlb-hc-", "ab12", "b1") == "mqttlb-hc-ab12-b1");
  std::string a = health::make_client_id("mqttlb-hc-", "ab12", "broker-eu-west-1-primary");
  std::string b = health::make_client_id("mqttlb-hc-", "ab12", "broker-eu-west-1-secondary");
  CHECK(a.size() <= 23);
  CHECK(b.size() <= 23);
  CHECK(a != b);
  CHECK(a.rfind("mqttlb-hc-ab12-", 0) == 0);
  // Another instance never shares an id with this one.
  CHECK(health::make_client_id("mqttlb-hc-", "zz99", "b1") != "mqttlb-hc-ab12-b1");
  // A long prefix is cut, keeping the instance id and some of the name.
  std::string c = health::make_client_id("a-very-long-custom-prefix-", "ab12", "b1");
  CHECK(c.size() <= 23);
  CHECK(c.find("ab12-b1") != std::string::npos);
  // Bytes that some brokers reject are replaced.
  CHECK(health::make_client_id("hc/", "ab12", "b 1") == "hc_ab12-b_1");
}

TEST_CASE("a healthy broker is up within one round; the check session is kept") {
  FakeBroker fb;
  Harness h(fb.port(), fast_health());
  REQUIRE(eventually([&] { return h.state() == State::Up; }));
  CHECK(h.seen_at_least(1) == std::vector<std::string>{"down->up"});
  // Persistent mode: further checks are PINGREQs on the same connection.
  REQUIRE(eventually([&] { return fb.pingreqs() >= 4; }));
  CHECK(fb.connections() == 1);
  auto infos = fb.connect_infos();
  REQUIRE(infos.size() == 1);
  CHECK(infos[0].clean_start);
  CHECK_FALSE(infos[0].will.has_value());
  CHECK(infos[0].keep_alive == 60);
  CHECK(infos[0].version == mqtt::Version::V311);
  CHECK(infos[0].client_id == h.monitor->client_id("b1"));
  CHECK(infos[0].client_id == "mqttlb-hc-" + h.monitor->instance_id() + "-b1");
  CHECK(h.metric("mqttlb_backend_up", {{"backend", "b1"}}) == 1);
  CHECK(h.metric("mqttlb_backend_state", {{"backend", "b1"}, {"state", "up"}}) == 1);
  CHECK(h.metric("mqttlb_backend_state", {{"backend", "b1"}, {"state", "down"}}) == 0);
  CHECK(h.metric("mqttlb_health_transitions_total", {{"backend", "b1"}, {"to", "up"}}) == 1);
  // The broker counts a PINGREQ before the checker has its PINGRESP: wait for
  // the checker's side of the 4th check (a race seen under ASan load).
  CHECK(eventually(
      [&] { return h.metric("mqttlb_health_check_duration_seconds", {{"backend", "b1"}}) >= 4; }));
  CHECK(h.logged("health: backend b1 down -> up"));
}

TEST_CASE("reconnect mode: a new session per check, each ended by DISCONNECT") {
  FakeBroker fb;
  auto hc = fast_health();
  hc.mode = conf::CheckMode::Reconnect;
  Harness h(fb.port(), hc);
  REQUIRE(eventually([&] { return fb.connects() >= 3 && fb.disconnects() >= 3; }));
  CHECK(h.state() == State::Up);
  CHECK(fb.pingreqs() >= 3);
}

TEST_CASE("MQTT 5 check with credentials") {
  FakeBroker fb;
  fb.v5 = true;
  auto hc = fast_health();
  hc.protocol_level = 5;
  hc.username = "hc";
  hc.password = "secret";
  hc.keep_alive_s = 30;
  Harness h(fb.port(), hc);
  REQUIRE(eventually([&] { return h.state() == State::Up; }));
  auto infos = fb.connect_infos();
  REQUIRE(!infos.empty());
  CHECK(infos[0].version == mqtt::Version::V5);
  CHECK(infos[0].username == std::optional<std::string>("hc"));
  CHECK(infos[0].password == std::optional<std::string>("secret"));
  CHECK(infos[0].keep_alive == 30);
}

TEST_CASE("CONNACK not authorized: down with a log naming the code; up with accept_refusal") {
  for (bool v5 : {false, true}) {
    CAPTURE(v5);
    uint8_t code = v5 ? 0x87 : 0x05;
    {
      FakeBroker fb;
      fb.v5 = v5;
      fb.connack_code = code;
      auto hc = fast_health();
      hc.protocol_level = v5 ? 5 : 4;
      Harness h(fb.port(), hc);
      REQUIRE(eventually([&] { return fb.connects() >= 3; }));
      CHECK(h.state() == State::Down);
      CHECK(h.seen().empty());
      CHECK(h.logged(v5 ? "0x87 not authorized" : "0x05 not authorized"));
      CHECK(h.metric("mqttlb_health_check_failures_total",
                     {{"backend", "b1"}, {"reason", "refused"}}) >= 2);
    }
    {
      FakeBroker fb;
      fb.v5 = v5;
      fb.connack_code = code;
      auto hc = fast_health();
      hc.protocol_level = v5 ? 5 : 4;
      hc.accept_refusal = true;
      Harness h(fb.port(), hc);
      REQUIRE(eventually([&] { return h.state() == State::Up; }));
    }
  }
}

TEST_CASE("server unavailable / busy stay failures even with accept_refusal") {
  for (bool v5 : {false, true}) {
    CAPTURE(v5);
    FakeBroker fb;
    fb.v5 = v5;
    fb.connack_code = v5 ? 0x89 : 0x03;
    auto hc = fast_health();
    hc.protocol_level = v5 ? 5 : 4;
    hc.accept_refusal = true;
    Harness h(fb.port(), hc);
    REQUIRE(eventually([&] { return fb.connects() >= 3; }));
    CHECK(h.state() == State::Down);
    CHECK(h.logged(v5 ? "0x89 server busy" : "0x03 server unavailable"));
  }
}

TEST_CASE("a broker that accepts TCP but never answers CONNACK is down (timeout)") {
  FakeBroker fb;
  fb.mode = FakeBroker::Mode::Silent;
  Harness h(fb.port(), fast_health());
  REQUIRE(eventually([&] {
    return h.metric("mqttlb_health_check_failures_total",
                    {{"backend", "b1"}, {"reason", "connack_timeout"}}) >= 2;
  }));
  CHECK(h.state() == State::Down);
  CHECK(h.logged("no CONNACK within 300 ms"));
  // Timed-out sessions are closed, not piled up on the broker.
  CHECK(eventually([&] { return fb.open_clients() <= 1; }));
}

TEST_CASE("garbage instead of CONNACK is a protocol failure") {
  FakeBroker fb;
  fb.mode = FakeBroker::Mode::Garbage;
  Harness h(fb.port(), fast_health());
  REQUIRE(eventually([&] {
    return h.metric("mqttlb_health_check_failures_total",
                    {{"backend", "b1"}, {"reason", "protocol"}}) >= 2;
  }));
  CHECK(h.state() == State::Down);
}

TEST_CASE("nothing listening: connect failures") {
  uint16_t port;
  {
    FakeBroker fb;
    port = fb.port();
  }  // bound once, now closed
  Harness h(port, fast_health());
  REQUIRE(eventually([&] {
    return h.metric("mqttlb_health_check_failures_total",
                    {{"backend", "b1"}, {"reason", "connect"}}) >= 2;
  }));
  CHECK(h.state() == State::Down);
}

TEST_CASE("up -> down when PINGRESP stops, -> up again when it resumes (rise/fall 2)") {
  FakeBroker fb;
  auto hc = fast_health();
  hc.rise = 2;
  hc.fall = 2;
  Harness h(fb.port(), hc);
  REQUIRE(eventually([&] { return h.state() == State::Up; }));
  fb.answer_ping = false;
  REQUIRE(eventually([&] { return h.state() == State::Down; }));
  CHECK(h.metric("mqttlb_health_check_failures_total",
                 {{"backend", "b1"}, {"reason", "pingresp_timeout"}}) >= 1);
  fb.answer_ping = true;
  REQUIRE(eventually([&] { return h.state() == State::Up; }));
  CHECK(h.seen_at_least(3) == std::vector<std::string>{"down->up", "up->down", "down->up"});
  CHECK(h.status->up_since_ms.load() > 0);
}

TEST_CASE("a kept session closed by the broker counts as a failure; a new one is opened") {
  FakeBroker fb;
  auto hc = fast_health();
  hc.fall = 1;
  Harness h(fb.port(), hc);
  REQUIRE(eventually([&] { return h.state() == State::Up; }));
  fb.drop_all();
  REQUIRE(eventually([&] { return fb.connections() >= 2 && h.state() == State::Up; }));
  CHECK(h.metric("mqttlb_health_check_failures_total", {{"backend", "b1"}, {"reason", "closed"}}) >=
        1);
  CHECK(h.seen_at_least(3).size() >= 3);  // up, down (closed), up
}

TEST_CASE("admin: drain keeps checking; maint stops checks and closes the session; ready") {
  FakeBroker fb;
  Harness h(fb.port(), fast_health());
  REQUIRE(eventually([&] { return h.state() == State::Up; }));
  CHECK(h.monitor->set_admin_state("b1", Admin::Drain));
  CHECK_FALSE(h.monitor->set_admin_state("nope", Admin::Drain));
  REQUIRE(eventually([&] { return h.state() == State::Drain; }));
  int p = fb.pingreqs();
  REQUIRE(eventually([&] { return fb.pingreqs() >= p + 2; }));

  CHECK(h.monitor->set_admin_state("b1", Admin::Maint));
  REQUIRE(eventually([&] { return h.state() == State::Maint; }));
  REQUIRE(eventually([&] { return fb.open_clients() == 0; }));
  int c = fb.connects();
  p = fb.pingreqs();
  // Negative check over several intervals: no check traffic in maint.
  std::this_thread::sleep_for(500ms);
  CHECK(fb.connects() == c);
  CHECK(fb.pingreqs() == p);

  CHECK(h.monitor->set_admin_state("b1", Admin::Ready));
  REQUIRE(eventually([&] { return h.state() == State::Up; }));
  CHECK(h.seen_at_least(5) == std::vector<std::string>{"down->up", "up->drain", "drain->maint",
                                                       "maint->down", "down->up"});
  CHECK(h.metric("mqttlb_backend_state", {{"backend", "b1"}, {"state", "up"}}) == 1);
  CHECK(h.metric("mqttlb_backend_state", {{"backend", "b1"}, {"state", "maint"}}) == 0);
}

TEST_CASE("PROXY v1 and v2 headers precede the check's CONNECT") {
  for (auto pp : {conf::ProxyProtocol::V1, conf::ProxyProtocol::V2}) {
    FakeBroker fb;
    fb.expect_proxy = true;
    Harness h(fb.port(), fast_health(), pp);
    REQUIRE(eventually([&] { return h.state() == State::Up; }));
    CHECK(fb.proxy_headers() == 1);
  }
}

TEST_CASE("stop() closes every check connection and is idempotent") {
  FakeBroker fb;
  Harness h(fb.port(), fast_health());
  REQUIRE(eventually([&] { return fb.open_clients() == 1 && h.state() == State::Up; }));
  h.monitor->stop();
  h.monitor->stop();
  CHECK(eventually([&] { return fb.open_clients() == 0; }));
  CHECK_FALSE(h.monitor->set_admin_state("b1", Admin::Drain) == false);  // name still known
}

TEST_CASE("two monitors on the same broker use distinct client ids") {
  FakeBroker fb;
  Harness h1(fb.port(), fast_health());
  Harness h2(fb.port(), fast_health());
  REQUIRE(eventually([&] { return h1.state() == State::Up && h2.state() == State::Up; }));
  CHECK(h1.monitor->client_id("b1") != h2.monitor->client_id("b1"));
}

TEST_CASE(
    "update (reload): unchanged backends keep their state; new ones are checked; removed ones "
    "stop") {
  FakeBroker fb1, fb2;
  Harness h(fb1.port(), fast_health());
  REQUIRE(eventually([&] { return h.state() == State::Up; }));
  auto hc = fast_health();
  conf::Backend b1 = local_backend("b1", fb1.port());
  conf::Backend b2 = local_backend("b2", fb2.port());
  auto s2 = std::make_shared<health::Status>();
  h.monitor->update({{b1, h.status}, {b2, s2}}, hc);
  REQUIRE(eventually([&] { return s2->state.load() == State::Up; }));
  CHECK(h.monitor->client_id("b2") == "mqttlb-hc-" + h.monitor->instance_id() + "-b2");
  CHECK(h.seen_at_least(2) ==
        std::vector<std::string>{"down->up", "down->up"});  // b1 never went down
  CHECK(fb1.connections() == 1);                            // b1's kept session survived the reload

  // Remove b1: its check session is closed, b2 keeps running.
  h.monitor->update({{b2, s2}}, hc);
  REQUIRE(eventually([&] { return fb1.open_clients() == 0; }));
  CHECK(h.monitor->client_id("b1").empty());
  CHECK_FALSE(h.monitor->set_admin_state("b1", Admin::Drain));
  int p = fb2.pingreqs();
  REQUIRE(eventually([&] { return fb2.pingreqs() >= p + 2; }));
  CHECK(s2->state.load() == State::Up);

  // Changed check settings restart the checker but keep the state.
  hc.mode = conf::CheckMode::Reconnect;
  h.monitor->update({{b2, s2}}, hc);
  REQUIRE(eventually([&] { return fb2.disconnects() >= 2; }));
  CHECK(s2->state.load() == State::Up);
}

TEST_CASE("wait_first_round returns once every backend has a verdict (pass or fail)") {
  FakeBroker up;
  uint16_t dead;
  {
    FakeBroker fb;
    dead = fb.port();
  }
  prometheus::Registry reg;
  conf::Backend b1 = local_backend("up", up.port());
  conf::Backend b2 = local_backend("dead", dead);
  auto s1 = std::make_shared<health::Status>(), s2 = std::make_shared<health::Status>();
  auto hc = fast_health();
  hc.rise = 3;              // the first pass still counts at once
  hc.interval_ms = 60'000;  // only the first round can decide within this test
  health::Monitor m({{b1, s1}, {b2, s2}}, hc, reg, {}, [](const std::string&) {});
  std::string err;
  REQUIRE(m.start(err));
  CHECK(m.wait_first_round(10'000));
  CHECK(s1->state.load() == State::Up);
  CHECK(s2->state.load() == State::Down);
}

TEST_CASE("health.enabled false: every backend is up, no check traffic; enabling starts checks") {
  FakeBroker fb;
  fb.mode = FakeBroker::Mode::Silent;  // would fail every check
  auto hc = fast_health();
  hc.enabled = false;
  Harness h(fb.port(), hc);
  CHECK(h.state() == State::Up);
  CHECK(h.monitor->wait_first_round(0));
  CHECK(h.metric("mqttlb_backend_up", {{"backend", "b1"}}) == 1);
  std::this_thread::sleep_for(300ms);  // negative check: nothing connects
  CHECK(fb.connections() == 0);
  CHECK(h.state() == State::Up);

  conf::Backend b1 = local_backend("b1", fb.port());
  hc.enabled = true;
  h.monitor->update({{b1, h.status}}, hc);
  REQUIRE(eventually([&] { return fb.connections() >= 1 && h.state() == State::Down; }));
}

TEST_CASE("admin state from the config: maint at start (no checks), drain, ready on reload") {
  FakeBroker fb;
  prometheus::Registry reg;
  conf::Backend b = local_backend("b1", fb.port());
  b.admin = conf::BackendAdmin::Maint;
  auto st = std::make_shared<health::Status>();
  auto hc = fast_health();
  health::Monitor m({{b, st}}, hc, reg, {}, [](const std::string&) {});
  std::string err;
  REQUIRE(m.start(err));
  CHECK(m.wait_first_round(5'000));  // maint: nothing to wait for
  REQUIRE(eventually([&] { return st->state.load() == State::Maint; }));
  b.admin = conf::BackendAdmin::Drain;
  m.update({{b, st}}, hc);
  REQUIRE(eventually([&] { return st->state.load() == State::Drain; }));
  CHECK(fb.connects() >= 1);  // checked again once out of maint
  // Same config again: an admin command given since is not overridden.
  CHECK(m.set_admin_state("b1", Admin::Ready));
  REQUIRE(eventually([&] { return st->state.load() == State::Up; }));
  m.update({{b, st}}, hc);
  b.admin = conf::BackendAdmin::Ready;
  m.update({{b, st}}, hc);
  CHECK(m.client_id("b1").size() > 0);
  CHECK(st->state.load() == State::Up);
}

TEST_CASE("the announced keep-alive covers at least two check intervals") {
  FakeBroker fb;
  auto hc = fast_health();
  hc.interval_ms = 5'000;
  hc.keep_alive_s = 3;  // would let the broker drop the kept session between checks
  Harness h(fb.port(), hc);
  REQUIRE(eventually([&] { return !fb.connect_infos().empty(); }));
  CHECK(fb.connect_infos()[0].keep_alive == 10);
}

TEST_CASE("MQTT 5: a DISCONNECT from the broker (server shutting down) fails the check") {
  FakeBroker fb;
  fb.v5 = true;
  fb.disconnect_on_ping = 0x8B;
  auto hc = fast_health();
  hc.protocol_level = 5;
  Harness h(fb.port(), hc);
  REQUIRE(eventually([&] {
    return h.metric("mqttlb_health_check_failures_total",
                    {{"backend", "b1"}, {"reason", "closed"}}) >= 2;
  }));
  CHECK(h.state() == State::Down);
  CHECK(h.logged("broker sent DISCONNECT reason 0x8B"));
}

TEST_CASE("MQTT 5 Server Keep Alive shorter than the interval: sessions are not kept") {
  FakeBroker fb;
  fb.v5 = true;
  fb.server_keep_alive = 1;  // the broker would drop a session silent for 1.5 s
  auto hc = fast_health();
  hc.protocol_level = 5;
  hc.interval_ms = 600;
  Harness h(fb.port(), hc);
  REQUIRE(eventually([&] { return fb.connects() >= 3 && fb.disconnects() >= 3; }));
  CHECK(h.state() == State::Up);
  CHECK(h.metric("mqttlb_health_checks_total", {{"backend", "b1"}, {"result", "fail"}}) == 0);
}

TEST_CASE("commands given before start() apply once it runs, before any check traffic") {
  FakeBroker fb1, fb2;
  prometheus::Registry reg;
  conf::Backend b1 = local_backend("b1", fb1.port());
  conf::Backend b2 = local_backend("b2", fb2.port());
  auto s1 = std::make_shared<health::Status>(), s2 = std::make_shared<health::Status>();
  auto hc = fast_health();
  health::Monitor m({{b1, s1}}, hc, reg, {}, [](const std::string&) {});
  CHECK(m.set_admin_state("b1", Admin::Maint));  // queued: the thread does not run yet
  m.update({{b1, s1}, {b2, s2}}, hc);
  std::string err;
  REQUIRE(m.start(err));
  REQUIRE(eventually([&] { return s1->state.load() == State::Maint; }));
  REQUIRE(eventually([&] { return s2->state.load() == State::Up; }));
  // Negative check over several intervals: maint was in force before b1's first check.
  std::this_thread::sleep_for(400ms);
  CHECK(fb1.connections() == 0);
  CHECK(m.set_admin_state("b1", Admin::Ready));
  REQUIRE(eventually([&] { return s1->state.load() == State::Up; }));
  m.stop();
  CHECK(eventually([&] { return fb1.open_clients() == 0 && fb2.open_clients() == 0; }));
}

TEST_CASE(
    "a reload while a TLS check is still connecting: the check goes on with the new context") {
  // A listener whose accept queue is full: the checker's SYN is dropped and
  // retried by the kernel (after ~1 s), so its TCP connect is still in flight
  // when the reload rebuilds the TLS context; then the queue is freed.
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 0) == 0);
  socklen_t alen = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen);
  int filler = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(::connect(filler, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);  // fills the queue

  prometheus::Registry reg;
  conf::Backend b = local_backend("b1", ntohs(a.sin_port));
  b.tls.emplace();
  b.tls->verify = false;
  auto st = std::make_shared<health::Status>();
  auto hc = fast_health();
  hc.interval_ms = 60'000;
  hc.timeout_ms = 3'000;
  health::Monitor m({{b, st}}, hc, reg, {}, [](const std::string&) {});
  std::string err;
  REQUIRE(m.start(err));
  std::this_thread::sleep_for(200ms);  // the check's SYN is in flight, unanswered
  m.update({{b, st}}, hc);             // same target: reload_tls()
  std::this_thread::sleep_for(200ms);
  int first = ::accept(lfd, nullptr, nullptr);  // room for the checker's retried SYN
  // Nobody speaks TLS there: the check ends as a handshake timeout, i.e. after
  // TCP connected with the rebuilt context (the old one was gone: no crash).
  auto tls_failures = [&] {
    for (auto& f : reg.Collect())
      if (f.name == "mqttlb_health_check_failures_total")
        for (auto& mt : f.metric)
          for (auto& l : mt.label)
            if (l.name == "reason" && l.value == "tls" && mt.counter.value >= 1) return true;
    return false;
  };
  CHECK(eventually(tls_failures));
  m.stop();
  ::close(first);
  ::close(filler);
  ::close(lfd);
}
