// What the nodes share over their links: subscription routes (refcounted
// here, so a peer hears of a filter once), publications (sent once to each
// peer with a matching route, delivered there locally and never forwarded
// again), the retained store (every update to every peer, the whole set after
// a link comes up, newest version wins) and, at link up, the session list
// (a client id left on both sides of a broken link keeps only its newest
// session).
#include <cinttypes>
#include <cstdio>

#include "broker/cluster.hpp"
#include "broker/cluster_internal.hpp"
#include "broker/server.hpp"
#include "mqtt/codec.hpp"

namespace broker {

namespace {
constexpr size_t kSyncSlice = 256 * 1024;  // retained replication: refill below this backlog
constexpr size_t kSessionsPerFrame = 1000;

// The k-th (0-based) set bit of m.
unsigned nth_bit(uint64_t m, unsigned k) {
  for (;;) {
    const unsigned b = unsigned(__builtin_ctzll(m));
    if (k-- == 0) return b;
    m &= m - 1;
  }
}
}  // namespace

void Cluster::link_up(Peer& p) {
  Link* l = p.link;
  for (const auto& [full, n] : srv_.route_refs_) {
    frame_.clear();
    peer::encode_route(frame_, peer::Type::RouteAdd, full);
    send(l, frame_);
  }
  l->syncing = true;
  l->sync_tombs = false;
  l->cursor.clear();
  pump_sync(l);
  send_sessions(p);
}

// The retained set, a slice at a time as the link drains: the set may be
// large, the link's queue stays bounded.
void Cluster::pump_sync(Link* l) {
  if (!l->syncing || l->state != Link::Up) return;
  const auto& msgs = srv_.retained_.messages();
  const auto& tombs = srv_.retained_.tombstones();
  const uint64_t t = now();
  while (backlog(l) < kSyncSlice) {
    peer::PublishView v;
    v.store = true;
    v.retain = true;
    if (!l->sync_tombs) {
      auto it = msgs.upper_bound(l->cursor);
      if (it == msgs.end()) {
        l->sync_tombs = true;
        l->cursor.clear();
        continue;
      }
      l->cursor = it->first;
      const Message& m = *it->second;
      if (m.expired(t)) continue;
      v = view_of(m, t, true);
      v.retain = true;
      v.seq = 0;  // not a publication from this node: no watermark
    } else {
      auto it = tombs.upper_bound(l->cursor);
      if (it == tombs.end()) {
        l->syncing = false;
        return;
      }
      l->cursor = it->first;
      v.topic = it->first;
      v.version = it->second;
    }
    frame_.clear();
    peer::encode(frame_, v);
    if (!send(l, frame_)) return;
  }
}

peer::PublishView Cluster::view_of(const Message& m, uint64_t t, bool store) const {
  peer::PublishView v;
  v.topic = m.topic;
  v.payload = m.payload;
  v.props = m.props.get();
  v.expiry_left_ms = m.expiry_ms ? uint32_t(m.expiry_ms > t ? m.expiry_ms - t : 1) : 0;
  v.seq = m.seq;
  v.qos = m.qos;
  v.retain = m.retain;
  v.store = store;
  v.version = m.rversion;
  return v;
}

void Cluster::route_changed(const std::string& full, bool added) {
  frame_.clear();
  peer::encode_route(frame_, added ? peer::Type::RouteAdd : peer::Type::RouteDel, full);
  broadcast(frame_);
  if (added) ++route_adds_;
}

void Cluster::on_route(Peer& p, bool add, std::span<const uint8_t> body) {
  std::string full;
  if (!peer::decode_route(body, full)) return close_link(p.link, "bad route");
  std::string_view group, inner = full;
  if (parse_shared(full, group, inner) == Share::Invalid || !mqtt::valid_topic_filter(inner))
    return close_link(p.link, "bad route filter");
  if (add)
    routes_.add(p.index, full);
  else
    routes_.remove(p.index, full);
}

size_t Cluster::forward(const Message& m, std::vector<GroupRef>& elsewhere) {
  if (!up_) return 0;
  const uint64_t t = now();
  if (m.expired(t)) return 0;
  // Shared groups with members on other nodes: one node per message serves
  // each, in turn (this node too, when it has members).
  assigned_.clear();
  const Mask plain = routes_.match(m.topic, [&](const RouteTable::Group& g) {
    const Mask cand = g.peers & up_;
    const bool local = srv_.trie_.find_group(g.filter, g.name) != nullptr;
    const unsigned n = unsigned(__builtin_popcountll(cand)) + (local ? 1 : 0);
    if (!n) return;
    const unsigned k = g.next++ % n;
    if (local && k == n - 1) return;  // ours this time: Server::route serves it
    assigned_.emplace_back(nth_bit(cand, k), GroupRef(g.filter, g.name));
    if (local) elsewhere.emplace_back(g.filter, g.name);
  }) & up_;
  // Retained: every node stores it (or deletes it).
  peer::PublishView v = view_of(m, t, m.retain);
  // Encoded once per variant; a peer with groups to serve gets its own frame.
  common_[0].clear();
  common_[1].clear();
  std::vector<std::pair<std::string, std::string>> groups;
  size_t delivering = 0;
  for (auto& p : peers_) {
    if (!p->link) continue;
    const Mask bit = Mask(1) << p->index;
    groups.clear();
    for (const auto& [idx, g] : assigned_)
      if (idx == p->index) groups.push_back(g);
    const bool deliver = (plain & bit) || !groups.empty();
    if (!deliver && !v.store) continue;
    v.deliver = deliver;
    std::vector<uint8_t>* frame = &common_[deliver];
    if (!groups.empty()) {
      v.groups = &groups;
      frame = &frame_;
      frame_.clear();
      peer::encode(frame_, v);
      v.groups = nullptr;
    } else if (frame->empty()) {
      peer::encode(*frame, v);
    }
    // Deliveries may be dropped when the link is full; retained updates are
    // state and are not (the link is closed instead when nothing drains).
    if (send(p->link, *frame, !v.store)) {
      ++st_.forwarded;
      delivering += deliver;
    }
  }
  return delivering;
}

bool Cluster::hold_suback(Conn* c, std::vector<uint8_t> suback,
                          std::vector<std::pair<std::string, SubOpts>> retained) {
  if (!up_ || stopping_) return false;
  const uint64_t token = kHoldBit | next_hold_++;
  SubHold& h = holds_[token];
  h.conn = c;
  h.suback = std::move(suback);
  h.retained = std::move(retained);
  h.waiting = up_;
  h.deadline_ms = now() + 3000;
  c->held = true;
  srv_.set_reading(c, false);
  frame_.clear();
  peer::encode_sync(frame_, peer::Type::Sync, token);
  broadcast(frame_);
  return true;
}

void Cluster::release_hold(uint64_t token) {
  auto it = holds_.find(token);
  if (it == holds_.end()) return;
  SubHold h = std::move(it->second);
  holds_.erase(it);
  Conn* c = h.conn;
  if (!c || !c->online()) return;
  c->held = false;
  srv_.send(c, h.suback);
  if (c->session)
    for (const auto& [f, o] : h.retained) srv_.send_retained(c->session, f, o);
  srv_.resume_input(c);
}

void Cluster::holds_tick(uint64_t t) {
  std::vector<uint64_t> due;
  for (const auto& [token, h] : holds_)
    if (!h.waiting || t >= h.deadline_ms) due.push_back(token);
  for (uint64_t token : due) release_hold(token);
}

std::shared_ptr<Message> Cluster::message_from(peer::WireMessage& w, uint16_t from) {
  auto m = std::make_shared<Message>();
  m->topic = std::move(w.topic);
  m->payload = std::move(w.payload);
  m->qos = w.qos;
  m->retain = w.retain;
  m->seq = w.seq;
  m->from = from;
  if (!w.props.empty()) m->take_properties(w.props, now());
  if (w.expiry_left_ms) m->expiry_ms = now() + w.expiry_left_ms;
  return m;
}

void Cluster::on_publish(Peer& p, std::span<const uint8_t> body) {
  peer::Publish f;
  if (!peer::decode(body, f) || !mqtt::valid_topic_name(f.msg.topic))
    return close_link(p.link, "bad Publish");
  ++st_.received;
  if (f.msg.seq > p.last_seq) p.last_seq = f.msg.seq;
  auto m = message_from(f.msg, uint16_t(p.index + 1));
  if (f.store) {
    srv_.saw_rversion(f.version);
    m->rversion = f.version;
    if (m->payload.empty())
      srv_.retained_.erase_versioned(m->topic, f.version);
    else
      srv_.retained_.set(m->topic, m);
  }
  // Local subscribers only, and only the shared groups this node was given:
  // a forwarded message is never forwarded again.
  if (f.deliver) srv_.route(m, &f.groups, true);
}

void Cluster::send_sessions(Peer& p) {
  peer::Sessions list;
  auto flush_list = [&]() {
    frame_.clear();
    peer::encode(frame_, list);
    send(p.link, frame_);
    list.entries.clear();
  };
  for (const auto& [id, s] : srv_.sessions_) {
    if (!s->cx || s->cx->moving) continue;
    list.entries.emplace_back(s->client_id, s->cx->ts);
    if (list.entries.size() == kSessionsPerFrame) flush_list();
  }
  if (!list.entries.empty()) flush_list();
}

// A client id with a session on both sides of a link that was down: the
// older one goes (its connection, if any, as if taken over).
void Cluster::on_sessions(Peer& p, std::span<const uint8_t> body) {
  peer::Sessions list;
  if (!peer::decode(body, list)) return close_link(p.link, "bad Sessions");
  for (const auto& [id, ts] : list.entries) {
    auto it = srv_.sessions_.find(id);
    if (it == srv_.sessions_.end() || claims_.count(id)) continue;
    Session* s = it->second.get();
    if (!s->cx || s->cx->moving) continue;
    if (s->cx->ts > ts || (s->cx->ts == ts && srv_.opt_.name > p.name)) continue;
    std::printf("cluster %s: client %s also has a newer session on %s: dropping ours\n",
                srv_.opt_.name.c_str(), id.c_str(), p.name.c_str());
    std::fflush(stdout);
    ++st_.takeovers;
    if (srv_.take_over(s)) {
      s->will.reset();  // the client is connected elsewhere
      srv_.destroy_session(s);
    }
  }
}

std::string Cluster::stats_line() const {
  std::string s;
  char buf[256];
  for (const auto& p : peers_) {
    std::snprintf(buf, sizeof buf, "%s%s %s", s.empty() ? "" : ", ", p->name.c_str(),
                  p->link ? "up" : "down");
    s += buf;
    if (p->downs) s += " (" + std::to_string(p->downs) + " downs)";
  }
  size_t dialing = 0;
  for (const auto& d : dialers_) dialing += d->link && d->link->state != Link::Up;
  std::snprintf(buf, sizeof buf,
                "%speers up %d/%zu, dialing %zu; forwarded %" PRIu64 ", received %" PRIu64
                ", dropped (link queue full) %" PRIu64 ", sessions moved in %" PRIu64
                " out %" PRIu64 ", auth failures %" PRIu64,
                s.empty() ? "" : "; ", __builtin_popcountll(up_), peers_.size(), dialing,
                st_.forwarded, st_.received, st_.dropped, st_.sessions_moved_in,
                st_.sessions_moved_out, st_.auth_failures);
  return s + buf;
}

}  // namespace broker
