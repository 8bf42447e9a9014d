// Packet handlers: what the broker does with each control packet of a
// connection. Decoding/encoding is mqtt/; routing and sessions are delivery.cpp.
#include <algorithm>

#include "broker/server.hpp"
#include "mqtt/codec.hpp"

namespace broker {

using mqtt::Reason;

void Server::on_packet(Conn* c, const mqtt::FrameHeader& h, std::span<const uint8_t> packet) {
  c->since_ms = now();  // any packet resets the keep-alive clock [MQTT-3.1.2-23]
  if (c->state == Conn::AwaitConnect) {
    if (h.type() != uint8_t(mqtt::PacketType::Connect)) {
      log_debug("closing: first packet is not CONNECT");  // [MQTT-3.1.0-1]
      return close(c);
    }
    return on_connect(c, packet);
  }
  const uint8_t fb = h.first_byte;
  const auto body = packet.subspan(h.header_length);
  switch (mqtt::PacketType(h.type())) {
    case mqtt::PacketType::Publish:
      return on_publish(c, fb, body);
    case mqtt::PacketType::Puback:
    case mqtt::PacketType::Pubrec:
    case mqtt::PacketType::Pubrel:
    case mqtt::PacketType::Pubcomp:
      return on_pub_response(c, fb, body);
    case mqtt::PacketType::Subscribe:
      return on_subscribe(c, fb, body);
    case mqtt::PacketType::Unsubscribe:
      return on_unsubscribe(c, fb, body);
    case mqtt::PacketType::Pingreq: {
      const mqtt::Result r = mqtt::decode_empty(fb, body);
      if (!r.ok) return fail(c, r.reason, r.what);
      static const uint8_t kPingresp[2] = {0xD0, 0x00};
      return send(c, kPingresp);
    }
    case mqtt::PacketType::Disconnect:
      return on_disconnect(c, fb, body);
    case mqtt::PacketType::Connect:
      return fail(c, Reason::ProtocolError, "second CONNECT");  // [MQTT-3.1.0-2]
    case mqtt::PacketType::Auth:
      if (c->v5()) return fail(c, Reason::ProtocolError, "AUTH without Authentication Method");
      return fail(c, Reason::MalformedPacket, "reserved packet type");
    default:
      return fail(c, Reason::ProtocolError, "packet type not sent by clients");
  }
}

void Server::fail(Conn* c, Reason r, const char* what) {
  log_debug("closing %s: %s (0x%02x)", c->session ? c->session->client_id.c_str() : "-", what,
            unsigned(r));
  if (c->v5() && c->online()) {
    mqtt::Disconnect d;
    d.reason = uint8_t(r);
    d.properties.reason_string = what;  // allowed on DISCONNECT whatever RPI says
    scratch_.clear();
    mqtt::encode_disconnect(d, c->version, scratch_);
    if (c->max_out && scratch_.size() > c->max_out) {
      scratch_.clear();
      mqtt::encode_disconnect({uint8_t(r), {}}, c->version, scratch_);
    }
    send_scratch(c);
    return drain_close(c);
  }
  close(c);
}

void Server::send_connack(Conn* c, uint8_t code, bool present, const std::string* assigned,
                          bool server_keep_alive) {
  mqtt::Connack ack;
  ack.session_present = present;
  ack.code = code;
  if (c->v5() && code == 0) {
    auto& p = ack.properties;
    if (assigned) p.assigned_client_identifier = *assigned;
    if (server_keep_alive) p.server_keep_alive = c->keep_alive;
    p.topic_alias_maximum = opt_.topic_alias_maximum;
    p.receive_maximum = opt_.receive_maximum;
    p.maximum_packet_size = opt_.max_packet_size;
  }
  scratch_.clear();
  mqtt::encode_connack(ack, c->version, scratch_);
  send_scratch(c);
}

void Server::reject_connect(Conn* c, const mqtt::ConnectResult& r) {
  using E = mqtt::ConnectError;
  const bool v5 = r.info.protocol_level == 5;
  log_debug("CONNECT rejected: %s", mqtt::to_string(r.error));
  auto v5_connack = [&](Reason code) {
    c->version = mqtt::Version::V5;
    mqtt::Connack ack;
    ack.code = uint8_t(code);
    ack.properties.reason_string = mqtt::to_string(r.error);
    scratch_.clear();
    mqtt::encode_connack(ack, mqtt::Version::V5, scratch_);
    send_scratch(c);
    drain_close(c);
  };
  auto v3_connack = [&](mqtt::ConnackCode3 code) {
    const uint8_t pkt[4] = {0x20, 0x02, 0x00, uint8_t(code)};
    send(c, pkt);
    drain_close(c);
  };
  switch (r.error) {
    case E::UnsupportedLevel:  // [MQTT-3.1.2-2]
      return v3_connack(mqtt::ConnackCode3::UnacceptableProtocolVersion);
    case E::ClientIdRejected:
    case E::EmptyClientIdNeedsClean:  // [MQTT-3.1.3-8]
      if (v5) return v5_connack(Reason::ClientIdentifierNotValid);
      return v3_connack(mqtt::ConnackCode3::IdentifierRejected);
    case E::NotConnect:
    case E::BadProtocolName:
    case E::BadFixedHeaderFlags:
    case E::MalformedLength:
    case E::TooLarge:
      return close(c);
    case E::DuplicateProperty:
    case E::AuthDataWithoutMethod:
      if (v5) return v5_connack(Reason::ProtocolError);
      return close(c);
    default:
      if (v5) return v5_connack(Reason::MalformedPacket);
      return close(c);
  }
}

void Server::on_connect(Conn* c, std::span<const uint8_t> packet) {
  mqtt::ConnectResult r = mqtt::parse_connect(packet, opt_.max_packet_size);
  if (r.status != mqtt::ParseStatus::Done) return reject_connect(c, r);
  mqtt::ConnectInfo& info = r.info;
  c->version = info.version;
  if (c->v5() && info.properties.authentication_method) {
    mqtt::Connack ack;
    ack.code = uint8_t(Reason::BadAuthenticationMethod);
    scratch_.clear();
    mqtt::encode_connack(ack, c->version, scratch_);
    send_scratch(c);
    return drain_close(c);
  }
  // In a cluster the client id is first claimed from the other nodes; the
  // connection reads nothing more until they answered.
  if (cluster_ && !info.client_id.empty() && cluster_->claim(c, info)) {
    c->state = Conn::AwaitClaim;
    c->claiming = true;
    set_reading(c, false);
    return;
  }
  finish_connect(c, info);
}

void Server::finish_connect(Conn* c, mqtt::ConnectInfo& info) {
  bool present = false;
  std::string assigned;
  attach(c, info, present, &assigned);
  send_connack(c, 0, present, assigned.empty() ? nullptr : &assigned,
               c->keep_alive != info.keep_alive);
  c->state = Conn::Connected;
  log_debug("connect client=%s version=%s peer=%s session_present=%d keep_alive=%u",
            c->session->client_id.c_str(), mqtt::to_string(c->version),
            c->x && !c->x->peer.empty() ? c->x->peer.c_str() : "-", int(present),
            unsigned(c->keep_alive));
  resume(c->session);
}

void Server::on_publish(Conn* c, uint8_t fb, std::span<const uint8_t> body) {
  mqtt::Publish p;
  const mqtt::Result r = mqtt::decode_publish(fb, body, c->version, p);
  if (!r.ok) return fail(c, r.reason, r.what);
  Session* s = c->session;
  if (c->v5()) {
    if (!p.properties.subscription_identifiers.empty())  // [MQTT-3.3.4-6]
      return fail(c, Reason::ProtocolError, "Subscription Identifier in PUBLISH from client");
    if (p.properties.topic_alias) {
      const uint16_t a = *p.properties.topic_alias;
      if (a == 0 || a > opt_.topic_alias_maximum)  // [MQTT-3.3.2-8/9]
        return fail(c, Reason::TopicAliasInvalid, "Topic Alias out of range");
      if (!c->x) c->x = std::make_unique<ConnExtras>();
      if (c->x->aliases.empty()) c->x->aliases.resize(opt_.topic_alias_maximum + 1u);
      std::string& slot = c->x->aliases[a];
      if (p.topic.empty()) {
        if (slot.empty()) return fail(c, Reason::ProtocolError, "unknown Topic Alias");
        p.topic = slot;
      } else {
        slot = p.topic;
      }
    }
  }
  if (!mqtt::valid_topic_name(p.topic))  // [MQTT-3.3.2-2]
    return fail(c, Reason::TopicNameInvalid, "invalid Topic Name");
  if (p.qos == 2 && s->d && s->d->qos2_in.count(p.packet_id)) {
    // Re-sent before our PUBREC arrived: acknowledge, do not deliver twice (4.3.3).
    scratch_.clear();
    mqtt::encode_pub_response({mqtt::PacketType::Pubrec, p.packet_id, 0, {}}, c->version, scratch_);
    return send_scratch(c);
  }
  if (p.qos == 2 && s->data().qos2_in.size() >= (c->v5() ? opt_.receive_maximum : 65535u))
    return fail(c, Reason::ReceiveMaximumExceeded, "Receive Maximum exceeded");  // [MQTT-3.3.4-9]

  if (opt_.acl && !opt_.acl->can_write(p.topic)) {
    // Denied: dropped (not retained either). 5.0 says so in PUBACK/PUBREC, which
    // ends a QoS 2 flow there; 3.x cannot, and is acknowledged as mosquitto does.
    log_debug("publish to %s dropped: --acl denies write", p.topic.c_str());
    if (p.qos == 0) return;
    if (p.qos == 2 && !c->v5()) s->data().qos2_in.insert(p.packet_id);
    scratch_.clear();
    mqtt::encode_pub_response({p.qos == 1 ? mqtt::PacketType::Puback : mqtt::PacketType::Pubrec,
                               p.packet_id,
                               uint8_t(c->v5() ? Reason::NotAuthorized : Reason::Success),
                               {}},
                              c->version, scratch_);
    return send_scratch(c);
  }
  auto m = std::make_shared<Message>();
  m->topic = std::move(p.topic);
  m->payload = std::move(p.payload);
  m->qos = p.qos;
  m->retain = p.retain;
  m->origin = s->serial;
  if (c->v5()) m->take_properties(p.properties, now());
  const size_t n = publish_local(std::move(m));
  if (p.qos == 0) return;
  const uint8_t code = (c->v5() && n == 0) ? uint8_t(Reason::NoMatchingSubscribers) : 0;
  if (p.qos == 2) s->data().qos2_in.insert(p.packet_id);
  scratch_.clear();
  mqtt::encode_pub_response(
      {p.qos == 1 ? mqtt::PacketType::Puback : mqtt::PacketType::Pubrec, p.packet_id, code, {}},
      c->version, scratch_);
  send_scratch(c);
}

void Server::on_pub_response(Conn* c, uint8_t fb, std::span<const uint8_t> body) {
  mqtt::PubResponse r;
  const mqtt::Result res = mqtt::decode_pub_response(fb, body, c->version, r);
  if (!res.ok) return fail(c, res.reason, res.what);
  Session* s = c->session;
  Delivery* d = s->find_inflight(r.packet_id);
  auto reply = [&](mqtt::PacketType t, uint8_t code) {
    scratch_.clear();
    mqtt::encode_pub_response({t, r.packet_id, c->v5() ? code : uint8_t(0), {}}, c->version,
                              scratch_);
    send_scratch(c);
  };
  const uint8_t kNotFound = uint8_t(Reason::PacketIdentifierNotFound);
  switch (r.type) {
    case mqtt::PacketType::Puback:
      if (d && d->state == Delivery::WaitAck) {
        s->erase_inflight(r.packet_id);
        pump(s);
      }
      return;
    case mqtt::PacketType::Pubrec:
      if (d && d->state == Delivery::WaitRec) {
        if (c->v5() && r.reason >= 0x80) {  // refused: the flow ends here (5.0 section 4.3.3)
          s->erase_inflight(r.packet_id);
          return pump(s);
        }
        d->state = Delivery::WaitComp;
        d->msg.reset();  // only the id is needed from now on
        return reply(mqtt::PacketType::Pubrel, 0);
      }
      return reply(mqtt::PacketType::Pubrel, d ? 0 : kNotFound);
    case mqtt::PacketType::Pubrel: {
      const bool known = s->d && s->d->qos2_in.erase(r.packet_id);
      s->compact();
      return reply(mqtt::PacketType::Pubcomp, known ? 0 : kNotFound);
    }
    case mqtt::PacketType::Pubcomp:
      if (d && d->state == Delivery::WaitComp) {
        s->erase_inflight(r.packet_id);
        pump(s);
      }
      return;
    default:
      return;
  }
}

void Server::on_subscribe(Conn* c, uint8_t fb, std::span<const uint8_t> body) {
  mqtt::Subscribe sub;
  const mqtt::Result r = mqtt::decode_subscribe(fb, body, c->version, sub);
  if (!r.ok) return fail(c, r.reason, r.what);
  Session* s = c->session;
  const bool v5 = c->v5();
  uint32_t sub_id = 0;
  if (v5 && !sub.properties.subscription_identifiers.empty()) {
    sub_id = sub.properties.subscription_identifiers.front();
    if (sub_id == 0) return fail(c, Reason::ProtocolError, "Subscription Identifier 0");
  }
  mqtt::Suback ack;
  ack.packet_id = sub.packet_id;
  std::vector<std::pair<std::string, SubOpts>> send_retained_for;
  const uint64_t adds = cluster_ ? cluster_->route_adds() : 0;
  for (const auto& e : sub.subscriptions) {
    if (!mqtt::valid_topic_filter(e.filter)) {  // [MQTT-4.7.1-1..3]; mqtt/ rejects first
      ack.codes.push_back(v5 ? uint8_t(Reason::TopicFilterInvalid) : 0x80);
      continue;
    }
    std::string_view group, inner = e.filter;
    const Share share = parse_shared(e.filter, group, inner);
    if (share == Share::Invalid)  // [MQTT-4.8.2-1/2]
      return fail(c, Reason::ProtocolError, "invalid shared subscription");
    if (opt_.acl && !opt_.acl->can_subscribe(inner)) {
      // --acl: refused with 0x80 (5.0: 0x87 Not authorized) [MQTT-3.9.3-1].
      log_debug("subscription to %s refused: --acl", e.filter.c_str());
      ack.codes.push_back(v5 ? uint8_t(Reason::NotAuthorized) : 0x80);
      continue;
    }
    SubOpts o;
    o.qos = std::min<uint8_t>(e.qos, 2);
    if (v5) {
      o.no_local = e.no_local;
      o.retain_as_published = e.retain_as_published;
      o.retain_handling = e.retain_handling;
      o.sub_id = sub_id;
    }
    const bool existed = !sub_set(s, e.filter, o);
    ack.codes.push_back(o.qos);
    // Retain Handling: 0 always, 1 only for a new subscription, 2 never
    // [MQTT-3.3.1-9..11]; never for a shared subscription (4.8.2).
    if (share == Share::No && (o.retain_handling == 0 || (o.retain_handling == 1 && !existed)))
      send_retained_for.emplace_back(e.filter, o);
  }
  scratch_.clear();
  mqtt::encode_suback(ack, c->version, scratch_);
  // New routes: SUBACK once every node has them (Cluster::hold_suback).
  if (cluster_ && cluster_->route_adds() != adds &&
      cluster_->hold_suback(c, scratch_, std::move(send_retained_for)))
    return;
  send_scratch(c);
  for (auto& [f, o] : send_retained_for) send_retained(s, f, o);
}

void Server::on_unsubscribe(Conn* c, uint8_t fb, std::span<const uint8_t> body) {
  mqtt::Unsubscribe u;
  const mqtt::Result r = mqtt::decode_unsubscribe(fb, body, c->version, u);
  if (!r.ok) return fail(c, r.reason, r.what);
  Session* s = c->session;
  mqtt::Unsuback ack;
  ack.packet_id = u.packet_id;
  for (const auto& f : u.filters) {
    const bool existed = sub_erase(s, f);
    if (c->v5()) ack.codes.push_back(existed ? 0 : uint8_t(Reason::NoSubscriptionExisted));
  }
  s->compact();
  scratch_.clear();
  mqtt::encode_unsuback(ack, c->version, scratch_);
  send_scratch(c);
}

void Server::on_disconnect(Conn* c, uint8_t fb, std::span<const uint8_t> body) {
  mqtt::Disconnect d;
  const mqtt::Result r = mqtt::decode_disconnect(fb, body, c->version, d);
  if (!r.ok) return fail(c, r.reason, r.what);
  Session* s = c->session;
  if (c->v5() && d.properties.session_expiry_interval) {
    if (s->expiry_s == 0 && *d.properties.session_expiry_interval != 0)  // [MQTT-3.14.2-2]
      return fail(c, Reason::ProtocolError, "Session Expiry Interval set on DISCONNECT");
    s->expiry_s = *d.properties.session_expiry_interval;
  }
  // Normal disconnection discards the will; 0x04 asks for it [MQTT-3.14.4-3].
  if (!(c->v5() && d.reason == uint8_t(Reason::DisconnectWithWill))) c->will.reset();
  c->graceful = true;
  close(c);
}

}  // namespace broker
