// The smallest TTL among the answer records of one type in a raw DNS response
// (RFC 1035 4.1). c-ares parses A and AAAA answers with their TTLs but not
// SRV ones (1.18); discovery needs the TTL to know when to ask again. Pure:
// bytes in, result out; never reads outside [buf, buf + len).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace lb::dns {

// nullopt: malformed, or no answer record of `rrtype`.
std::optional<uint32_t> min_answer_ttl(const uint8_t* buf, size_t len, uint16_t rrtype);

}  // namespace lb::dns
