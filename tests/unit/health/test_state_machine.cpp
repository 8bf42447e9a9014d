// Every transition of the rise/fall + admin state machine (health/state_machine.hpp).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "health/state_machine.hpp"

using health::Admin;
using health::State;
using health::StateMachine;

namespace {
// Feeds n results; returns the transitions that happened (their target states).
std::vector<State> feed(StateMachine& sm, bool pass, int n, int64_t now = 1000) {
  std::vector<State> out;
  for (int i = 0; i < n; ++i)
    if (auto t = sm.on_check(pass, pass ? "ok" : "timeout", now)) out.push_back(t->to);
  return out;
}
StateMachine up_machine(uint32_t rise, uint32_t fall) {
  StateMachine sm(rise, fall);
  feed(sm, true, static_cast<int>(rise));
  REQUIRE(sm.state() == State::Up);
  return sm;
}
}  // namespace

TEST_CASE("starts down and healthy=false; checks enabled") {
  StateMachine sm(2, 3);
  CHECK(sm.state() == State::Down);
  CHECK_FALSE(sm.healthy());
  CHECK(sm.checks_enabled());
  CHECK(sm.up_since_ms() == 0);
}

TEST_CASE("a fresh machine goes up on its first pass (serves within one round), even with rise 3") {
  StateMachine sm(3, 2);
  auto t = sm.on_check(true, "CONNACK 0 + PINGRESP", 50);
  REQUIRE(t);
  CHECK(t->from == State::Down);
  CHECK(t->to == State::Up);
  CHECK(t->reason.find("first check passed") != std::string::npos);
  CHECK(sm.up_since_ms() == 0);  // healthy at start: no slowstart (as HAProxy)
}

TEST_CASE("slowstart applies to a backend that was down at start and comes up later") {
  StateMachine sm(1, 1);
  CHECK(feed(sm, false, 1, 10).empty());
  CHECK(feed(sm, true, 1, 900) == std::vector<State>{State::Up});
  CHECK(sm.up_since_ms() == 900);
}

TEST_CASE("a first failure ends the first-pass grace: rise passes needed") {
  StateMachine sm(3, 2);
  CHECK(feed(sm, false, 1).empty());
  CHECK(feed(sm, true, 2).empty());
  CHECK(feed(sm, true, 1) == std::vector<State>{State::Up});
}

TEST_CASE("down -> up after exactly rise consecutive passes, with a reason and up_since") {
  StateMachine sm(3, 2);
  CHECK_FALSE(sm.on_check(false, "connect: connection refused", 50));
  CHECK_FALSE(sm.on_check(true, "p1", 100));
  CHECK_FALSE(sm.on_check(true, "p2", 200));
  CHECK(sm.state() == State::Down);
  auto t = sm.on_check(true, "CONNACK 0 + PINGRESP", 300);
  REQUIRE(t);
  CHECK(t->from == State::Down);
  CHECK(t->to == State::Up);
  CHECK(t->reason.find("CONNACK 0 + PINGRESP") != std::string::npos);
  CHECK(t->reason.find("3/3") != std::string::npos);
  CHECK(sm.up_since_ms() == 300);
  CHECK(sm.state() == State::Up);
}

TEST_CASE("a failure resets the rise streak") {
  StateMachine sm(2, 2);
  CHECK(feed(sm, false, 1).empty());
  CHECK(feed(sm, true, 1).empty());
  CHECK(feed(sm, false, 1).empty());
  CHECK(feed(sm, true, 1).empty());  // streak restarted: 1/2
  CHECK(sm.state() == State::Down);
  CHECK(feed(sm, true, 1) == std::vector<State>{State::Up});
}

TEST_CASE("rise 1 goes up on any single pass") {
  StateMachine sm(1, 1);
  CHECK(feed(sm, false, 1).empty());
  CHECK(feed(sm, true, 1) == std::vector<State>{State::Up});
}

TEST_CASE("up -> down after exactly fall consecutive failures; a pass resets the streak") {
  auto sm = up_machine(2, 3);
  CHECK(feed(sm, false, 2).empty());
  CHECK(feed(sm, true, 1).empty());  // streak reset
  CHECK(feed(sm, false, 2).empty());
  CHECK(sm.state() == State::Up);
  auto t = sm.on_check(false, "timeout: no PINGRESP within 300 ms", 5000);
  REQUIRE(t);
  CHECK(t->from == State::Up);
  CHECK(t->to == State::Down);
  CHECK(t->reason.find("no PINGRESP") != std::string::npos);
  CHECK(t->reason.find("3/3") != std::string::npos);
}

TEST_CASE("repeated results in a stable state produce no transitions") {
  StateMachine sm(2, 2);
  CHECK(feed(sm, false, 50).empty());
  CHECK(feed(sm, true, 2).size() == 1);
  CHECK(feed(sm, true, 50).empty());
}

TEST_CASE("rise/fall of 0 are treated as 1") {
  StateMachine sm(0, 0);
  CHECK(feed(sm, true, 1) == std::vector<State>{State::Up});
  CHECK(feed(sm, false, 1) == std::vector<State>{State::Down});
}

TEST_CASE("drain: up -> drain -> up, checks continue, slowstart restarts") {
  auto sm = up_machine(1, 1);
  auto t = sm.set_admin(Admin::Drain, 2000);
  REQUIRE(t);
  CHECK(t->from == State::Up);
  CHECK(t->to == State::Drain);
  CHECK(t->reason.find("drain") != std::string::npos);
  CHECK(sm.checks_enabled());
  CHECK(feed(sm, true, 3).empty());
  CHECK(sm.state() == State::Drain);
  t = sm.set_admin(Admin::Ready, 3000);
  REQUIRE(t);
  CHECK(t->from == State::Drain);
  CHECK(t->to == State::Up);
  CHECK(sm.up_since_ms() == 3000);
}

TEST_CASE("drain of a dead backend: drain -> down, and back to drain when it recovers") {
  auto sm = up_machine(2, 2);
  REQUIRE(sm.set_admin(Admin::Drain, 0));
  CHECK(feed(sm, false, 2) == std::vector<State>{State::Down});
  CHECK(feed(sm, true, 2) == std::vector<State>{State::Drain});
}

TEST_CASE("drain set while down shows down until healthy, then drain; ready -> up") {
  StateMachine sm(2, 2);
  CHECK_FALSE(sm.set_admin(Admin::Drain, 0));  // still Down: no published change
  CHECK(sm.admin() == Admin::Drain);
  CHECK(feed(sm, true, 2) == std::vector<State>{State::Drain});
  auto t = sm.set_admin(Admin::Ready, 10);
  REQUIRE(t);
  CHECK(t->to == State::Up);
}

TEST_CASE("ready while down stays down (no transition)") {
  StateMachine sm(2, 2);
  REQUIRE_FALSE(sm.set_admin(Admin::Drain, 0));
  CHECK_FALSE(sm.set_admin(Admin::Ready, 0));
  CHECK(sm.state() == State::Down);
}

TEST_CASE("maint from up, drain and down; checks stop; results ignored") {
  for (State from : {State::Up, State::Drain, State::Down}) {
    CAPTURE(static_cast<int>(from));
    StateMachine sm(1, 1);
    if (from != State::Down) feed(sm, true, 1);
    if (from == State::Drain) sm.set_admin(Admin::Drain, 0);
    REQUIRE(sm.state() == from);
    auto t = sm.set_admin(Admin::Maint, 0);
    REQUIRE(t);
    CHECK(t->from == from);
    CHECK(t->to == State::Maint);
    CHECK_FALSE(sm.checks_enabled());
    CHECK(feed(sm, true, 5).empty());
    CHECK(feed(sm, false, 5).empty());
    CHECK(sm.state() == State::Maint);
  }
}

TEST_CASE("leaving maint: down until the first pass, like a fresh start") {
  auto sm = up_machine(2, 2);
  REQUIRE(sm.set_admin(Admin::Maint, 0));
  auto t = sm.set_admin(Admin::Ready, 100);
  REQUIRE(t);
  CHECK(t->from == State::Maint);
  CHECK(t->to == State::Down);
  CHECK(sm.checks_enabled());
  CHECK(feed(sm, true, 1, 700) == std::vector<State>{State::Up});
  CHECK(sm.up_since_ms() == 700);
}

TEST_CASE("leaving maint onto a dead backend: first failure, then rise passes") {
  auto sm = up_machine(2, 2);
  REQUIRE(sm.set_admin(Admin::Maint, 0));
  REQUIRE(sm.set_admin(Admin::Ready, 0));
  CHECK(feed(sm, false, 3).empty());
  CHECK(feed(sm, true, 1).empty());
  CHECK(feed(sm, true, 1) == std::vector<State>{State::Up});
}

TEST_CASE("maint -> drain: down until healthy, then drain") {
  StateMachine sm(1, 1);
  REQUIRE(sm.set_admin(Admin::Maint, 0));
  auto t = sm.set_admin(Admin::Drain, 0);
  REQUIRE(t);
  CHECK(t->to == State::Down);
  CHECK(feed(sm, true, 1) == std::vector<State>{State::Drain});
}

TEST_CASE("setting the same admin state twice is a no-op") {
  auto sm = up_machine(1, 1);
  CHECK_FALSE(sm.set_admin(Admin::Ready, 0));
  REQUIRE(sm.set_admin(Admin::Drain, 0));
  CHECK_FALSE(sm.set_admin(Admin::Drain, 0));
}

TEST_CASE("to_string names every state and admin command") {
  CHECK(std::string(health::to_string(State::Down)) == "down");
  CHECK(std::string(health::to_string(State::Up)) == "up");
  CHECK(std::string(health::to_string(State::Drain)) == "drain");
  CHECK(std::string(health::to_string(State::Maint)) == "maint");
  CHECK(std::string(health::to_string(Admin::Ready)) == "ready");
}

TEST_CASE("Status::weight_factor ramps over slowstart after up_since") {
  health::Status st;
  st.slowstart_ms = 1000;
  st.up_since_ms = 10'000;
  CHECK(st.weight_factor(10'000) == doctest::Approx(0.01));
  CHECK(st.weight_factor(10'500) == doctest::Approx(0.5));
  CHECK(st.weight_factor(11'000) == doctest::Approx(1.0));
  st.slowstart_ms = 0;
  CHECK(st.weight_factor(10'000) == doctest::Approx(1.0));
}

TEST_CASE("set_thresholds (reload) applies to the next results") {
  StateMachine sm(5, 5);
  feed(sm, false, 1);
  feed(sm, true, 2);
  sm.set_thresholds(2, 1);
  CHECK(feed(sm, true, 1) == std::vector<State>{State::Up});  // streak 3 >= new rise 2
  CHECK(feed(sm, false, 1) == std::vector<State>{State::Down});
}
