// Sessions and delivery: attach/detach a connection to its session, wills,
// fan-out of one message to every matching subscription, in-flight windows and
// per-session queues.
#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "broker/server.hpp"
#include "mqtt/codec.hpp"

namespace broker {

namespace {
constexpr size_t kWriteHigh = 256 * 1024;  // same threshold as server.cpp
// Outbound Topic Aliases kept per connection, whatever the client allows:
// bounds the table (topic strings) an idle connection can make us hold.
constexpr uint16_t kMaxOutAliases = 64;
}  // namespace

// PUBLISH bytes encoded once per fan-out for each (5.0?, QoS, RETAIN) when no
// Subscription Identifier makes the packet recipient-specific. QoS 1/2 copies
// are patched with the recipient's packet id.
struct FanCache {
  std::vector<uint8_t> bytes[2][3][2];
  size_t pid_off[2][3][2] = {};
};

void Server::attach(Conn* c, const mqtt::ConnectInfo& info, bool& present, std::string* assigned) {
  std::string id = info.client_id;
  if (id.empty()) {  // [MQTT-3.1.3-6]: assign a unique id; 5.0 returns it in CONNACK
    do {
      char buf[32];
      std::snprintf(buf, sizeof buf, "-%" PRIu64, next_auto_id_++);
      id = "auto-" + opt_.name + buf;
    } while (sessions_.count(id));
    if (c->v5()) *assigned = id;
  }
  auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second->conn) {
    take_over(it->second.get());  // [MQTT-3.1.4-3]
    it = sessions_.find(id);
  }
  Session* s = it == sessions_.end() ? nullptr : it->second.get();
  if (s && info.clean_start) {  // [MQTT-3.1.2-4]
    destroy_session(s);
    s = nullptr;
  }
  present = s != nullptr;  // [MQTT-3.2.2-2/3]
  if (!s) {
    auto fresh = std::make_unique<Session>();
    fresh->client_id = id;
    fresh->serial = next_serial_++;
    s = fresh.get();
    sessions_.emplace(std::string_view(s->client_id), std::move(fresh));
  }
  s->conn = c;
  c->session = s;
  s->will.reset();  // reconnected before the Will Delay passed: no will [MQTT-3.1.3-9]
  s->expires_at_ms = 0;
  if (cluster_) {
    if (!s->cx) s->cx = std::make_unique<SessionCluster>();
    s->cx->ts = wall_ms();
    s->cx->moving = 0;  // back here: a hand-over still pending has nothing to move
  }
  s->v5 = c->v5();
  if (c->v5()) {
    s->expiry_s = info.properties.session_expiry_interval.value_or(0);
    c->max_out = info.properties.maximum_packet_size.value_or(0);
    if (const uint16_t n = info.properties.topic_alias_maximum.value_or(0)) {
      if (!c->x) c->x = std::make_unique<ConnExtras>();
      c->x->alias_out_max = std::min(n, kMaxOutAliases);
    }
    c->window =
        std::min<uint16_t>(opt_.max_inflight, info.properties.receive_maximum.value_or(65535));
  } else {
    s->expiry_s = info.clean_start ? 0 : Session::kNeverExpires;
    c->window = opt_.max_inflight;
  }
  if (c->window == 0) c->window = 1;
  c->keep_alive = info.keep_alive;
  // 5.0 Server Keep Alive: a client asking for more than --max-keepalive (or
  // for none) is told the maximum in CONNACK and held to it [MQTT-3.2.2-21].
  // 3.x clients cannot be told, so they keep their own value.
  if (c->v5() && opt_.max_keepalive &&
      (info.keep_alive == 0 || info.keep_alive > opt_.max_keepalive))
    c->keep_alive = opt_.max_keepalive;
  if (info.will) c->will = std::make_unique<mqtt::WillMessage>(*info.will);
}

bool Server::take_over(Session* s) {
  Conn* old = s->conn;
  if (!old) return true;
  // The old connection goes (5.0: DISCONNECT 0x8E), with its will.
  log_debug("takeover client=%s", s->client_id.c_str());
  if (old->v5() && old->online()) {
    mqtt::Disconnect d;
    d.reason = uint8_t(mqtt::Reason::SessionTakenOver);
    d.properties.reason_string = "session taken over";
    scratch_.clear();
    mqtt::encode_disconnect(d, old->version, scratch_);
    if (old->max_out && scratch_.size() > old->max_out) {
      scratch_.clear();
      mqtt::encode_disconnect({d.reason, {}}, old->version, scratch_);
    }
    send_scratch(old);
  }
  const std::string id = s->client_id;
  drain_close(old);
  detach(old);  // its will and, for expiry 0, the end of its session
  auto it = sessions_.find(id);
  return it != sessions_.end() && it->second.get() == s;
}

void Server::detach(Conn* c) {
  Session* s = c->session;
  if (!s) return;
  c->session = nullptr;
  s->conn = nullptr;
  log_debug("disconnect client=%s %s", s->client_id.c_str(),
            c->graceful ? "(DISCONNECT)" : "(abnormal)");
  if (c->will && !stopping_) {
    const uint32_t delay = c->v5() ? c->will->properties.will_delay_interval.value_or(0) : 0;
    if (delay == 0 || s->expiry_s == 0) {
      publish_will(*c->will, s->serial);
    } else {  // published at min(Will Delay, Session Expiry) [MQTT-3.1.3-9]
      const uint32_t wait = std::min(delay, s->expiry_s);
      s->will = std::make_unique<PendingWill>();
      s->will->will = std::move(*c->will);
      s->will->due_ms = now() + uint64_t(wait) * 1000;
      note_deadline(s->will->due_ms);
    }
  }
  c->will.reset();
  if (s->expiry_s == 0) return destroy_session(s);
  s->expires_at_ms =
      s->expiry_s == Session::kNeverExpires ? 0 : now() + uint64_t(s->expiry_s) * 1000;
  note_deadline(s->expires_at_ms);
}

void Server::destroy_session(Session* s) {
  if (s->will && !stopping_) {  // the session ends before the will delay: publish now
    auto w = std::move(s->will);
    publish_will(w->will, s->serial);
  }
  if (s->d) {
    for (const auto& [full, o] : s->d->subs) {
      std::string_view group, inner = full;
      parse_shared(full, group, inner);
      trie_.remove(inner, s, group);
      route_ref(full, false);
    }
    s->d->subs.clear();
  }
  if (s->conn) s->conn->session = nullptr;
  auto it = sessions_.find(s->client_id);
  if (it != sessions_.end() && it->second.get() == s) sessions_.erase(it);
}

bool Server::sub_set(Session* s, const std::string& full, const SubOpts& o) {
  auto& subs = s->data().subs;
  const bool fresh = subs.count(full) == 0;
  subs[full] = o;
  std::string_view group, inner = full;
  parse_shared(full, group, inner);
  trie_.add(inner, s, o, group);
  if (fresh) route_ref(full, true);
  return fresh;
}

bool Server::sub_erase(Session* s, const std::string& full) {
  if (!s->d) return false;
  auto it = s->d->subs.find(full);
  if (it == s->d->subs.end()) return false;
  std::string_view group, inner = full;
  parse_shared(full, group, inner);
  trie_.remove(inner, s, group);
  route_ref(full, false);  // before erasing: `full` may be the key itself
  s->d->subs.erase(it);
  return true;
}

void Server::route_ref(const std::string& full, bool add) {
  if (!cluster_) return;
  if (add) {
    if (route_refs_[full]++ == 0) cluster_->route_changed(full, true);
    return;
  }
  auto it = route_refs_.find(full);
  if (it == route_refs_.end()) return;
  if (--it->second == 0) {
    const std::string key = full;  // `full` may live in a map we change
    route_refs_.erase(it);
    cluster_->route_changed(key, false);
  }
}

uint64_t Server::next_rversion() {
  // ms since the epoch in the high bits, this node's salt in the low 12, so
  // two nodes never write the same version; strictly increasing here.
  const uint64_t ms = std::max(wall_ms(), (last_rversion_ >> 12) + 1);
  last_rversion_ = ms << 12 | version_salt_;
  return last_rversion_;
}

size_t Server::publish_local(std::shared_ptr<Message> m) {
  if (m->retain) {
    m->rversion = next_rversion();
    retained_.set(m->topic, m);  // empty payload deletes [MQTT-3.3.1-6/7]
  }
  if (!cluster_) return route(m);
  m->seq = cluster_->next_seq();
  std::vector<GroupRef> elsewhere;
  const size_t remote = cluster_->forward(*m, elsewhere);
  return route(m, elsewhere.empty() ? nullptr : &elsewhere, false) + remote;
}

void Server::publish_will(mqtt::WillMessage& w, uint64_t origin) {
  if (opt_.acl && !opt_.acl->can_write(w.topic)) {
    log_debug("will on %s dropped: --acl denies write", w.topic.c_str());
    return;
  }
  auto m = std::make_shared<Message>();
  m->topic = std::move(w.topic);
  m->payload = std::move(w.payload);
  m->qos = w.qos;
  m->retain = w.retain;
  m->origin = origin;
  m->take_properties(w.properties, now());
  publish_local(std::move(m));
}

size_t Server::route(const MsgPtr& m, const std::vector<GroupRef>* groups, bool only) {
  if (opt_.acl && !opt_.acl->can_read(m->topic)) return 0;  // --acl: nobody may read it
  targets_.clear();
  extra_ids_.clear();
  auto add = [&](Session* s, const SubOpts& o, bool shared) {
    if (m->from && s->cx && s->cx->skips(*m)) return;  // had it before it moved here
    const uint8_t qos = std::min(m->qos, o.qos);
    // Forwarded messages carry RETAIN 0 unless Retain As Published [MQTT-3.3.1-12/13].
    const bool retain = o.retain_as_published && m->retain;
    if (!shared && s->v5 && s->fan_idx < targets_.size()) {
      Target& t = targets_[s->fan_idx];
      if (t.s == s && !t.shared) {
        // 5.0: overlapping subscriptions give one PUBLISH with the highest QoS
        // and every matching Subscription Identifier [MQTT-3.3.4-3, -5].
        t.qos = std::max(t.qos, qos);
        t.retain = t.retain || retain;
        if (o.sub_id && !t.sub_id) {
          t.sub_id = o.sub_id;
        } else if (o.sub_id) {
          extra_ids_.emplace_back(s->fan_idx, o.sub_id);
          t.more_ids = true;
        }
        return;
      }
    }
    if (!shared) s->fan_idx = uint32_t(targets_.size());
    targets_.push_back({s, o.sub_id, qos, retain, shared, false});
  };
  // Before 5.0, like mosquitto, overlapping subscriptions of one session each
  // get their own copy (allowed by [MQTT-3.3.4-2]) with their own QoS.
  trie_.match_split(
      m->topic,
      [&](const SubEntry& e) {
        if (e.opts.no_local && e.session->serial == m->origin) return;  // [MQTT-3.8.3-3]
        add(e.session, e.opts, false);
      },
      [&](const SubTrie::SharedGroup& g) {
        if (groups && (std::find(groups->begin(), groups->end(), GroupRef(g.filter, g.name)) ==
                       groups->end()) == only)
          return;  // another node serves this group for this message
        const SubEntry& e = g.pick();
        if (e.opts.no_local && e.session->serial == m->origin) return;
        add(e.session, e.opts, true);
      });
  FanCache cache;
  std::vector<uint32_t> ids;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const Target& t = targets_[i];
    ids.clear();
    if (t.sub_id) ids.push_back(t.sub_id);
    if (t.more_ids)
      for (const auto& [idx, id] : extra_ids_)
        if (idx == i) ids.push_back(id);
    deliver(t.s, m, t.qos, t.retain, ids, &cache);
  }
  return targets_.size();
}

void Server::deliver(Session* s, const MsgPtr& m, uint8_t qos, bool retain,
                     std::span<const uint32_t> sub_ids, FanCache* cache) {
  if (m->expired(now())) {
    ++stats_.dropped_expired;
    return;
  }
  Conn* c = s->conn;
  const bool on = c && c->online();
  if (!on && qos == 0) return;  // QoS 0 is not kept for offline sessions
  if (on && s->queue_empty() && backlog(c) < kWriteHigh &&
      (qos == 0 || s->inflight_size() < c->window)) {
    Delivery d;
    d.qos = qos;
    d.retain = retain;
    if (qos) {
      d.pid = s->alloc_pid();
      d.state = qos == 1 ? Delivery::WaitAck : Delivery::WaitRec;
    }
    if (cache && sub_ids.empty() && !c->aliases_out()) {
      const int v = c->v5() ? 1 : 0;
      auto& b = cache->bytes[v][qos][retain];
      if (b.empty())
        cache->pid_off[v][qos][retain] = encode_publish(b, *m, v, qos, retain, false, 0, {}, now());
      if (c->max_out && b.size() > c->max_out) {  // [MQTT-3.1.2-25]: discard
        ++stats_.dropped_too_large;
        return;
      }
      send(c, b);
      if (qos && c->out) {
        auto& pend = c->out->pending;
        const size_t at = pend.size() - b.size() + cache->pid_off[v][qos][retain];
        pend[at] = uint8_t(d.pid >> 8);
        pend[at + 1] = uint8_t(d.pid);
      }
    } else {
      d.msg = m;
      d.sub_ids.assign(sub_ids.begin(), sub_ids.end());
      if (!transmit(c, d, false)) return;
    }
    if (qos) {
      d.msg = m;
      if (d.sub_ids.empty()) d.sub_ids.assign(sub_ids.begin(), sub_ids.end());
      s->data().inflight.push_back(std::move(d));
    }
    return;
  }
  Delivery d;
  d.msg = m;
  d.sub_ids.assign(sub_ids.begin(), sub_ids.end());
  d.qos = qos;
  d.retain = retain;
  if (!s->enqueue(std::move(d), opt_.max_queued)) ++stats_.dropped_queue_full;
}

bool Server::transmit(Conn* c, Delivery& d, bool dup) {
  // 5.0 server -> client Topic Alias: the first PUBLISH on a topic carries the
  // topic and a new alias, the next ones the alias alone [MQTT-3.3.2-12]. An
  // alias is recorded only once a packet carrying its topic was sent. When the
  // client's maximum is reached, further topics go out in full.
  uint16_t alias = 0;
  bool omit = false;
  if (c->aliases_out()) {
    auto& table = c->x->alias_out;
    auto it = table.find(d.msg->topic);
    if (it != table.end()) {
      alias = it->second;
      omit = true;
    } else if (table.size() < c->x->alias_out_max) {
      alias = uint16_t(table.size() + 1);
    }
  }
  scratch_.clear();
  encode_publish(scratch_, *d.msg, c->v5(), d.qos, d.retain, dup, d.pid, d.sub_ids, now(), alias,
                 omit);
  if (c->max_out && scratch_.size() > c->max_out) {
    ++stats_.dropped_too_large;
    return false;
  }
  if (alias && !omit) c->x->alias_out.emplace(d.msg->topic, alias);
  send_scratch(c);
  return true;
}

void Server::pump(Session* s) {
  Conn* c = s->conn;
  if (!c || !c->online()) return;
  while (!s->queue_empty() && backlog(c) < kWriteHigh) {
    const Delivery& f = s->d->queue.front();
    if (f.msg->expired(now())) {
      s->pop_front();
      ++stats_.dropped_expired;
      continue;
    }
    if (f.qos && s->inflight_size() >= c->window) break;
    Delivery d = s->pop_front();
    if (d.qos) {
      d.pid = s->alloc_pid();
      d.state = d.qos == 1 ? Delivery::WaitAck : Delivery::WaitRec;
      if (transmit(c, d, false)) s->data().inflight.push_back(std::move(d));
    } else {
      transmit(c, d, false);
    }
  }
  s->compact();
}

void Server::resume(Session* s) {
  Conn* c = s->conn;
  // Unacknowledged deliveries are sent again, PUBLISH with DUP, or PUBREL,
  // in their original order [MQTT-4.4.0-1].
  for (size_t i = 0; i < s->inflight_size();) {
    Delivery& d = s->d->inflight[i];
    if (d.state == Delivery::WaitComp) {
      scratch_.clear();
      mqtt::encode_pub_response({mqtt::PacketType::Pubrel, d.pid, 0, {}}, c->version, scratch_);
      send_scratch(c);
    } else if (!transmit(c, d, true)) {
      s->d->inflight.erase(s->d->inflight.begin() + long(i));
      continue;
    }
    ++i;
  }
  pump(s);
}

void Server::send_retained(Session* s, const std::string& filter, const SubOpts& o) {
  retained_.match(filter, [&](const MsgPtr& m) {
    if (opt_.acl && !opt_.acl->can_read(m->topic)) return;
    const uint32_t id = o.sub_id;
    // Retained messages are sent with RETAIN 1 [MQTT-3.3.1-8].
    deliver(s, m, std::min(m->qos, o.qos), true,
            id ? std::span<const uint32_t>(&id, 1) : std::span<const uint32_t>(), nullptr);
  });
}

}  // namespace broker
