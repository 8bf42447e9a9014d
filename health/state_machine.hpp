// The health state of one backend: rise/fall hysteresis over check results plus
// the operator's admin state. Pure: no sockets, no clocks (time is passed in),
// no threads; owned and driven by one checker on the health thread.
//
// Model. Two independent inputs decide the published state:
//   - `healthy`: the check verdict with hysteresis. Starts false; `rise`
//     consecutive passes make it true, `fall` consecutive failures make it false.
//     Exception, so a fresh balancer serves within one check round: the very
//     first result after start (or after leaving Maint) decides at once; a
//     pass makes it healthy (like HAProxy's `init-state down`). A first failure
//     ends that grace: from then on `rise` passes are needed.
//   - `admin`: Ready (default), Drain or Maint, set by the operator.
// Published state:
//   Maint                          if admin == Maint (checks stopped)
//   Down                           else if !healthy
//   Drain                          else if admin == Drain
//   Up                             otherwise
// So a draining broker that dies is reported Down (its sessions are gone
// anyway), and shows Drain again once it recovers. Leaving Maint resets the
// check history: the backend is Down until its first pass, like a fresh start.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "health/status.hpp"

namespace health {

enum class Admin : uint8_t { Ready, Drain, Maint };
const char* to_string(Admin a);

struct Transition {
  State from;
  State to;
  std::string reason;  // human-readable, for the log line
};

class StateMachine {
 public:
  // rise and fall are clamped to >= 1.
  StateMachine(uint32_t rise, uint32_t fall);

  State state() const { return state_; }
  bool healthy() const { return healthy_; }
  Admin admin() const { return admin_; }
  // Checks run in every state except Maint.
  bool checks_enabled() const { return admin_ != Admin::Maint; }
  // Consecutive passes / failures in the current streak.
  uint32_t passes() const { return passes_; }
  uint32_t failures() const { return failures_; }
  // now_ms of the last transition into Up (drives slowstart); 0 if never, and
  // 0 when the very first check of the machine's life passed: slowstart never
  // applies to backends healthy when the balancer (or a reload adding them)
  // starts, as in HAProxy. It applies to every later return: from Down, from
  // Drain, and after Maint.
  int64_t up_since_ms() const { return up_since_ms_; }

  // One check result. `detail` describes it ("CONNACK+PINGRESP in 3 ms",
  // "timeout waiting for CONNACK"); it becomes part of the transition reason.
  // Ignored while in Maint (a result that was in flight when Maint was set).
  std::optional<Transition> on_check(bool pass, std::string_view detail, int64_t now_ms);

  // Operator command. Returns the transition if the published state changed.
  std::optional<Transition> set_admin(Admin a, int64_t now_ms);

  // New thresholds (config reload); the current streaks count toward them from
  // the next result on. Clamped to >= 1.
  void set_thresholds(uint32_t rise, uint32_t fall);

 private:
  State compute() const;
  std::optional<Transition> publish(std::string reason, int64_t now_ms);

  uint32_t rise_;
  uint32_t fall_;
  bool healthy_ = false;
  Admin admin_ = Admin::Ready;
  State state_ = State::Down;
  uint32_t passes_ = 0;
  uint32_t failures_ = 0;
  bool fresh_ = true;    // no result yet since start / leaving Maint
  bool initial_ = true;  // no check result yet in the machine's life
  int64_t up_since_ms_ = 0;
};

}  // namespace health
