// libFuzzer target for the cluster's peer protocol (broker/peer_proto.hpp).
// Asserts, for any input:
//  - next_frame: Done only with a known type, size = 4 + length within the
//    input and the cap, body inside the input; every strict prefix of a Done
//    frame is NeedMore; a larger cap never turns Done into anything else;
//  - the input walked frame by frame, each body decoded by its type: a body
//    that decodes re-encodes to a frame that next_frame accepts with the same
//    type and that decodes to an equal value; re-encoding that is a fixed
//    point (canonical encoding);
//  - the whole input, and the input after its first byte, as the body of every
//    frame type: decoders never read outside it and round-trip when they
//    accept it.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "broker/peer_proto.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace {

namespace peer = broker::peer;
using peer::Status;
using peer::Type;

constexpr uint32_t kCap = 1 << 16;

template <typename T, typename Enc, typename Dec>
void round_trip(std::span<const uint8_t> body, Type type, Enc&& enc, Dec&& dec) {
  T v{};
  if (!dec(body, v)) return;
  std::vector<uint8_t> a;
  enc(a, v);
  const peer::Frame f = peer::next_frame(a, 0xFFFFFFFF);
  FUZZ_CHECK(f.status == Status::Done);
  FUZZ_CHECK(f.type == type);
  FUZZ_CHECK(f.size == a.size());
  T w{};
  FUZZ_CHECK(dec(f.body, w));
  FUZZ_CHECK(w == v);
  std::vector<uint8_t> b;
  enc(b, w);
  FUZZ_CHECK(a == b);
}

template <typename T>
void typed(std::span<const uint8_t> body, Type type) {
  round_trip<T>(
      body, type, [](std::vector<uint8_t>& o, const T& v) { peer::encode(o, v); },
      [](std::span<const uint8_t> b, T& v) { return peer::decode(b, v); });
}

struct Token {
  uint64_t v = 0;
  bool operator==(const Token&) const = default;
};
struct Filter {
  std::string v;
  bool operator==(const Filter&) const = default;
};
struct Empty {
  bool operator==(const Empty&) const = default;
};

void body_as(std::span<const uint8_t> body, Type type) {
  switch (type) {
    case Type::Hello:
      return typed<peer::Hello>(body, type);
    case Type::Auth:
      return typed<peer::Auth>(body, type);
    case Type::Ping:
    case Type::Retire:
      return round_trip<Empty>(
          body, type, [&](std::vector<uint8_t>& o, const Empty&) { peer::encode_empty(o, type); },
          [](std::span<const uint8_t> b, Empty&) { return peer::decode_empty(b); });
    case Type::RouteAdd:
    case Type::RouteDel:
      return round_trip<Filter>(
          body, type,
          [&](std::vector<uint8_t>& o, const Filter& f) { peer::encode_route(o, type, f.v); },
          [](std::span<const uint8_t> b, Filter& f) { return peer::decode_route(b, f.v); });
    case Type::Publish:
      return typed<peer::Publish>(body, type);
    case Type::Claim:
      return typed<peer::Claim>(body, type);
    case Type::ClaimReply:
      return typed<peer::ClaimReply>(body, type);
    case Type::Commit:
      return typed<peer::Commit>(body, type);
    case Type::SessionState:
      return typed<peer::SessionState>(body, type);
    case Type::Sync:
    case Type::SyncAck:
      return round_trip<Token>(
          body, type,
          [&](std::vector<uint8_t>& o, const Token& t) { peer::encode_sync(o, type, t.v); },
          [](std::span<const uint8_t> b, Token& t) { return peer::decode_sync(b, t.v); });
    case Type::Sessions:
      return typed<peer::Sessions>(body, type);
  }
}

const Type kTypes[] = {Type::Hello,      Type::Auth,     Type::Ping,         Type::Retire,
                       Type::RouteAdd,   Type::RouteDel, Type::Publish,      Type::Claim,
                       Type::ClaimReply, Type::Commit,   Type::SessionState, Type::Sync,
                       Type::SyncAck,    Type::Sessions};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  size_t pos = 0;
  while (pos < size) {
    const auto rest = in.subspan(pos);
    const peer::Frame f = peer::next_frame(rest, kCap);
    if (f.status != Status::Done) {
      // A bigger cap can only turn a too-long Error into NeedMore/Done.
      if (f.status == Status::NeedMore)
        FUZZ_CHECK(peer::next_frame(rest, 0xFFFFFFFF).status == Status::NeedMore);
      break;
    }
    FUZZ_CHECK(f.size >= 5 && f.size <= rest.size() && f.size - 4 <= kCap);
    FUZZ_CHECK(f.body.data() == rest.data() + 5 && f.body.size() == f.size - 5);
    FUZZ_CHECK(peer::next_frame(rest, 0xFFFFFFFF).status == Status::Done);
    // Every strict prefix of a complete frame needs more (checked on a few cut points).
    const size_t cuts[] = {0, 3, 4, 5, f.size / 2, f.size - 1};
    for (size_t c : cuts)
      if (c < f.size) FUZZ_CHECK(peer::next_frame(rest.first(c), kCap).status == Status::NeedMore);
    body_as(f.body, f.type);
    pos += f.size;
  }
  for (Type t : kTypes) {
    body_as(in, t);
    if (size > 0) body_as(in.subspan(1), t);
  }
  return 0;
}
