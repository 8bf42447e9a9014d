#include "broker/session.hpp"

#include <algorithm>

#include "mqtt/codec.hpp"
#include "mqtt/frame.hpp"

namespace broker {

void Message::take_properties(mqtt::Properties& pr, uint64_t now_ms) {
  if (pr.message_expiry_interval && *pr.message_expiry_interval)
    expiry_ms = now_ms + uint64_t(*pr.message_expiry_interval) * 1000;
  if (pr.payload_format_indicator || pr.content_type || pr.response_topic || pr.correlation_data ||
      !pr.user_properties.empty()) {
    auto fwd = std::make_unique<mqtt::Properties>();
    fwd->payload_format_indicator = pr.payload_format_indicator;
    fwd->content_type = std::move(pr.content_type);
    fwd->response_topic = std::move(pr.response_topic);
    fwd->correlation_data = std::move(pr.correlation_data);
    fwd->user_properties = std::move(pr.user_properties);
    props = std::move(fwd);
  }
}

uint16_t Session::alloc_pid() {
  if (inflight_size() >= 65535) return 0;
  for (;;) {
    uint16_t p = next_pid++;
    if (next_pid == 0) next_pid = 1;
    if (p != 0 && !find_inflight(p)) return p;
  }
}

bool Session::enqueue(Delivery dl, size_t max_queue) {
  auto& [subs, inflight, queue, queued_qos0, qos2_in] = data();
  Delivery& d = dl;
  d.state = Delivery::Queued;
  if (queue.size() < max_queue) {
    if (d.qos == 0) ++queued_qos0;
    queue.push_back(std::move(d));
    return true;
  }
  // Full: QoS 0 goes first, the oldest one, to make room for QoS 1/2.
  if (d.qos == 0 || queued_qos0 == 0) return false;
  auto it = std::find_if(queue.begin(), queue.end(), [](const Delivery& q) { return q.qos == 0; });
  queue.erase(it);
  --queued_qos0;
  queue.push_back(std::move(d));
  return false;
}

Delivery Session::pop_front() {
  auto& queue = d->queue;
  auto& queued_qos0 = d->queued_qos0;
  Delivery d = std::move(queue.front());
  queue.pop_front();
  if (d.qos == 0) --queued_qos0;
  return d;
}

Delivery* Session::find_inflight(uint16_t pid) {
  if (!d) return nullptr;
  for (auto& d : d->inflight)
    if (d.pid == pid) return &d;
  return nullptr;
}

void Session::erase_inflight(uint16_t pid) {
  if (!d) return;
  auto& inflight = d->inflight;
  auto it = std::find_if(inflight.begin(), inflight.end(),
                         [pid](const Delivery& d) { return d.pid == pid; });
  if (it != inflight.end()) inflight.erase(it);  // keeps send order for re-delivery
}

size_t encode_publish(std::vector<uint8_t>& out, const Message& m, bool v5, uint8_t qos,
                      bool retain, bool dup, uint16_t pid, std::span<const uint32_t> sub_ids,
                      uint64_t now_ms, uint16_t alias, bool omit_topic) {
  static const mqtt::Properties kNone;
  const mqtt::Properties* props = &kNone;
  mqtt::Properties tmp;
  if (v5 && (m.props || m.expiry_ms || !sub_ids.empty() || alias)) {
    if (m.props) tmp = *m.props;
    if (m.expiry_ms) {
      const uint64_t left = m.expiry_ms > now_ms ? (m.expiry_ms - now_ms + 999) / 1000 : 0;
      tmp.message_expiry_interval = uint32_t(std::max<uint64_t>(left, 1));
    }
    tmp.subscription_identifiers.assign(sub_ids.begin(), sub_ids.end());
    if (alias) tmp.topic_alias = alias;
    props = &tmp;
  }
  const std::string_view topic = omit_topic ? std::string_view() : std::string_view(m.topic);
  const size_t plen = v5 ? mqtt::properties_size(*props) : 0;
  const size_t rem = 2 + topic.size() + (qos ? 2 : 0) +
                     (v5 ? mqtt::varint_size(uint32_t(plen)) + plen : 0) + m.payload.size();
  out.push_back(uint8_t(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0)));
  mqtt::append_varint(out, uint32_t(rem));
  out.push_back(uint8_t(topic.size() >> 8));
  out.push_back(uint8_t(topic.size()));
  out.insert(out.end(), topic.begin(), topic.end());
  size_t pid_off = 0;
  if (qos) {
    pid_off = out.size();
    out.push_back(uint8_t(pid >> 8));
    out.push_back(uint8_t(pid));
  }
  if (v5) mqtt::append_properties(out, *props);
  out.insert(out.end(), m.payload.begin(), m.payload.end());
  return pid_off;
}

}  // namespace broker
