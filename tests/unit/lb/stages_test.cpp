// The peek and pump stages, the gate lane, the CONNACK watcher and the
// refusal CONNACKs, with fake transports and a fake timer.
#include <doctest/doctest.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <random>
#include <string>
#include <vector>

#include "../net/fake_transport.hpp"
#include "lb/gate.hpp"
#include "lb/log.hpp"
#include "lb/peek.hpp"
#include "lb/pump.hpp"
#include "lb/refusal.hpp"
#include "mqtt/codec.hpp"

using test::FakeTransport;

namespace {
const std::string kConnect311 = std::string(
    "\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04"
    "dev1",
    18);
const uint8_t* u8(const std::string& s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}
}  // namespace

// ---- peek ---------------------------------------------------------------------

TEST_CASE("peek: a CONNECT fed byte by byte, with pipelined bytes, is kept whole") {
  net::MemoryBudget budget(1 << 20);
  std::string stream = kConnect311 + std::string("\x30\x03\x00\x01x\xe0\x00", 7);
  {
    lb::PeekStage p(64 * 1024, &budget);
    lb::PeekStage::Outcome o;
    size_t i = 0;
    for (; i < kConnect311.size(); ++i) {
      o = p.feed(u8(stream) + i, 1);
      if (i + 1 < kConnect311.size()) CHECK(o.kind == lb::PeekStage::Kind::NeedMore);
    }
    CHECK(o.kind == lb::PeekStage::Kind::Connect);
    CHECK(p.info().client_id == "dev1");
    CHECK(budget.used() > 0);
    std::vector<uint8_t> all = p.take_bytes();
    CHECK(std::string(all.begin(), all.end()) == kConnect311);
    CHECK(budget.used() == 0);
  }
  lb::PeekStage p(64 * 1024, &budget);
  CHECK(p.feed(u8(stream), stream.size()).kind == lb::PeekStage::Kind::Connect);
  std::vector<uint8_t> all = p.take_bytes();
  CHECK(std::string(all.begin(), all.end()) == stream);  // nothing after the CONNECT is lost
}

TEST_CASE("peek: hostile first bytes") {
  lb::PeekStage big(1024, nullptr);
  std::string huge = std::string("\x10\xff\xff\x03", 4);  // announces ~64 KiB
  auto o = big.feed(u8(huge), huge.size());
  CHECK(o.kind == lb::PeekStage::Kind::Invalid);
  CHECK(o.error == mqtt::ConnectError::TooLarge);
  lb::PeekStage http(1024, nullptr);
  std::string get = "GET / HTTP/1.1\r\n";
  CHECK(http.feed(u8(get), get.size()).error == mqtt::ConnectError::NotConnect);
  lb::PeekStage v6(1024, nullptr);
  std::string level6 = std::string("\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00", 14);
  o = v6.feed(u8(level6), level6.size());
  CHECK(o.kind == lb::PeekStage::Kind::Refuse);
  CHECK(o.reject == lb::Reject::UnsupportedLevel);
  CHECK(v6.info().version == mqtt::Version::V5);
}

TEST_CASE("peek: growth is refused once the memory budget is spent, and given back") {
  net::MemoryBudget budget(1 << 20);
  budget.charge((1 << 20) - 100);  // someone else holds almost all of it
  lb::PeekStage p(64 * 1024, &budget);
  std::string part = kConnect311.substr(0, 10);
  CHECK(p.feed(u8(part), part.size()).kind == lb::PeekStage::Kind::NeedMore);
  std::string more(200, 'x');
  auto o = p.feed(u8(more), more.size());
  CHECK(o.kind == lb::PeekStage::Kind::Drop);
  CHECK(o.reject == lb::Reject::MemoryBudget);
  budget.release((1 << 20) - 100);
}

// ---- pump ---------------------------------------------------------------------

namespace {
struct PumpRig : lb::PumpHost {
  void arm_timer(uint64_t ms) override { armed = ms; }
  void disarm_timer() override { armed = 0; }
  uint64_t now_ms() const override { return now; }
  void pump_done(lb::CloseReason why, bool r) override {
    done.push_back(why);
    reset = r;
  }
  void connack_seen(uint8_t code) override { connacks.push_back(code); }

  prometheus::Registry reg;
  prometheus::Counter* c2b = &prometheus::BuildCounter().Name("c2b").Register(reg).Add({});
  prometheus::Counter* b2c = &prometheus::BuildCounter().Name("b2c").Register(reg).Add({});
  lb::Pump::Counters counters{c2b, b2c};  // outlives the pump
  FakeTransport client, backend;
  lb::Pump pump;
  uint64_t now = 1000, armed = 0;
  std::vector<lb::CloseReason> done;
  std::vector<uint8_t> connacks;
  bool reset = false;

  explicit PumpRig(bool watch = false) : pump(*this, &client, &backend, counters, 90'000, watch) {
    client.set_sink(nullptr);
    pump.start();
  }
  void from_client(const std::string& s) {
    REQUIRE(client.reading);
    pump.on_read(&client, u8(s), s.size());
  }
  void from_backend(const std::string& s) {
    REQUIRE(backend.reading);
    pump.on_read(&backend, u8(s), s.size());
  }
};
}  // namespace

TEST_CASE("pump: bytes both ways, exactly, counted") {
  PumpRig r;
  CHECK(r.armed == 90'000);
  const std::string pub("\x30\x03\x00\x01x", 5);
  r.from_client(pub);
  r.from_backend(std::string("\xd0\x00", 2));
  CHECK(r.backend.written == pub);
  CHECK(r.client.written == std::string("\xd0\x00", 2));
  CHECK(r.c2b->Value() == 5);
  CHECK(r.b2c->Value() == 2);
  CHECK(r.pump.b2c_at_boundary());
}

TEST_CASE("pump: backpressure stops the fast side until the slow side drains") {
  PumpRig r;
  r.backend.pending_bytes = lb::Pump::kHighWater + 1;  // the broker reads slowly
  r.from_client("x");
  CHECK_FALSE(r.client.reading);
  r.pump.on_drained(&r.backend);
  CHECK(r.client.reading);
  r.client.pending_bytes = lb::Pump::kHighWater + 1;  // the device reads slowly
  r.from_backend("y");
  CHECK_FALSE(r.backend.reading);
  r.pump.on_drained(&r.client);
  CHECK(r.backend.reading);
}

TEST_CASE("pump: half-close in both directions, then done; a reset is propagated as a reset") {
  PumpRig r;
  r.pump.on_eof(&r.client);
  CHECK(r.backend.shut);
  CHECK(r.done.empty());
  r.from_backend("still flowing");  // the other direction goes on
  CHECK(r.client.written == "still flowing");
  r.pump.on_shutdown(&r.backend);
  r.pump.on_eof(&r.backend);
  CHECK(r.client.shut);
  CHECK(r.done.empty());
  r.pump.on_shutdown(&r.client);
  REQUIRE(r.done.size() == 1);
  CHECK(r.done[0] == lb::CloseReason::Client);  // the client ended first
  CHECK_FALSE(r.reset);

  PumpRig r2;
  r2.pump.on_error(&r2.backend, UV_ECONNRESET);
  REQUIRE(r2.done.size() == 1);
  CHECK(r2.done[0] == lb::CloseReason::Backend);
  CHECK(r2.reset);
  r2.pump.on_error(&r2.client, UV_ECONNRESET);
  CHECK(r2.done.size() == 1);  // reported once
}

TEST_CASE("pump: idle timeout counts from the last byte either way") {
  PumpRig r;
  r.now += 60'000;
  r.from_backend("x");
  r.now += 40'000;  // 100 s since start, 40 s since the last byte
  r.pump.on_timer();
  CHECK(r.done.empty());
  CHECK(r.armed == 50'000);
  r.now += 50'000;
  r.pump.on_timer();
  REQUIRE(r.done.size() == 1);
  CHECK(r.done[0] == lb::CloseReason::IdleTimeout);
}

TEST_CASE("pump: during enhanced auth the CONNACK is found whatever the segmentation") {
  std::string stream = std::string("\xf0\x02\x18\x00", 4) + std::string("\x20\x03\x00\x00\x00", 5) +
                       std::string("\x30\x03\x00\x01z", 5);
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    PumpRig r(true);
    r.from_backend(stream.substr(0, cut));
    r.from_backend(stream.substr(cut));
    CHECK(r.connacks == std::vector<uint8_t>{0x00});
    CHECK(r.client.written == stream);
  }
  PumpRig r(true);
  for (char c : stream) r.from_backend(std::string(1, c));
  CHECK(r.connacks == std::vector<uint8_t>{0x00});
}

TEST_CASE("connack watch: refusal codes, long AUTH packets, malformed streams") {
  lb::ConnackWatch w;
  std::string auth(200, 'a');
  std::string s = "\xf0" + std::string("\xc8\x01", 2) + auth + std::string("\x20\x02\x00\x87", 4);
  auto got = w.feed(u8(s), s.size());
  REQUIRE(got);
  CHECK(*got == 0x87);
  CHECK_FALSE(w.feed(u8(s), s.size()));  // once
  lb::ConnackWatch bad;
  std::string junk = "\x20\xff\xff\xff\xff\xff";
  CHECK_FALSE(bad.feed(u8(junk), junk.size()));
}

// ---- gate ---------------------------------------------------------------------

namespace {
struct Waiter : lb::GateWaiter {
  lb::GateLane* lane = nullptr;
  std::vector<int>* order = nullptr;
  int id = 0;
  bool release_at_once = false;
  void on_slot() override {
    order->push_back(id);
    if (release_at_once) lane->release();
  }
};
}  // namespace

TEST_CASE(
    "gate: slots, FIFO queue, cancel, full; a waiter that releases at once does not recurse") {
  lb::GateLane lane(nullptr, nullptr);
  std::vector<int> order;
  std::vector<Waiter> w(5000);
  CHECK(lane.take(w[0], 1, 100000) == lb::GateLane::Take::Granted);
  for (int i = 1; i < 5000; ++i) {
    w[i].lane = &lane;
    w[i].order = &order;
    w[i].id = i;
    w[i].release_at_once = true;  // e.g. a connect that fails synchronously
    CHECK(lane.take(w[i], 1, 100000) == lb::GateLane::Take::Queued);
  }
  lane.cancel(w[2]);
  CHECK(lane.queued() == 4998);
  lane.release();  // grants 1, 3, 4, ... in order, iteratively
  REQUIRE(order.size() == 4998);
  CHECK(order[0] == 1);
  CHECK(order[1] == 3);
  CHECK(order.back() == 4999);
  CHECK(lane.in_flight() == 0);
  CHECK(lane.queued() == 0);
  Waiter x, y;
  CHECK(lane.take(x, 1, 0) == lb::GateLane::Take::Granted);
  CHECK(lane.take(y, 1, 0) == lb::GateLane::Take::Full);
}

// ---- refusals and logs -----------------------------------------------------------

TEST_CASE("refusal CONNACKs: 3.x return codes; 5.0 reason codes with a reason string") {
  auto v3 = lb::refusal_connack(mqtt::Version::V311, lb::Reject::NoBackend);
  CHECK(v3 == std::vector<uint8_t>{0x20, 0x02, 0x00, 0x03});
  struct Case {
    lb::Reject why;
    uint8_t v5;
  };
  for (Case c : {Case{lb::Reject::NoBackend, 0x88}, Case{lb::Reject::ShuttingDown, 0x88},
                 Case{lb::Reject::BackendBusy, 0x89}, Case{lb::Reject::MaxConnectionsPerIp, 0x97},
                 Case{lb::Reject::MemoryBudget, 0x97}, Case{lb::Reject::LocalResources, 0x97},
                 Case{lb::Reject::UnsupportedLevel, 0x84}}) {
    CAPTURE(static_cast<int>(c.why));
    auto b = lb::refusal_connack(mqtt::Version::V5, c.why);
    mqtt::FrameResult f = mqtt::peek_frame(b);
    REQUIRE(f.status == mqtt::DecodeStatus::Ok);
    REQUIRE(b.size() == f.header.total_length());
    mqtt::Connack ca;
    REQUIRE(mqtt::decode_connack(b[0], std::span(b).subspan(f.header.header_length),
                                 mqtt::Version::V5, ca)
                .ok);
    CHECK(ca.code == c.v5);
    CHECK_FALSE(ca.session_present);  // [MQTT-3.2.2-6]
    CHECK(ca.properties.reason_string.has_value());
    // A client whose Maximum Packet Size is tiny gets no reason string [MQTT-3.1.2-24].
    auto small = lb::refusal_connack(mqtt::Version::V5, c.why, 6);
    CHECK(small.size() <= 6);
  }
  auto lvl = lb::refusal_connack(mqtt::Version::V311, lb::Reject::UnsupportedLevel);
  CHECK(lvl == std::vector<uint8_t>{0x20, 0x02, 0x00, 0x01});
}

TEST_CASE("log_escape: client strings cannot forge or break log lines") {
  CHECK(lb::log_escape("dev-1") == "dev-1");
  CHECK(lb::log_escape("a\nb\"c\\") == "a\\x0ab\\\"c\\\\");
  CHECK(lb::log_escape(std::string("\x1b[31m\x00", 6)) == "\\x1b[31m\\x00");
  CHECK(lb::log_escape("\xc3\xa9") == "\\xc3\\xa9");
  std::string big(70000, 'x');
  std::string e = lb::log_escape(big, 16);
  CHECK(e == "xxxxxxxxxxxxxxxx...(70000 bytes)");
}

TEST_CASE("pump finish_with: injected at packet boundaries in both directions, then half-closed") {
  const std::string d_client("\xe0\x02\x9c\x00", 4), d_backend("\xe0\x00", 2);
  auto vec = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  {  // both streams at a boundary: at once
    PumpRig r;
    r.from_backend(std::string("\xd0\x00", 2));
    r.pump.finish_with(vec(d_client), vec(d_backend), lb::CloseReason::Evacuated);
    CHECK(r.client.written == std::string("\xd0\x00", 2) + d_client);
    CHECK(r.backend.written == d_backend);
    CHECK(r.client.shut);
    CHECK(r.backend.shut);
    CHECK(r.armed == lb::Pump::kFinishMs);
    r.pump.on_shutdown(&r.client);
    CHECK(r.done.empty());
    r.pump.on_shutdown(&r.backend);
    REQUIRE(r.done.size() == 1);
    CHECK(r.done[0] == lb::CloseReason::Evacuated);
    CHECK_FALSE(r.reset);
  }
  {  // mid-packet both ways: the packets in flight complete first, nothing after them passes
    PumpRig r;
    const std::string pub("\x30\x05\x00\x01tab", 7), next("\x30\x03\x00\x01z", 5);
    r.from_backend(pub.substr(0, 3));
    r.from_client(pub.substr(0, 2));
    r.pump.finish_with(vec(d_client), vec(d_backend), lb::CloseReason::Evacuated);
    CHECK_FALSE(r.client.shut);
    CHECK_FALSE(r.backend.shut);
    r.from_backend(pub.substr(3) + next);
    CHECK(r.client.written == pub + d_client);  // the rest of its packet, then DISCONNECT
    CHECK_FALSE(r.backend.reading);             // the next packet is not forwarded
    r.from_client(pub.substr(2, 1));
    CHECK_FALSE(r.backend.shut);
    r.from_client(pub.substr(3) + next);
    CHECK(r.backend.written == pub + d_backend);
    CHECK(r.backend.shut);
    CHECK(r.client.shut);
  }
  {  // a peer that never reaches a boundary: the finish timer ends it
    PumpRig r;
    r.from_backend(std::string("\x30\x7f", 2));
    r.pump.finish_with(vec(d_client), {}, lb::CloseReason::Evacuated);
    CHECK_FALSE(r.client.shut);
    r.pump.on_timer();
    REQUIRE(r.done.size() == 1);
    CHECK(r.done[0] == lb::CloseReason::Evacuated);
  }
}
