// The peek stage: the client's bytes until one complete, valid CONNECT.
// Pure apart from its memory budget: bytes in, an outcome out (no I/O, no
// timers: the session bounds it in time with limits.connect_timeout_ms).
//
// Every byte is kept, in order — the CONNECT and whatever the client sent
// right after it in the same reads (pipelined packets, a DISCONNECT) — and
// handed to the place stage whole, whatever the TCP segmentation or TLS
// record boundaries were. Bounded: the parser rejects a CONNECT longer than
// limits.max_connect_bytes as soon as its header says so, and the buffer never
// exceeds that plus one read; growth is charged to the process budget and
// refused once it is spent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lb/outcome.hpp"
#include "mqtt/connect.hpp"
#include "net/budget.hpp"

namespace lb {

class PeekStage {
 public:
  enum class Kind : uint8_t {
    NeedMore,
    Connect,  // complete: info() and take_bytes()
    Refuse,   // answer with refusal_connack(version(), reject) then close
    Drop,     // close at once, counted as `reject`
    Invalid,  // close at once, counted by `error`
  };
  struct Outcome {
    Kind kind = Kind::NeedMore;
    Reject reject = Reject::Count;
    mqtt::ConnectError error = mqtt::ConnectError::None;
  };

  PeekStage(uint32_t max_connect_bytes, net::MemoryBudget* budget)
      : max_(max_connect_bytes), budget_(budget) {}
  ~PeekStage() { release(); }
  PeekStage(const PeekStage&) = delete;
  PeekStage& operator=(const PeekStage&) = delete;

  Outcome feed(const uint8_t* data, size_t len);

  const mqtt::ConnectInfo& info() const { return info_; }
  mqtt::ConnectInfo& info() { return info_; }
  // The buffered bytes (the CONNECT first); the stage is empty afterwards.
  std::vector<uint8_t> take_bytes();
  size_t buffered() const { return buf_.size(); }

  // Slack over max_connect_bytes: one read of the rest of the stream.
  static constexpr size_t kSlack = 64 * 1024;

 private:
  void release();

  std::vector<uint8_t> buf_;
  size_t charged_ = 0;
  uint32_t max_;
  net::MemoryBudget* budget_;
  mqtt::ConnectInfo info_;
};

}  // namespace lb
