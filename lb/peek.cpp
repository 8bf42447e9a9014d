#include "lb/peek.hpp"

namespace lb {

PeekStage::Outcome PeekStage::feed(const uint8_t* data, size_t len) {
  Outcome o;
  if (budget_ && !budget_->has_room(len)) {
    o.kind = Kind::Drop;
    o.reject = Reject::MemoryBudget;
    return o;
  }
  buf_.insert(buf_.end(), data, data + len);
  if (budget_ && buf_.capacity() > charged_) {
    budget_->charge(buf_.capacity() - charged_);
    charged_ = buf_.capacity();
  }
  mqtt::ConnectResult r = mqtt::parse_connect(buf_, max_);
  if (r.status == mqtt::ParseStatus::NeedMore) {
    // The parser caps the packet; this only guards a parser that would not.
    if (buf_.size() > max_ + kSlack) {
      o.kind = Kind::Invalid;
      o.error = mqtt::ConnectError::TooLarge;
    }
    return o;
  }
  if (r.status == mqtt::ParseStatus::Error) {
    if (r.error == mqtt::ConnectError::UnsupportedLevel) {
      // [MQTT-3.1.2-2] 3.1.1: CONNACK 0x01 then close; 5.0: reason 0x84.
      info_.protocol_level = r.info.protocol_level;
      info_.version = r.info.protocol_level >= 5 ? mqtt::Version::V5 : mqtt::Version::V311;
      o.kind = Kind::Refuse;
      o.reject = Reject::UnsupportedLevel;
      return o;
    }
    o.kind = Kind::Invalid;
    o.error = r.error;
    return o;
  }
  info_ = std::move(r.info);
  o.kind = Kind::Connect;
  return o;
}

std::vector<uint8_t> PeekStage::take_bytes() {
  std::vector<uint8_t> out;
  out.swap(buf_);
  release();
  return out;
}

void PeekStage::release() {
  if (budget_ && charged_) budget_->release(charged_);
  charged_ = 0;
}

}  // namespace lb
