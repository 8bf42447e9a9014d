// The CONNACK mqttlb sends when it refuses a client whose CONNECT it has read,
// so devices back off instead of reconnecting at once (docs/operations.md
// "Refusals"). Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lb/outcome.hpp"
#include "mqtt/types.hpp"

namespace lb {

struct RefusalCode {
  uint8_t v3;          // CONNACK return code for 3.1 / 3.1.1
  uint8_t v5;          // reason code for 5.0
  const char* reason;  // 5.0 Reason String
};
RefusalCode refusal_code(Reject why);

// CONNACK with session present 0 [MQTT-3.2.2-4/6]. 5.0: with a Reason String
// unless that would exceed the client's Maximum Packet Size [MQTT-3.1.2-24].
std::vector<uint8_t> refusal_connack(mqtt::Version v, Reject why,
                                     std::optional<uint32_t> client_max_packet = std::nullopt);

}  // namespace lb
