#include "health/status.hpp"

namespace health {

const char* to_string(State s) {
  switch (s) {
    case State::Down:
      return "down";
    case State::Up:
      return "up";
    case State::Drain:
      return "drain";
    case State::Maint:
      return "maint";
  }
  return "unknown";
}

}  // namespace health
