// The MQTT side of a bench client (bench/client.hpp): CONNECT/SUBSCRIBE,
// packet parsing, the publish window, acknowledgements. The transport side is
// bench/client_io.cpp.
#include "bench/client.hpp"

#include <algorithm>
#include <cstring>

#include "bench/runner.hpp"
#include "mqtt/codec.hpp"
#include "mqtt/frame.hpp"
#include "net/tls_transport.hpp"

namespace bench {

namespace {

// Payload header written by publishers: send time (uv_hrtime, CLOCK_MONOTONIC,
// comparable between processes on one host), sequence, publisher index.
constexpr size_t kHeader = 16;
constexpr size_t kHighWater = 64 * 1024;  // stop producing above this many unsent bytes
const uint8_t g_zeros[4096] = {};

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

}  // namespace

Client::Client(Runner& r, Role role, uint32_t index, uint32_t slot)
    : r_(r), role_(role), index_(index), slot_(slot) {}

void Client::set_topic(const std::string& topic) {
  pub_header_.clear();
  put16(pub_header_, static_cast<uint16_t>(topic.size()));
  pub_header_.insert(pub_header_.end(), topic.begin(), topic.end());
}

void Client::send_connect() {
  const Options& o = r_.opts();
  mqtt::ConnectInfo ci;
  ci.protocol_level = o.version;
  ci.version = static_cast<mqtt::Version>(o.version);
  ci.clean_start = true;
  ci.keep_alive = o.keepalive;
  char role = role_ == Role::Pub ? 'p' : role_ == Role::Sub ? 's' : 'c';
  ci.client_id = o.client_prefix + "-" + role + std::to_string(index_) + "-" +
                 std::to_string(uv_os_getpid() % 100000);
  if (o.version == 5) ci.properties.receive_maximum = 65535;
  mqtt::encode_connect(ci, out_);
  state_ = State::AwaitConnack;
  t_connect_sent_ = r_.now();
  r_.schedule(*this);
}

void Client::send_subscribe() {
  const Options& o = r_.opts();
  // Several SUBSCRIBE packets of at most 100 filters each; one SUBACK per packet.
  uint16_t pid = 1;
  for (size_t i = 0; i < filters_.size(); i += 100) {
    mqtt::Subscribe s;
    s.packet_id = pid++;
    for (size_t j = i; j < std::min(filters_.size(), i + 100); j++) {
      mqtt::Subscription sub;
      sub.filter = filters_[j];
      sub.qos = o.qos;
      s.subscriptions.push_back(std::move(sub));
    }
    mqtt::encode_subscribe(s, static_cast<mqtt::Version>(o.version), out_);
    subacks_pending_++;
  }
  state_ = State::AwaitSuback;
  r_.schedule(*this);
}

void Client::on_bytes(std::span<const uint8_t> data) {
  if (rbuf_.empty()) {
    size_t used = parse(data);
    if (!closing_ && used < data.size()) rbuf_.assign(data.begin() + used, data.end());
  } else {
    rbuf_.insert(rbuf_.end(), data.begin(), data.end());
    size_t used = parse(rbuf_);
    if (closing_) return;
    rbuf_.erase(rbuf_.begin(), rbuf_.begin() + used);
    if (rbuf_.empty() && rbuf_.capacity() > net::Slab::kSize) std::vector<uint8_t>().swap(rbuf_);
  }
}

size_t Client::parse(std::span<const uint8_t> data) {
  size_t pos = 0;
  while (pos < data.size() && !closing_) {
    mqtt::FrameResult f = mqtt::peek_frame(data.subspan(pos));
    if (f.status == mqtt::DecodeStatus::NeedMore) break;
    if (f.status == mqtt::DecodeStatus::Malformed) {
      fail("malformed packet from server", state_ == State::Ready);
      break;
    }
    if (data.size() - pos < f.header.total_length()) break;
    auto body = data.subspan(pos + f.header.header_length, f.header.remaining_length);
    pos += f.header.total_length();
    if (!handle_packet(f.header.first_byte, body)) break;
  }
  return pos;
}

bool Client::handle_packet(uint8_t first, std::span<const uint8_t> body) {
  switch (static_cast<mqtt::PacketType>(first >> 4)) {
    case mqtt::PacketType::Connack:
      handle_connack(first, body);
      break;
    case mqtt::PacketType::Suback:
      handle_suback(first, body);
      break;
    case mqtt::PacketType::Publish:
      handle_publish(first, body);
      break;
    case mqtt::PacketType::Puback:
    case mqtt::PacketType::Pubrec:
    case mqtt::PacketType::Pubrel:
    case mqtt::PacketType::Pubcomp:
      handle_ack(first >> 4, body);
      break;
    case mqtt::PacketType::Pingresp:
      break;
    case mqtt::PacketType::Disconnect: {
      std::string why = "DISCONNECT from server";
      if (!body.empty()) {
        char hex[8];
        snprintf(hex, sizeof hex, "0x%02x", body[0]);
        why += std::string(" reason ") + hex;
      }
      fail(why, true);
      return false;
    }
    default:
      fail("unexpected packet type " + std::to_string(first >> 4) + " from server",
           state_ == State::Ready);
      return false;
  }
  return !closing_;
}

void Client::handle_connack(uint8_t first, std::span<const uint8_t> body) {
  if (state_ != State::AwaitConnack) return fail("unexpected CONNACK", state_ == State::Ready);
  mqtt::Connack ca;
  mqtt::Result res =
      mqtt::decode_connack(first, body, static_cast<mqtt::Version>(r_.opts().version), ca);
  if (!res.ok) return fail(std::string("bad CONNACK: ") + res.what, false);
  if (ca.code != 0) {
    char hex[8];
    snprintf(hex, sizeof hex, "0x%02x", ca.code);
    return fail(std::string("CONNACK refused: code ") + hex, false);
  }
  uint64_t now = r_.now();
  r_.st().connack.record(now - t_connect_sent_);
  r_.st().handshake.record(now - t_start_);
  window_ = r_.opts().window;
  if (ca.properties.receive_maximum)
    window_ = std::min<uint32_t>(window_, *ca.properties.receive_maximum);
  if (role_ == Role::Pub && r_.opts().qos > 0) {
    slots_.assign(window_ + 1, Inflight{});
    free_ids_.clear();
    for (uint32_t id = window_; id >= 1; id--) free_ids_.push_back(static_cast<uint16_t>(id));
  }
  // Resumption: keep the first session (its TLS 1.3 ticket has been read by
  // now, after the handshake) for every later connection to offer.
  if (tls_ && r_.opts().resume && r_.tls_session() && !r_.tls_session()->resumable())
    *r_.tls_session() = tls_->session();
  r_.on_connected(*this);
  if (role_ == Role::Sub && !filters_.empty()) {
    send_subscribe();
  } else {
    state_ = State::Ready;
    r_.on_ready(*this);
  }
}

void Client::handle_suback(uint8_t first, std::span<const uint8_t> body) {
  if (state_ != State::AwaitSuback) return fail("unexpected SUBACK", true);
  mqtt::Suback sa;
  mqtt::Result res =
      mqtt::decode_suback(first, body, static_cast<mqtt::Version>(r_.opts().version), sa);
  if (!res.ok) return fail(std::string("bad SUBACK: ") + res.what, false);
  for (uint8_t code : sa.codes) {
    if (code >= 0x80) {
      char hex[8];
      snprintf(hex, sizeof hex, "0x%02x", code);
      return fail(std::string("subscription refused: code ") + hex, false);
    }
  }
  if (--subacks_pending_ == 0) {
    state_ = State::Ready;
    r_.on_ready(*this);
  }
}

// Hot path: parsed by hand (no allocation). Layout: topic (2 + n), packet id
// when QoS > 0, MQTT 5 properties (varint length + bytes), payload.
void Client::handle_publish(uint8_t first, std::span<const uint8_t> body) {
  uint8_t qos = (first >> 1) & 3;
  if (qos == 3 || body.size() < 2) return fail("malformed PUBLISH from server", true);
  size_t pos = 2 + ((size_t{body[0]} << 8) | body[1]);
  uint16_t pid = 0;
  if (qos > 0) {
    if (body.size() < pos + 2) return fail("malformed PUBLISH from server", true);
    pid = static_cast<uint16_t>((body[pos] << 8) | body[pos + 1]);
    pos += 2;
  }
  if (r_.opts().version == 5) {
    if (pos > body.size()) return fail("malformed PUBLISH from server", true);
    mqtt::VarintResult v = mqtt::decode_varint(body.subspan(pos));
    if (v.status != mqtt::DecodeStatus::Ok || body.size() - pos - v.length < v.value)
      return fail("malformed PUBLISH properties from server", true);
    pos += v.length + v.value;
  }
  if (pos > body.size()) return fail("malformed PUBLISH from server", true);
  Stats& st = r_.st();
  st.received++;
  uint64_t now = r_.now();
  if (!st.t_first_recv) st.t_first_recv = now;
  st.t_last_recv = now;
  if (body.size() - pos >= kHeader) {
    uint64_t ts;
    uint32_t seq, pub;
    std::memcpy(&ts, &body[pos], 8);
    std::memcpy(&seq, &body[pos + 8], 4);
    std::memcpy(&pub, &body[pos + 12], 4);
    if (now >= ts) st.latency.record(now - ts);
    uint32_t& last = last_seq_[pub];  // last sequence seen + 1; 0 = none
    if (seq >= last) {
      st.unique++;
      st.gaps += seq - last;
      last = seq + 1;
    } else {
      st.duplicates++;
    }
    r_.on_delivered(pub, ts);
  } else {
    st.foreign++;
  }
  if (qos == 1)
    send_small(0x40, pid);
  else if (qos == 2)
    send_small(0x50, pid);
  if (qos > 0) r_.schedule(*this);
}

void Client::handle_ack(uint8_t type, std::span<const uint8_t> body) {
  if (body.size() < 2) return fail("malformed acknowledgement from server", true);
  uint16_t pid = static_cast<uint16_t>((body[0] << 8) | body[1]);
  if (body.size() >= 3 && body[2] >= 0x80) {
    char what[48];
    snprintf(what, sizeof what, "%s reason 0x%02x",
             type == 4   ? "PUBACK"
             : type == 5 ? "PUBREC"
                         : "PUBCOMP",
             body[2]);
    r_.st().failures[what]++;
  }
  if (type == 6) {  // PUBREL to us as a QoS 2 receiver
    send_small(0x70, pid);
    r_.schedule(*this);
    return;
  }
  if (pid == 0 || pid >= slots_.size() || !slots_[pid].used)
    return fail("acknowledgement for unknown packet id " + std::to_string(pid), true);
  Inflight& s = slots_[pid];
  uint8_t want = r_.opts().qos == 1 ? 4 : (s.released ? 7 : 5);
  if (type != want) return fail("unexpected acknowledgement type " + std::to_string(type), true);
  if (type == 5) {
    s.released = true;
    send_small(0x62, pid);
    r_.schedule(*this);
    return;
  }
  Stats& st = r_.st();
  uint64_t now = r_.now();
  st.ack_latency.record(now - s.sent_at);
  st.acked++;
  s = Inflight{};
  free_ids_.push_back(pid);
  inflight_count_--;
  r_.schedule(*this);
}

void Client::send_small(uint8_t first, uint16_t pid) {
  out_.push_back(first);
  out_.push_back(2);
  put16(out_, pid);
}

bool Client::can_send() const {
  if (state_ != State::Ready || closing_ || !r_.publishing()) return false;
  if (out_.size() + (t_ ? t_->pending() : 0) >= kHighWater) return false;
  if (r_.opts().qos > 0 && free_ids_.empty()) return false;
  return true;
}

void Client::publish_one(uint64_t now) {
  const Options& o = r_.opts();
  uint16_t pid = 0;
  if (o.qos > 0) {
    pid = free_ids_.back();
    free_ids_.pop_back();
    slots_[pid] = Inflight{now, true, false};
    inflight_count_++;
  }
  uint32_t remaining = static_cast<uint32_t>(pub_header_.size() + (o.qos ? 2 : 0) +
                                             (o.version == 5 ? 1 : 0) + o.size);
  out_.push_back(static_cast<uint8_t>(0x30 | (o.qos << 1)));
  mqtt::append_varint(out_, remaining);
  out_.insert(out_.end(), pub_header_.begin(), pub_header_.end());
  if (o.qos) put16(out_, pid);
  if (o.version == 5) out_.push_back(0);  // no properties
  uint8_t hdr[kHeader];
  uint32_t seq = static_cast<uint32_t>(seq_++);
  std::memcpy(hdr, &now, 8);
  std::memcpy(hdr + 8, &seq, 4);
  std::memcpy(hdr + 12, &index_, 4);
  out_.insert(out_.end(), hdr, hdr + kHeader);
  for (size_t left = o.size - kHeader; left > 0;) {
    size_t n = std::min(left, sizeof g_zeros);
    out_.insert(out_.end(), g_zeros, g_zeros + n);
    left -= n;
  }
  r_.st().sent++;
}

void Client::pump() {
  if (!can_send()) return;
  uint64_t now = r_.now();
  for (int budget = 4096; budget > 0 && can_send(); budget--) {
    if (fanout_) {
      // End-to-end window: messages sent but not yet seen by our subscribers.
      auto outstanding =
          static_cast<int64_t>(seq_ - delivered_base_) - static_cast<int64_t>(delivered_ / fanout_);
      if (outstanding >= static_cast<int64_t>(window_)) break;
    }
    publish_one(now);
  }
}

uint32_t Client::send_due(uint32_t n) {
  uint32_t done = 0;
  uint64_t now = r_.now();
  while (done < n && can_send()) {
    publish_one(now);
    done++;
  }
  if (done) r_.schedule(*this);
  return done;
}

void Client::check_stall(uint64_t) {
  // Closed loop over QoS 0 (or a broker dropping messages): if the window is
  // full and nothing arrived for two ticks, count the window lost and reopen it.
  if (!fanout_ || state_ != State::Ready) return;
  auto outstanding =
      static_cast<int64_t>(seq_ - delivered_base_) - static_cast<int64_t>(delivered_ / fanout_);
  if (outstanding < static_cast<int64_t>(window_)) {
    last_delivery_ = 0;
    return;
  }
  if (++last_delivery_ >= 2) {
    delivered_base_ += static_cast<uint64_t>(outstanding);
    last_delivery_ = 0;
    r_.st().window_resets++;
    r_.schedule(*this);
  }
}

bool Client::wants_to_send() const {
  if (role_ != Role::Pub || r_.opts().rate > 0 || !can_send()) return false;
  if (!fanout_) return true;
  auto outstanding =
      static_cast<int64_t>(seq_ - delivered_base_) - static_cast<int64_t>(delivered_ / fanout_);
  return outstanding < static_cast<int64_t>(window_);
}

bool Client::idle_publisher() const {
  return inflight_count_ == 0 && out_.empty() && (t_ == nullptr || t_->pending() == 0);
}

void Client::keepalive(uint64_t now) {
  uint16_t ka = r_.opts().keepalive;
  if (!ka || closing_ || (state_ != State::Ready && state_ != State::AwaitSuback)) return;
  if (now - std::max(t_last_send_, t_connect_sent_) < uint64_t{ka} * 500'000'000ull) return;
  out_.push_back(0xC0);  // PINGREQ
  out_.push_back(0);
  r_.schedule(*this);
}

void Client::check_connect_timeout(uint64_t now, uint64_t timeout_ns) {
  if (closing_ || now - t_start_ < timeout_ns) return;
  switch (state_) {
    case State::Connecting:
      return fail("timeout: TCP connect", false);
    case State::Handshaking:
      return fail("timeout: TLS handshake", false);
    case State::AwaitConnack:
      return fail("timeout: no CONNACK", false);
    case State::AwaitSuback:
      return fail("timeout: no SUBACK", false);
    default:
      return;
  }
}

}  // namespace bench
