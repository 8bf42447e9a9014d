// One client id, one session, cluster-wide. A CONNECT with a client id on
// node B claims it from every peer before CONNACK:
//   B -> all   Claim(id, client, ts, clean)
//   holder A   closes the client's connection there (5.0 DISCONNECT 0x8E,
//              will as for any takeover); with Clean Start drops the session,
//              else keeps it (still receiving) and answers Held + its
//              subscriptions; nodes without it answer None
//   B          subscribes a pending session to those filters, and waits until
//              every peer has its new routes (Sync/SyncAck), so nothing
//              published from then on misses B; then Commit to A
//   A -> B     SessionState (in-flight and queued messages, QoS 2 ids,
//              watermarks: what A had seen from each origin) and drops its copy
//   B          merges: A's messages first, then what reached the pending
//              session, minus publications A already had (watermarks);
//              CONNACK with Session Present
// Two connects of one client id racing on two nodes: the later Claim (ts,
// then node name) wins and the other connection is closed. Peers that are
// down are not waited for; every phase has a deadline.
#include <cstdio>

#include "broker/cluster.hpp"
#include "broker/cluster_internal.hpp"
#include "broker/server.hpp"
#include "mqtt/codec.hpp"

namespace broker {

namespace {
constexpr uint64_t kClaimMs = 3000;           // replies, then route sync
constexpr uint64_t kTransferMs = 5000;        // SessionState after Commit
constexpr uint64_t kMovingMs = 10000;         // holder: a hand-over not committed by then is off
constexpr size_t kMaxStateBytes = 16u << 20;  // a bigger session loses its newest queued messages
}  // namespace

bool Cluster::claim(Conn* c, mqtt::ConnectInfo& info) {
  if (!up_ || stopping_) return false;
  auto it = claims_.find(info.client_id);
  if (it != claims_.end()) {
    // The same client id again while its claim runs: the newer connection
    // takes the older one's place (which never got a CONNACK).
    Claim& cl = *it->second;
    if (cl.conn) {
      cl.conn->claiming = false;
      srv_.close(cl.conn);
    }
    cl.conn = c;
    cl.info = std::move(info);
    return true;
  }
  auto cl = std::make_unique<Claim>();
  cl->id = next_claim_++;
  if (next_claim_ == 0) next_claim_ = 1;
  cl->client_id = info.client_id;
  cl->ts = wall_ms();
  cl->clean = info.clean_start;
  cl->conn = c;
  cl->info = std::move(info);
  cl->waiting = up_;
  cl->deadline_ms = now() + kClaimMs;
  frame_.clear();
  peer::encode(frame_, peer::Claim{cl->id, cl->client_id, cl->ts, cl->clean});
  broadcast(frame_);
  claim_ids_[cl->id] = cl.get();
  claims_[cl->client_id] = std::move(cl);
  return true;
}

void Cluster::conn_closed(Conn* c) {
  for (auto& [id, cl] : claims_)
    if (cl->conn == c) cl->conn = nullptr;
  for (auto& [token, h] : holds_)
    if (h.conn == c) h.conn = nullptr;
}

void Cluster::abort_claim(Claim& c, const char* why) {
  srv_.log_debug("claim of %s abandoned: %s", c.client_id.c_str(), why);
  if (c.conn) {
    c.conn->claiming = false;
    srv_.close(c.conn);
  }
  if (c.pending && c.pending->d) {
    std::vector<std::string> filters;
    for (const auto& [f, o] : c.pending->d->subs) filters.push_back(f);
    for (const auto& f : filters) srv_.sub_erase(c.pending.get(), f);
  }
  claim_ids_.erase(c.id);
  claims_.erase(c.client_id);  // frees c
}

// ---- the holder's side

void Cluster::on_claim(Peer& p, std::span<const uint8_t> body) {
  peer::Claim c;
  if (!peer::decode(body, c)) return close_link(p.link, "bad Claim");
  peer::ClaimReply r;
  r.id = c.id;
  auto lc = claims_.find(c.client_id);
  if (lc != claims_.end()) {
    Claim& mine = *lc->second;
    const bool theirs_newer = c.ts > mine.ts || (c.ts == mine.ts && p.name > srv_.opt_.name);
    if (!theirs_newer) {
      r.status = peer::ClaimReply::Superseded;
      frame_.clear();
      peer::encode(frame_, r);
      send(p.link, frame_);
      return;
    }
    abort_claim(mine, "the client id connected again on another node");
  }
  auto it = srv_.sessions_.find(c.client_id);
  Session* s = it == srv_.sessions_.end() ? nullptr : it->second.get();
  if (s && s->conn) {
    ++st_.takeovers;
    if (!srv_.take_over(s)) s = nullptr;  // 5.0: DISCONNECT 0x8E; the will, as for any takeover
  }
  if (s && c.clean) {
    srv_.destroy_session(s);  // [MQTT-3.1.2-4]; a delayed will goes now
    s = nullptr;
  }
  if (s) {
    s->will.reset();  // the client is back before its Will Delay [MQTT-3.1.3-9]
    if (!s->cx) s->cx = std::make_unique<SessionCluster>();
    s->cx->moving = c.id;
    s->cx->moving_peer = p.index;
    s->cx->moving_until_ms = now() + kMovingMs;
    moving_[uint64_t(p.index) << 32 | c.id] = s->client_id;
    r.status = peer::ClaimReply::Held;
    r.ts = s->cx->ts;
    if (s->d)
      for (const auto& [f, o] : s->d->subs)
        r.subs.push_back(
            {f, o.qos, o.no_local, o.retain_as_published, o.retain_handling, o.sub_id});
  }
  frame_.clear();
  peer::encode(frame_, r);
  send(p.link, frame_);
}

void Cluster::on_commit(Peer& p, std::span<const uint8_t> body) {
  peer::Commit cm;
  if (!peer::decode(body, cm)) return close_link(p.link, "bad Commit");
  Session* s = nullptr;
  auto mv = moving_.find(uint64_t(p.index) << 32 | cm.id);
  if (mv != moving_.end()) {
    auto it = srv_.sessions_.find(mv->second);
    if (it != srv_.sessions_.end() && it->second->cx && it->second->cx->moving == cm.id &&
        it->second->cx->moving_peer == p.index)
      s = it->second.get();
    moving_.erase(mv);
  }
  if (cm.transfer) {
    peer::SessionState st;
    if (s) {
      st = export_session(*s, cm.id);
      ++st_.sessions_moved_out;
    } else {
      st.claim = cm.id;  // found = false: gone (expired, or back here meanwhile)
    }
    frame_.clear();
    peer::encode(frame_, st);
    send(p.link, frame_);
  }
  if (s) {
    s->will.reset();
    srv_.destroy_session(s);
  }
}

peer::SessionState Cluster::export_session(Session& s, uint32_t claim) {
  peer::SessionState st;
  st.claim = claim;
  st.found = true;
  st.expiry_s = s.expiry_s;
  st.ts = s.cx ? s.cx->ts : 0;
  st.next_pid = s.next_pid;
  st.v5 = s.v5;
  const uint64_t t = now();
  size_t bytes = 0;
  auto wire = [&](const Delivery& d) {
    peer::WireDelivery w;
    w.pid = d.pid;
    w.qos = d.qos;
    w.state = d.state;
    w.retain = d.retain;
    w.sub_ids = d.sub_ids;
    w.has_msg = d.msg != nullptr;
    if (const Message* m = d.msg.get()) {
      w.origin = m->from == 0               ? srv_.opt_.name
                 : m->from <= peers_.size() ? peers_[m->from - 1]->name
                                            : std::string();
      w.msg.topic = m->topic;
      w.msg.payload = m->payload;
      if (m->props) w.msg.props = *m->props;
      w.msg.expiry_left_ms = m->expiry_ms ? uint32_t(m->expiry_ms > t ? m->expiry_ms - t : 1) : 0;
      w.msg.seq = m->seq;
      w.msg.qos = m->qos;
      w.msg.retain = m->retain;
      bytes += m->topic.size() + m->payload.size();
    }
    bytes += 64;
    return w;
  };
  if (s.d) {
    for (const auto& d : s.d->inflight) st.inflight.push_back(wire(d));
    for (const auto& d : s.d->queue) {
      if (bytes > kMaxStateBytes) {  // bounded: the newest queued messages stay behind
        ++srv_.stats_.dropped_queue_full;
        continue;
      }
      st.queue.push_back(wire(d));
    }
    st.qos2_in.assign(s.d->qos2_in.begin(), s.d->qos2_in.end());
  }
  st.marks.push_back({srv_.opt_.name, incarnation_, local_seq_});
  for (const auto& p : peers_)
    if (p->incarnation) st.marks.push_back({p->name, p->incarnation, p->last_seq});
  return st;
}

// ---- the claimer's side

void Cluster::on_claim_reply(Peer& p, std::span<const uint8_t> body) {
  peer::ClaimReply r;
  if (!peer::decode(body, r)) return close_link(p.link, "bad ClaimReply");
  auto it = claim_ids_.find(r.id);
  if (it == claim_ids_.end()) return;  // ended meanwhile; a Held copy stays there
  Claim& c = *it->second;
  const Mask bit = Mask(1) << p.index;
  if (c.phase != Claim::Replies || !(c.waiting & bit)) return;
  c.waiting &= ~bit;
  if (r.status == peer::ClaimReply::Superseded) c.superseded = true;
  if (r.status == peer::ClaimReply::Held) {
    if (c.source < 0 || r.ts > c.source_ts) {  // the newest copy wins
      if (c.source >= 0) c.others |= Mask(1) << c.source;
      c.source = int(p.index);
      c.source_ts = r.ts;
      c.subs = std::move(r.subs);
    } else {
      c.others |= bit;
    }
  }
  if (!c.waiting) advance(c);
}

void Cluster::on_sync(Peer& p, bool ack, std::span<const uint8_t> body) {
  uint64_t token = 0;
  if (!peer::decode_sync(body, token)) return close_link(p.link, "bad Sync");
  if (!ack) {  // everything before it (our routes) is processed: say so
    frame_.clear();
    peer::encode_sync(frame_, peer::Type::SyncAck, token);
    send(p.link, frame_);
    return;
  }
  const Mask bit = Mask(1) << p.index;
  if (token & kHoldBit) {
    auto h = holds_.find(token);
    if (h == holds_.end() || !(h->second.waiting & bit)) return;
    h->second.waiting &= ~bit;
    if (!h->second.waiting) release_hold(token);
    return;
  }
  auto it = claim_ids_.find(uint32_t(token));
  if (it == claim_ids_.end()) return;
  Claim& c = *it->second;
  if (c.phase != Claim::Syncing || !(c.waiting & bit)) return;
  c.waiting &= ~bit;
  if (!c.waiting) advance(c);
}

void Cluster::advance(Claim& c) {
  if (c.phase == Claim::Replies) {
    if (c.superseded) return abort_claim(c, "a newer connection of the client id on another node");
    auto commit = [&](unsigned peer, bool transfer) {
      frame_.clear();
      peer::encode(frame_, peer::Commit{c.id, transfer});
      send_to(peer, frame_);
    };
    for (unsigned i = 0; i < RouteTable::kMaxPeers; ++i)
      if (c.others & (Mask(1) << i)) commit(i, false);  // older copies go
    const bool clean = c.conn ? c.info.clean_start : c.clean;
    if (c.source >= 0 && clean) {
      commit(unsigned(c.source), false);
      c.source = -1;
    }
    if (c.source < 0) return finish(c);
    // Subscribe here now, so what is published from now on reaches us.
    c.pending = std::make_unique<Session>();
    Session& s = *c.pending;
    s.client_id = c.client_id;
    s.serial = srv_.next_serial_++;
    s.cx = std::make_unique<SessionCluster>();
    const uint64_t adds = route_adds_;
    for (const auto& w : c.subs) {
      std::string_view group, inner = w.filter;
      if (parse_shared(w.filter, group, inner) == Share::Invalid ||
          !mqtt::valid_topic_filter(inner))
        continue;
      srv_.sub_set(&s, w.filter,
                   SubOpts{w.qos, w.no_local, w.retain_as_published, w.retain_handling, w.sub_id});
    }
    c.phase = Claim::Syncing;
    c.waiting = 0;
    if (route_adds_ != adds) {  // new routes: wait until every peer has them
      c.waiting = up_;
      frame_.clear();
      peer::encode_sync(frame_, peer::Type::Sync, c.id);
      broadcast(frame_);
      c.deadline_ms = now() + kClaimMs;
      if (c.waiting) return;
    }
  }
  if (c.phase == Claim::Syncing) {
    if (c.waiting) return;
    if (c.source < 0 || !peers_[unsigned(c.source)]->link) return finish(c);
    c.phase = Claim::Transfer;
    c.deadline_ms = now() + kTransferMs;
    frame_.clear();
    peer::encode(frame_, peer::Commit{c.id, true});
    send_to(unsigned(c.source), frame_);
  }
}

void Cluster::on_session_state(Peer& p, std::span<const uint8_t> body) {
  peer::SessionState st;
  if (!peer::decode(body, st)) return close_link(p.link, "bad SessionState");
  auto it = claim_ids_.find(st.claim);
  if (it == claim_ids_.end()) return;
  Claim& c = *it->second;
  if (c.phase != Claim::Transfer || c.source != int(p.index)) return;
  if (st.found && c.pending) {
    import_session(*c.pending, st);
    ++st_.sessions_moved_in;
  }
  finish(c);
}

void Cluster::import_session(Session& s, peer::SessionState& st) {
  s.expiry_s = st.expiry_s;
  s.next_pid = st.next_pid ? st.next_pid : 1;
  s.v5 = st.v5;
  s.cx->ts = st.ts;
  for (const auto& m : st.marks) {
    uint16_t from = 0;
    if (origin_index(m.node, m.incarnation, from)) s.cx->skip.emplace_back(from, m.seq);
  }
  SessionData& d = s.data();
  std::list<Delivery> here = std::move(d.queue);  // reached the pending session meanwhile
  d.queue.clear();
  d.queued_qos0 = 0;
  auto local = [&](peer::WireDelivery& w) {
    Delivery x;
    // Moved messages are not subject to the watermarks (from = unknown).
    if (w.has_msg) x.msg = message_from(w.msg, 0xFFFF);
    x.sub_ids = std::move(w.sub_ids);
    x.pid = w.pid;
    x.qos = w.qos;
    x.retain = w.retain;
    x.state = Delivery::State(w.state);
    return x;
  };
  for (auto& w : st.inflight) {
    Delivery x = local(w);
    if (x.state != Delivery::Queued && (x.msg || x.state == Delivery::WaitComp))
      d.inflight.push_back(std::move(x));
  }
  for (auto& w : st.queue) {
    Delivery x = local(w);
    if (x.msg && !s.enqueue(std::move(x), srv_.opt_.max_queued)) ++srv_.stats_.dropped_queue_full;
  }
  for (auto& x : here) {
    if (x.msg && s.cx->skips(*x.msg)) continue;  // A had it: already in what it sent
    if (!s.enqueue(std::move(x), srv_.opt_.max_queued)) ++srv_.stats_.dropped_queue_full;
  }
  d.qos2_in.insert(st.qos2_in.begin(), st.qos2_in.end());
}

void Cluster::finish(Claim& c) {
  Conn* conn = c.conn;
  std::unique_ptr<Session> pend = std::move(c.pending);
  mqtt::ConnectInfo info = std::move(c.info);
  const std::string id = c.client_id;
  claim_ids_.erase(c.id);
  claims_.erase(id);  // frees c
  if (pend) {
    auto it = srv_.sessions_.find(id);
    if (it != srv_.sessions_.end()) {  // a local copy too: the moved one is newer
      Session* old = it->second.get();
      if (srv_.take_over(old)) {
        old->will.reset();
        srv_.destroy_session(old);
      }
    }
    Session* s = pend.get();
    srv_.sessions_.emplace(std::string_view(s->client_id), std::move(pend));
    if (!conn) {  // the client left meanwhile: the session waits offline, as after a detach
      if (s->expiry_s == 0) {
        srv_.destroy_session(s);
      } else if (s->expiry_s != Session::kNeverExpires) {
        s->expires_at_ms = srv_.now() + uint64_t(s->expiry_s) * 1000;
        srv_.note_deadline(s->expires_at_ms);
      }
    }
  }
  if (!conn) return;
  conn->claiming = false;
  srv_.finish_connect(conn, info);
  if (conn->state == Conn::Connected) srv_.resume_input(conn);
}

void Cluster::peer_gone(unsigned index) {
  const Mask bit = Mask(1) << index;
  std::vector<uint64_t> released;
  for (auto& [token, h] : holds_)
    if ((h.waiting &= ~bit) == 0) released.push_back(token);
  for (uint64_t token : released) release_hold(token);
  std::vector<uint32_t> touched;
  for (auto& [id, c] : claims_) {
    c->others &= ~bit;
    if (c->source == int(index) && c->phase == Claim::Replies) c->source = -1;
    if ((c->waiting & bit) || (c->phase == Claim::Transfer && c->source == int(index)))
      touched.push_back(c->id);
    c->waiting &= ~bit;
  }
  for (uint32_t id : touched) {
    auto it = claim_ids_.find(id);
    if (it == claim_ids_.end()) continue;
    Claim& c = *it->second;
    if (c.phase == Claim::Transfer)
      finish(c);  // the session moves with its subscriptions only
    else if (!c.waiting)
      advance(c);
  }
  for (auto it = moving_.begin(); it != moving_.end();) {
    if (it->first >> 32 != index) {
      ++it;
      continue;
    }
    auto s = srv_.sessions_.find(it->second);
    if (s != srv_.sessions_.end() && s->second->cx && s->second->cx->moving == uint32_t(it->first))
      s->second->cx->moving = 0;  // it stays here
    it = moving_.erase(it);
  }
}

void Cluster::claims_tick(uint64_t t) {
  holds_tick(t);
  std::vector<uint32_t> due;
  for (auto& [id, c] : claims_)
    if (t >= c->deadline_ms) due.push_back(c->id);
  for (uint32_t id : due) {
    auto it = claim_ids_.find(id);
    if (it == claim_ids_.end()) continue;
    Claim& c = *it->second;
    srv_.log_debug("claim of %s: peers did not answer in time", c.client_id.c_str());
    if (c.phase == Claim::Transfer) {
      finish(c);
    } else {
      c.waiting = 0;
      advance(c);
    }
  }
  for (auto it = moving_.begin(); it != moving_.end();) {
    auto s = srv_.sessions_.find(it->second);
    const SessionCluster* cx = s == srv_.sessions_.end() ? nullptr : s->second->cx.get();
    if (!cx || cx->moving != uint32_t(it->first)) {
      it = moving_.erase(it);  // no longer moving for this claim
    } else if (cx->moving_until_ms <= t) {
      s->second->cx->moving = 0;  // never committed: it stays here
      it = moving_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace broker
