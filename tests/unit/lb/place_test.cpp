// The place stage with fake backend transports and a fake timer: which
// backend is tried when, what is sent, what the broker's first packet means,
// and that every count it takes (backend sessions, gate slots, queue places)
// is dropped exactly once on every path.
#include "lb/place.hpp"

#include <doctest/doctest.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "../net/fake_transport.hpp"
#include "lb/client_key.hpp"
#include "lb/clock.hpp"

using test::FakeTransport;

namespace {

const std::string kConnect311 = std::string(
    "\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04"
    "dev1",
    18);
const std::string kConnack0 = std::string("\x20\x02\x00\x00", 4);

struct World {
  prometheus::Registry reg;
  lb::Metrics metrics{reg};
  std::shared_ptr<lb::Snapshot> snap = std::make_shared<lb::Snapshot>();

  explicit World(int backends, uint32_t slots = 64, uint32_t queue = 4096) {
    for (int i = 0; i < backends; ++i) {
      conf::Backend b;
      b.name = "b" + std::to_string(i + 1);
      b.address = {"127.0.0.1", static_cast<uint16_t>(1884 + i)};
      snap->cfg.backends.push_back(b);
      auto st = std::make_shared<lb::BackendState>(b.name);
      st->metrics = metrics.backend(b.name);
      st->connacks = std::make_unique<lb::ConnackCounters>(metrics.connacks_family(), b.name);
      st->lanes.push_back(
          std::make_unique<lb::GateLane>(st->metrics.connecting, st->metrics.queued));
      st->status->state.store(health::State::Up);
      snap->backends.push_back({b, st, nullptr});
    }
    snap->cfg.limits.backend_max_connecting = slots;
    snap->cfg.limits.backend_queue = queue;
    snap->cfg.balance.retries = 2;
    snap->balancer = lb::make_balancer(snap->cfg.balance, snap->cfg.backends);
  }
  lb::BackendState& state(int i) { return *snap->backends[i].state; }
  double attempt_failures(int i, lb::AttemptFail f) {
    return state(i).metrics.attempt_failures[static_cast<size_t>(f)]->Value();
  }
};

// PlaceHost over fake transports; every connect is recorded by backend index.
struct Host : lb::PlaceHost {
  World& w;
  explicit Host(World& world) : w(world) {}
  ~Host() override {
    for (auto* t : live) delete t;
    for (auto* t : retired) delete t;
  }

  void arm_timer(uint64_t ms) override { armed = ms; }
  void disarm_timer() override { armed = 0; }
  uint64_t now_ms() const override { return 0; }
  net::Transport* connect_backend(const lb::RuntimeBackend& b, int& err) override {
    if (connect_error) {
      err = connect_error;
      return nullptr;
    }
    auto* t = new FakeTransport;
    live.push_back(t);
    tried.push_back(b.cfg.name);
    return t;
  }
  void retire(net::Transport* t) override {
    auto* f = static_cast<FakeTransport*>(t);
    f->close(true);
    std::erase(live, f);
    retired.push_back(f);
  }
  lb::GateLane& lane(lb::BackendState& b) override { return *b.lanes[0]; }
  void placed(lb::Placement p) override {
    result = std::move(p);
    done = true;
  }
  void place_failed(lb::Reject why) override {
    failed = why;
    done = true;
  }
  FakeTransport* current() { return live.empty() ? nullptr : live.back(); }

  uint64_t armed = 0;
  int connect_error = 0;
  std::vector<FakeTransport*> live, retired;
  std::vector<std::string> tried;
  std::optional<lb::Placement> result;
  std::optional<lb::Reject> failed;
  bool done = false;
};

// id: a string literal (PlaceRequest keeps a view; the session keeps the CONNECT alive).
lb::PlaceRequest request(std::string_view id = "dev1", const std::string& bytes = kConnect311) {
  lb::PlaceRequest r;
  r.client_id = id;
  r.key = lb::client_key(id);
  r.bytes.assign(bytes.begin(), bytes.end());
  return r;
}

// Connects the current attempt and checks it was sent exactly the client's bytes.
FakeTransport* connect_ok(Host& h, lb::PlaceStage& p, const std::string& expect = kConnect311) {
  FakeTransport* t = h.current();
  REQUIRE(t);
  p.on_backend_connect(t, 0);
  CHECK(t->written == expect);
  CHECK(t->reading);
  return t;
}

void feed(lb::PlaceStage& p, FakeTransport* t, const std::string& bytes) {
  REQUIRE(t->reading);
  p.on_backend_read(t, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

TEST_CASE("place: CONNACK 0, split byte by byte, with the broker's next bytes behind it") {
  World w(2);
  Host h(w);
  auto stage = std::make_unique<lb::PlaceStage>(
      h, w.snap, request("dev1", kConnect311 + std::string("\xc0\x00", 2)), 1);
  stage->start();
  FakeTransport* t =
      connect_ok(h, *stage, kConnect311 + std::string("\xc0\x00", 2));  // pipelined bytes too
  CHECK(h.armed == w.snap->cfg.limits.backend_connack_timeout_ms);
  std::string answer = kConnack0 + std::string("\xd0\x00", 2);
  for (size_t i = 0; i < answer.size() && !h.done; ++i) feed(*stage, t, answer.substr(i, 1));
  REQUIRE(h.done);
  REQUIRE(h.result);
  CHECK(h.result->answer == lb::Placement::Answer::Accepted);
  CHECK(h.result->backend == t);
  CHECK(std::string(h.result->to_client.begin(), h.result->to_client.end()) == kConnack0);
  int b = h.tried[0] == "b1" ? 0 : 1;
  CHECK(w.state(b).active.load() == 1);          // held by the Placement's BackendCount
  CHECK(w.state(b).lanes[0]->in_flight() == 0);  // the connect slot is back
  stage.reset();
  h.live.clear();  // ownership went to the Placement
  delete t;
  h.result.reset();
  CHECK(w.state(b).active.load() == 0);
}

TEST_CASE("place: a refusal passes through, is not retried, and registers nothing") {
  World w(2);
  Host h(w);
  lb::PlaceStage stage(h, w.snap, request(), 1);
  stage.start();
  FakeTransport* t = connect_ok(h, stage);
  feed(stage, t, std::string("\x20\x02\x00\x05", 4));
  REQUIRE(h.result);
  CHECK(h.result->answer == lb::Placement::Answer::Refused);
  CHECK(h.result->code == 0x05);
  CHECK(h.tried.size() == 1);
  h.live.clear();
  delete t;
}

TEST_CASE("place: no CONNACK in time (a frozen broker): the next backend gets the same bytes") {
  World w(2);
  Host h(w);
  lb::PlaceStage stage(h, w.snap, request(), 1);
  stage.start();
  FakeTransport* first = connect_ok(h, stage);
  int a = h.tried[0] == "b1" ? 0 : 1;
  stage.on_timer();  // backend_connack_timeout_ms
  CHECK(first->closed);
  CHECK(first->reset);
  CHECK(w.attempt_failures(a, lb::AttemptFail::ConnackTimeout) == 1);
  CHECK(w.state(a).active.load() == 0);
  REQUIRE(h.tried.size() == 2);
  CHECK(h.tried[1] != h.tried[0]);
  FakeTransport* second = connect_ok(h, stage);
  feed(stage, second, kConnack0);
  REQUIRE(h.result);
  CHECK(h.result->answer == lb::Placement::Answer::Accepted);
  CHECK(h.result->attempts == 2);
  h.live.clear();
  delete second;
}

TEST_CASE("place: the only backend is retried after a back-off (storm on one broker)") {
  World w(1);
  Host h(w);
  lb::PlaceStage stage(h, w.snap, request(), 7);
  stage.start();
  stage.on_backend_connect(h.current(), UV_ECONNREFUSED);
  CHECK(w.attempt_failures(0, lb::AttemptFail::Refused) == 1);
  // Same backend again, after retry_backoff_ms +-25 %.
  CHECK(h.armed >= 75);
  CHECK(h.armed <= 125);
  CHECK(h.tried.size() == 1);
  CHECK(w.state(0).active.load() == 1);  // counted while it waits to retry
  stage.on_timer();
  REQUIRE(h.tried.size() == 2);
  stage.on_timer();  // connect timeout this time
  CHECK(w.attempt_failures(0, lb::AttemptFail::ConnectTimeout) == 1);
  CHECK(h.armed >= 150);  // doubled
  CHECK(h.armed <= 250);
  stage.on_timer();
  FakeTransport* t = connect_ok(h, stage);
  feed(stage, t, kConnack0);
  REQUIRE(h.result);
  CHECK(h.result->attempts == 3);
  h.live.clear();
  delete t;
}

TEST_CASE("place: every attempt fails: the session refuses (no backend), all counts dropped") {
  World w(2);
  Host h(w);
  lb::PlaceStage stage(h, w.snap, request(), 1);
  stage.start();
  for (int i = 0; i < 10 && !h.done; ++i) {
    if (h.current() && !h.current()->closed) {
      feed(stage, connect_ok(h, stage), std::string("\x30\x03\x00\x01x", 5));  // not a CONNACK
    } else {
      stage.on_timer();  // back-off over
    }
  }
  REQUIRE(h.failed);
  CHECK(*h.failed == lb::Reject::NoBackend);
  CHECK(h.tried.size() == 3);  // 1 + retries
  double protocol = w.attempt_failures(0, lb::AttemptFail::Protocol) +
                    w.attempt_failures(1, lb::AttemptFail::Protocol);
  CHECK(protocol == 3);
  for (int i = 0; i < 2; ++i) {
    CHECK(w.state(i).active.load() == 0);
    CHECK(w.state(i).lanes[0]->in_flight() == 0);
  }
}

TEST_CASE("place: the connect gate queues beyond its slots, in order, and hands slots on") {
  World w(1, /*slots=*/1);
  Host h1(w), h2(w), h3(w);
  lb::PlaceStage s1(h1, w.snap, request("a"), 1), s2(h2, w.snap, request("b"), 2),
      s3(h3, w.snap, request("c"), 3);
  s1.start();
  s2.start();
  s3.start();
  CHECK(h1.tried.size() == 1);
  CHECK(h2.tried.empty());  // waiting for the slot
  CHECK(h3.tried.empty());
  CHECK(w.state(0).lanes[0]->queued() == 2);
  CHECK(h2.armed == w.snap->cfg.limits.backend_queue_timeout_ms);
  CHECK(w.state(0).metrics.queued->Value() == 2);
  CHECK(w.state(0).metrics.connecting->Value() == 1);
  CHECK(w.state(0).active.load() == 3);  // queued clients count toward leastconn
}

TEST_CASE("place: the gate grants in FIFO order when a CONNACK frees the slot") {
  World w(1, /*slots=*/1);
  Host h1(w), h2(w), h3(w);
  lb::PlaceStage s1(h1, w.snap, request(), 1), s2(h2, w.snap, request(), 2),
      s3(h3, w.snap, request(), 3);
  s1.start();
  s2.start();
  s3.start();
  FakeTransport* t1 = connect_ok(h1, s1);
  feed(s1, t1, kConnack0);  // slot released: s2 (not s3) connects now
  REQUIRE(h1.result);
  CHECK(h2.tried.size() == 1);
  CHECK(h3.tried.empty());
  CHECK(w.state(0).lanes[0]->queued() == 1);
  // s3 times out in the queue: with one backend it retries (after a back-off).
  s3.on_timer();
  CHECK(w.attempt_failures(0, lb::AttemptFail::QueueTimeout) == 1);
  CHECK(w.state(0).lanes[0]->queued() == 0);
  h1.live.clear();
  delete t1;
}

TEST_CASE("place: queues full or too slow on every attempt: refused as busy, not as down") {
  World w(1, /*slots=*/1, /*queue=*/0);
  Host h1(w), h2(w);
  lb::PlaceStage s1(h1, w.snap, request(), 1);
  s1.start();
  lb::PlaceStage s2(h2, w.snap, request(), 2);
  s2.start();  // no slot, no queue: QueueFull, then back-off and retry
  for (int i = 0; i < 5 && !h2.done; ++i) s2.on_timer();
  REQUIRE(h2.failed);
  CHECK(*h2.failed == lb::Reject::BackendBusy);
  CHECK(w.attempt_failures(0, lb::AttemptFail::QueueFull) == 3);
}

TEST_CASE(
    "place: no local descriptor for the backend socket: refused at once, not the backend's fault") {
  World w(2);
  Host h(w);
  h.connect_error = UV_EMFILE;
  lb::PlaceStage stage(h, w.snap, request(), 1);
  stage.start();
  REQUIRE(h.failed);
  CHECK(*h.failed == lb::Reject::LocalResources);
  for (int i = 0; i < 2; ++i) {
    CHECK(w.state(i).metrics.connect_failures->Value() == 0);
    CHECK(w.state(i).active.load() == 0);
    CHECK(w.state(i).lanes[0]->in_flight() == 0);
  }
}

TEST_CASE("place: MQTT 5 enhanced authentication: AUTH first means the exchange goes on") {
  World w(1);
  Host h(w);
  lb::PlaceRequest r = request();
  r.version = mqtt::Version::V5;
  r.auth_method = true;
  lb::PlaceStage stage(h, w.snap, std::move(r), 1);
  stage.start();
  FakeTransport* t = connect_ok(h, stage);
  feed(stage, t, std::string("\xf0\x02\x18\x00", 4));  // AUTH, continue authentication
  REQUIRE(h.result);
  CHECK(h.result->answer == lb::Placement::Answer::Authenticating);
  h.live.clear();
  delete t;
}

TEST_CASE("place: affinity sends a client back to its backend") {
  World w(3);
  lb::AffinityTable aff(100, 1 << 20, 60'000);
  aff.put(lb::client_key("dev1"), w.state(2).name_hash, lb::steady_ms());
  Host h(w);
  lb::PlaceRequest r = request();
  r.affinity = &aff;
  lb::PlaceStage stage(h, w.snap, std::move(r), 1);
  stage.start();
  REQUIRE(h.tried.size() == 1);
  CHECK(h.tried[0] == "b3");
}

TEST_CASE("place: destroyed mid-attempt (client gone): counts and slots dropped, attempt retired") {
  World w(1, /*slots=*/1);
  Host h1(w), h2(w);
  auto s1 = std::make_unique<lb::PlaceStage>(h1, w.snap, request(), 1);
  auto s2 = std::make_unique<lb::PlaceStage>(h2, w.snap, request(), 2);
  s1->start();
  s2->start();
  CHECK(w.state(0).active.load() == 2);
  CHECK(w.state(0).lanes[0]->queued() == 1);
  s2.reset();  // queued
  CHECK(w.state(0).lanes[0]->queued() == 0);
  connect_ok(h1, *s1);
  s1.reset();  // awaiting the CONNACK
  CHECK(h1.retired.size() == 1);
  CHECK(w.state(0).active.load() == 0);
  CHECK(w.state(0).lanes[0]->in_flight() == 0);
  CHECK(w.state(0).metrics.connecting->Value() == 0);
  CHECK(w.state(0).metrics.queued->Value() == 0);
}

TEST_CASE("place: each worker's lane gets its share of the backend's slots and queue") {
  World w(1, /*slots=*/4, /*queue=*/2);
  Host h1(w), h2(w), h3(w), h4(w);
  auto req = [](std::string_view id) {
    lb::PlaceRequest r = request(id);
    r.workers = 2;  // 4 slots / 2 workers = 2 here; queue 2 / 2 = 1
    return r;
  };
  lb::PlaceStage s1(h1, w.snap, req("a"), 1), s2(h2, w.snap, req("b"), 2),
      s3(h3, w.snap, req("c"), 3), s4(h4, w.snap, req("d"), 4);
  s1.start();
  s2.start();
  s3.start();
  s4.start();
  CHECK(h1.tried.size() == 1);
  CHECK(h2.tried.size() == 1);
  CHECK(h3.tried.empty());                                        // queued: the lane has 2 slots
  CHECK(w.state(0).lanes[0]->queued() == 1);                      // and 1 queue place:
  CHECK(w.attempt_failures(0, lb::AttemptFail::QueueFull) == 1);  // the 4th found it full
}

TEST_CASE("place: SRV tiers: a higher tier takes new clients only when no lower one is up") {
  World w(3);
  w.snap->backends[1].cfg.tier = 1;  // failover tier (SRV: a higher priority value)
  w.snap->backends[2].cfg.tier = 2;
  auto first_try = [&](lb::AffinityTable* aff = nullptr, const std::vector<bool>* pool = nullptr) {
    Host h(w);
    lb::PlaceRequest r = request();
    r.affinity = aff;
    r.pool = pool;
    lb::PlaceStage stage(h, w.snap, std::move(r), 1);
    stage.start();
    return h.tried.empty() ? std::string("none") : h.tried[0];
  };
  CHECK(first_try() == "b1");
  // A client placed on the failover tier (while b1 was down) comes back to
  // b1 once it is up: the standby tier is treated as drained.
  lb::AffinityTable aff(100, 1 << 20, 60'000);
  aff.put(lb::client_key("dev1"), w.state(1).name_hash, lb::steady_ms());
  CHECK(first_try(&aff) == "b1");
  w.state(0).status->state.store(health::State::Down);
  CHECK(first_try() == "b2");
  CHECK(first_try(&aff) == "b2");
  w.state(1).status->state.store(health::State::Drain);  // admin drain counts as not up
  CHECK(first_try() == "b3");
  w.state(2).status->state.store(health::State::Down);
  CHECK(first_try() == "none");
  // Tiers are per client pool: a route whose pool holds only tier 1 uses it.
  w.state(0).status->state.store(health::State::Up);
  w.state(1).status->state.store(health::State::Up);
  std::vector<bool> pool{false, true, false};
  CHECK(first_try(nullptr, &pool) == "b2");
}

TEST_CASE(
    "place: SRV tiers: a failed attempt on an up lower tier is retried there, not failed over") {
  World w(2);
  w.snap->backends[1].cfg.tier = 1;
  Host h(w);
  lb::PlaceStage stage(h, w.snap, request(), 3);
  stage.start();
  REQUIRE(h.tried.size() == 1);
  CHECK(h.tried[0] == "b1");
  stage.on_backend_connect(h.current(), UV_ECONNREFUSED);
  CHECK(h.armed > 0);  // the back-off before trying b1 again (health still says up)
  stage.on_timer();
  REQUIRE(h.tried.size() == 2);
  CHECK(h.tried[1] == "b1");
}
