// The shared affinity store's encodings (docs/scale-out.md "The store"). Pure:
// no I/O, no allocation beyond the returned strings, no globals.
//
// Redis key of a client:  PREFIX "a:" + 32 lowercase hex digits (ClientKey hi, lo)
// Redis value:            16 lowercase hex digits (the backend's name hash64)
// Pub/sub channel:        PREFIX "placements"
// Messages on the channel (fixed width, ASCII, one per PUBLISH):
//   "P1 <replica:16> <key:32> <backend:16>"  replica placed key on backend
//   "T1 <replica:16> <target:16> <key:32>"   replica closed its session of key
//                                            because `target` placed it elsewhere
// Every field is lowercase hex. Unknown or malformed messages are ignored (a
// newer replica's format, or garbage on a shared Redis), never trusted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "lb/client_key.hpp"

namespace lb::store {

std::string hex64(uint64_t v);
std::optional<uint64_t> parse_hex64(std::string_view s);  // exactly 16 lowercase hex digits
std::string key_hex(const ClientKey& k);
std::optional<ClientKey> parse_key_hex(std::string_view s);  // exactly 32

std::string redis_key(std::string_view prefix, const ClientKey& k);
// The ClientKey of a Redis key written by redis_key() with this prefix.
std::optional<ClientKey> parse_redis_key(std::string_view prefix, std::string_view key);
std::string channel(std::string_view prefix);
std::string scan_pattern(std::string_view prefix);  // PREFIX "a:*"

struct Message {
  enum class Kind : uint8_t { Placed, TookOver };
  Kind kind = Kind::Placed;
  uint64_t replica = 0;  // the sender
  ClientKey key;
  uint64_t backend = 0;  // Placed
  uint64_t target = 0;   // TookOver: the replica whose placement caused it
  bool operator==(const Message&) const = default;
};

std::string encode(const Message& m);
std::optional<Message> decode(std::string_view s);

}  // namespace lb::store
