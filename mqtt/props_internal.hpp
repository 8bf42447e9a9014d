// Internal: the property-block decoder with a detailed outcome, shared by the
// CONNECT parser (which maps it to ConnectError) and the packet decoders (which
// map it to a reason code). Not part of the public API.
#pragma once

#include "mqtt/types.hpp"
#include "mqtt/wire.hpp"

namespace mqtt::detail {

enum class PropStatus : uint8_t {
  Ok,
  Truncated,      // block or a value runs past the end of its container
  BadLength,      // property length varint malformed
  NotAllowed,     // identifier unknown or not allowed in this context
  Duplicate,      // given twice where only one is allowed
  BadValue,       // value out of its range (e.g. Receive Maximum 0)
  InvalidUtf8,    // a UTF-8 string property is ill-formed
};

// Reads the property length varint and the properties it covers from r.
PropStatus read_properties(wire::Reader& r, PropContext ctx, Properties& out);

}  // namespace mqtt::detail
