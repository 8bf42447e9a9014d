#include "health/state_machine.hpp"

#include <string>

namespace health {

const char* to_string(Admin a) {
  switch (a) {
    case Admin::Ready:
      return "ready";
    case Admin::Drain:
      return "drain";
    case Admin::Maint:
      return "maint";
  }
  return "unknown";
}

StateMachine::StateMachine(uint32_t rise, uint32_t fall)
    : rise_(rise == 0 ? 1 : rise), fall_(fall == 0 ? 1 : fall) {}

void StateMachine::set_thresholds(uint32_t rise, uint32_t fall) {
  rise_ = rise == 0 ? 1 : rise;
  fall_ = fall == 0 ? 1 : fall;
  if (passes_ > rise_) passes_ = rise_;
  if (failures_ > fall_) failures_ = fall_;
}

State StateMachine::compute() const {
  if (admin_ == Admin::Maint) return State::Maint;
  if (!healthy_) return State::Down;
  if (admin_ == Admin::Drain) return State::Drain;
  return State::Up;
}

std::optional<Transition> StateMachine::publish(std::string reason, int64_t now_ms) {
  State next = compute();
  if (next == state_) return std::nullopt;
  Transition t{state_, next, std::move(reason)};
  state_ = next;
  // Every later entry into Up restarts slowstart, whether from Down or Drain:
  // in both cases the backend may hold far fewer sessions than its peers.
  if (next == State::Up) up_since_ms_ = now_ms;
  return t;
}

std::optional<Transition> StateMachine::on_check(bool pass, std::string_view detail,
                                                 int64_t now_ms) {
  if (admin_ == Admin::Maint) return std::nullopt;
  bool first = fresh_;
  bool at_start = initial_;
  fresh_ = false;
  initial_ = false;
  if (pass && first && !healthy_) {
    failures_ = 0;
    passes_ = 1;
    healthy_ = true;
    auto t = publish("first check passed: " + std::string(detail), now_ms);
    if (at_start && t && t->to == State::Up) up_since_ms_ = 0;  // no slowstart at start
    return t;
  }
  if (pass) {
    failures_ = 0;
    if (passes_ < rise_) ++passes_;
    if (!healthy_ && passes_ >= rise_) {
      healthy_ = true;
      return publish("check passed " + std::to_string(passes_) + "/" + std::to_string(rise_) +
                         " times: " + std::string(detail),
                     now_ms);
    }
  } else {
    passes_ = 0;
    if (failures_ < fall_) ++failures_;
    if (healthy_ && failures_ >= fall_) {
      healthy_ = false;
      return publish("check failed " + std::to_string(failures_) + "/" + std::to_string(fall_) +
                         " times: " + std::string(detail),
                     now_ms);
    }
  }
  return std::nullopt;
}

std::optional<Transition> StateMachine::set_admin(Admin a, int64_t now_ms) {
  if (a == admin_) return std::nullopt;
  Admin old = admin_;
  admin_ = a;
  if (old == Admin::Maint) {
    // Leaving Maint: no history survives; rise passes are needed again.
    healthy_ = false;
    passes_ = 0;
    failures_ = 0;
    fresh_ = true;
  }
  return publish(std::string("admin ") + to_string(a) + " (was " + to_string(old) + ")", now_ms);
}

}  // namespace health
