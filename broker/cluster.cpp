// Cluster links: the peer listener, dialers with back-off, the handshake
// (Hello + HMAC proof both ways), one active link per peer, framing, the
// write path (try_write first, then one uv_write owning its bytes), pings
// and timeouts. Frames after the handshake go to cluster_sync.cpp and
// cluster_session.cpp.
#include "broker/cluster.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "broker/cluster_internal.hpp"
#include "broker/server.hpp"
#include "proxy/proxy_protocol.hpp"

namespace broker {

namespace {
constexpr uint64_t kTickMs = 100;
constexpr uint64_t kHandshakeMs = 5000;  // TCP connect + Hello + Auth
constexpr uint64_t kPingMs = 1000;       // send a Ping after this long without sending
constexpr uint64_t kDeadMs = 5000;       // nothing received for this long: link dead
constexpr uint32_t kMaxFrame = 64u << 20;
constexpr uint64_t kRetireMs = 3000;  // a duplicate link is closed by then anyway
}  // namespace

namespace {
// Owns its bytes until on_write runs, whatever the status.
struct LinkWrite {
  uv_write_t req;
  std::vector<uint8_t> bytes;
};

bool parse_addr(const std::string& hp, sockaddr_storage& out) {
  const size_t colon = hp.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  std::string host = hp.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  const long port = std::strtol(hp.c_str() + colon + 1, &end, 10);
  if (*end || port < 1 || port > 65535) return false;
  if (uv_ip4_addr(host.c_str(), int(port), reinterpret_cast<sockaddr_in*>(&out)) == 0) return true;
  return uv_ip6_addr(host.c_str(), int(port), reinterpret_cast<sockaddr_in6*>(&out)) == 0;
}
}  // namespace

Cluster* Cluster::of(uv_handle_t* h) {
  return static_cast<Server*>(h->loop->data)->cluster_.get();
}

Cluster::Cluster(Server& srv, ClusterOptions o) : srv_(srv), opt_(std::move(o)), loop_(srv.loop_) {
  peer::random_bytes(reinterpret_cast<uint8_t*>(&incarnation_), sizeof incarnation_);
}

Cluster::~Cluster() = default;

uint64_t Cluster::now() const {
  return uv_now(loop_);
}

bool Cluster::start(std::string& err) {
  sockaddr_storage sa{};
  if (!parse_addr(opt_.bind, sa)) {
    err = "bad --cluster-bind address " + opt_.bind + " (HOST:PORT)";
    return false;
  }
  for (const auto& p : opt_.peers) {
    auto d = std::make_unique<Dialer>();
    d->addr = p;
    if (!parse_addr(p, d->sa)) {
      err = "bad --peers address " + p + " (HOST:PORT)";
      return false;
    }
    dialers_.push_back(std::move(d));
  }
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  handles_.insert(reinterpret_cast<uv_handle_t*>(&listener_));
  listening_ = true;
  int rc = uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&sa), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, on_connection);
  if (rc != 0) {
    err = "cannot listen on --cluster-bind " + opt_.bind + ": " + uv_strerror(rc);
    return false;
  }
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_timer_start(&timer_, on_timer, 0, kTickMs);
  return true;
}

std::string Cluster::describe() const {
  std::string s = "peer links on " + opt_.bind + ", peers";
  for (const auto& d : dialers_) s += " " + d->addr;
  if (dialers_.empty()) s += " (none: accepting only)";
  return s;
}

void Cluster::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  }
  for (auto& l : links_) close_link(l.get(), "shutting down");
  for (auto& [id, c] : claims_) c->conn = nullptr;  // the Server closes every connection
}

Cluster::Peer* Cluster::peer_named(const std::string& name) {
  for (auto& p : peers_)
    if (p->name == name) return p.get();
  if (peers_.size() >= RouteTable::kMaxPeers) return nullptr;
  auto p = std::make_unique<Peer>();
  p->name = name;
  p->index = unsigned(peers_.size());
  peers_.push_back(std::move(p));
  return peers_.back().get();
}

bool Cluster::origin_index(const std::string& node, uint64_t inc, uint16_t& out) const {
  if (node == srv_.opt_.name) {
    out = 0;
    return inc == incarnation_;
  }
  for (const auto& p : peers_)
    if (p->name == node && p->incarnation == inc) {
      out = uint16_t(p->index + 1);
      return true;
    }
  return false;
}

// ---- link lifecycle

Cluster::Link* Cluster::new_link(bool dialed) {
  auto l = std::make_unique<Link>();
  uv_tcp_init(loop_, &l->tcp);
  l->tcp.data = l.get();
  l->dialed = dialed;
  l->since_ms = l->last_rx_ms = l->last_tx_ms = now();
  peer::random_bytes(l->my_nonce.data(), l->my_nonce.size());
  handles_.insert(reinterpret_cast<uv_handle_t*>(&l->tcp));
  links_.push_back(std::move(l));
  return links_.back().get();
}

void Cluster::dial(Dialer& d) {
  Link* l = new_link(true);
  l->dialer = &d;
  l->addr = d.addr;
  d.link = l;
  const int rc =
      uv_tcp_connect(&l->creq, &l->tcp, reinterpret_cast<const sockaddr*>(&d.sa), on_connect);
  if (rc != 0) close_link(l, uv_strerror(rc));
}

void Cluster::on_connect(uv_connect_t* req, int status) {
  Link* l = static_cast<Link*>(req->handle->data);
  Cluster* cl = of(reinterpret_cast<uv_handle_t*>(req->handle));
  if (l->state == Link::Closing) return;
  if (status < 0) {
    cl->close_link(l, uv_strerror(status));
    return;
  }
  cl->start_handshake(l);
}

void Cluster::on_connection(uv_stream_t* s, int status) {
  Cluster* cl = of(reinterpret_cast<uv_handle_t*>(s));
  if (status < 0 || cl->stopping_) return;
  Link* l = cl->new_link(false);
  if (uv_accept(s, reinterpret_cast<uv_stream_t*>(&l->tcp)) != 0)
    return cl->close_link(l, "accept failed");
  sockaddr_storage peer{};
  int len = sizeof peer;
  uv_tcp_getpeername(&l->tcp, reinterpret_cast<sockaddr*>(&peer), &len);
  l->addr = proxy::format_address(peer);
  cl->start_handshake(l);
}

// Connected (dialed or accepted): read, and say Hello at once.
void Cluster::start_handshake(Link* l) {
  uv_tcp_nodelay(&l->tcp, 1);
  l->state = Link::Handshake;
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&l->tcp), on_alloc, on_read) != 0)
    return close_link(l, "read failed");
  send_hello(l);
  srv_.flush();
}

void Cluster::send_hello(Link* l) {
  peer::Hello h;
  h.name = srv_.opt_.name;
  h.incarnation = incarnation_;
  h.nonce = l->my_nonce;
  frame_.clear();
  peer::encode(frame_, h);
  send(l, frame_);
}

void Cluster::close_link(Link* l, const char* why) {
  if (l->state == Link::Closing) return;
  link_down(l, why);
  l->state = Link::Closing;
  uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp), on_closed);
}

// Everything that depended on the link ends here, once.
void Cluster::link_down(Link* l, const char* why) {
  if (Dialer* d = l->dialer) {
    d->link = nullptr;
    d->next_ms = now() + d->backoff_ms;
    d->backoff_ms = std::min(d->backoff_ms * 2, kMaxBackoffMs);
    l->dialer = nullptr;
  }
  Peer* p = l->peer;
  if (p && p->link != l) {  // a retiring link: the peer stays up over the other one
    l->peer = nullptr;
    if (p->link && p->link->paused) {
      p->link->paused = false;
      if (uv_read_start(reinterpret_cast<uv_stream_t*>(&p->link->tcp), on_alloc, on_read) != 0)
        close_link(p->link, "read failed");
    }
    return;
  }
  if (!p) {
    // A handshake that fails matters only when there is no other link to
    // that peer (both ends dial; one of the two links is closed on purpose).
    bool other = false;
    for (const auto& x : peers_) other |= x->name == l->remote_name && x->link;
    if (l->state == Link::Handshake && !stopping_ && l->got_hello && !l->quiet && !other) {
      std::printf("cluster %s: link %s (%s) closed before it was up: %s\n", srv_.opt_.name.c_str(),
                  l->remote_name.c_str(), l->addr.c_str(), why);
      std::fflush(stdout);
    }
    return;
  }
  l->peer = nullptr;
  p->link = nullptr;
  ++p->downs;
  up_ &= ~(Mask(1) << p->index);
  routes_.remove_peer(p->index);
  if (!l->quiet) {
    std::printf("cluster %s: link to %s (%s) down: %s\n", srv_.opt_.name.c_str(), p->name.c_str(),
                l->addr.c_str(), why);
    std::fflush(stdout);
  }
  for (auto& d : dialers_)
    if (d->parked == int(p->index)) {  // its link was this one: dial again soon
      d->parked = -1;
      d->next_ms = std::min(d->next_ms, now() + kMinBackoffMs);
    }
  if (!stopping_) peer_gone(p->index);
}

void Cluster::on_closed(uv_handle_t* h) {
  Cluster* cl = of(h);
  Link* l = static_cast<Link*>(h->data);
  cl->handles_.erase(h);
  auto it = std::find_if(cl->links_.begin(), cl->links_.end(),
                         [l](const std::unique_ptr<Link>& x) { return x.get() == l; });
  cl->dirty_.erase(std::remove(cl->dirty_.begin(), cl->dirty_.end(), l), cl->dirty_.end());
  if (it != cl->links_.end()) cl->links_.erase(it);  // frees the Link: the last callback ran
}

// ---- reading

void Cluster::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Server* srv = static_cast<Server*>(h->loop->data);
  *buf = uv_buf_init(reinterpret_cast<char*>(srv->slab_.get()), Server::kSlab);
}

void Cluster::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  Cluster* cl = of(reinterpret_cast<uv_handle_t*>(s));
  Link* l = static_cast<Link*>(s->data);
  if (n < 0) {
    cl->close_link(l, n == UV_EOF ? "closed by peer" : uv_strerror(int(n)));
  } else if (n > 0) {
    l->last_rx_ms = cl->now();
    cl->feed(l, {reinterpret_cast<const uint8_t*>(buf->base), size_t(n)});
  }
  cl->srv_.flush();
}

void Cluster::feed(Link* l, std::span<const uint8_t> data) {
  if (l->state == Link::Closing) return;
  if (!l->in.empty()) {
    l->in.insert(l->in.end(), data.begin(), data.end());
    const size_t used = consume(l, l->in);
    if (l->state == Link::Closing) return;
    l->in.erase(l->in.begin(), l->in.begin() + long(used));
    if (l->in.empty()) l->in.shrink_to_fit();  // idle links hold no buffer
    return;
  }
  const size_t used = consume(l, data);
  if (used < data.size() && l->state != Link::Closing)
    l->in.assign(data.begin() + long(used), data.end());
}

size_t Cluster::consume(Link* l, std::span<const uint8_t> d) {
  size_t pos = 0;
  while (pos < d.size() && l->state != Link::Closing) {
    const uint32_t cap = l->verified ? kMaxFrame : peer::kMaxHandshakeFrame;
    const peer::Frame f = peer::next_frame(d.subspan(pos), cap);
    if (f.status == peer::Status::NeedMore) break;
    if (f.status == peer::Status::Error) {
      close_link(l, "malformed frame");
      break;
    }
    if (l->state == Link::Up)
      on_frame(l, f.type, f.body);
    else
      on_handshake(l, f.type, f.body);
    pos += f.size;
  }
  return pos;
}

void Cluster::on_handshake(Link* l, peer::Type t, std::span<const uint8_t> body) {
  if (t == peer::Type::Hello && !l->got_hello) {
    peer::Hello h;
    if (!peer::decode(body, h) || h.version != peer::kVersion)
      return close_link(l, "bad Hello (another protocol or version?)");
    if (h.name == srv_.opt_.name) {
      if (l->dialer && l->remote_incarnation == 0 && h.incarnation == incarnation_) {
        // Our own address in --peers (the same list on every node): not dialed again.
        l->dialer->next_ms = UINT64_MAX;
        l->dialer->parked = -2;
        l->dialer->link = nullptr;
        l->dialer = nullptr;
        return close_link(l, "our own address");
      }
      return close_link(l, "the peer has our --name (two nodes with the same name?)");
    }
    l->got_hello = true;
    l->remote_name = h.name;
    l->remote_incarnation = h.incarnation;
    l->their_nonce = h.nonce;
    peer::Auth a;
    a.proof =
        peer::make_proof(opt_.secret, l->dialed, srv_.opt_.name, h.name, h.nonce, l->my_nonce);
    frame_.clear();
    peer::encode(frame_, a);
    send(l, frame_);
    return;
  }
  if (t == peer::Type::Auth && l->got_hello && !l->verified) {
    peer::Auth a;
    const peer::Proof want = peer::make_proof(opt_.secret, !l->dialed, l->remote_name,
                                              srv_.opt_.name, l->my_nonce, l->their_nonce);
    if (!peer::decode(body, a) || !peer::same_proof(a.proof, want)) {
      ++st_.auth_failures;
      std::printf("cluster %s: authentication failed on the link %s %s (wrong --cluster-secret?)\n",
                  srv_.opt_.name.c_str(), l->dialed ? "to" : "from", l->addr.c_str());
      std::fflush(stdout);
      l->got_hello = false;  // no second log line from link_down
      return close_link(l, "authentication failed");
    }
    l->verified = true;
    return authenticated(l);
  }
  close_link(l, "unexpected frame before authentication");
}

// Both proofs checked. One link per peer: the one dialed by the node whose
// name is smaller wins, whichever came first, so both ends keep the same one.
void Cluster::authenticated(Link* l) {
  Peer* p = peer_named(l->remote_name);
  if (!p) return close_link(l, "too many peers");
  if (Link* e = p->link) {
    if (e->dialed != l->dialed && l->remote_incarnation == p->incarnation && !e->retiring) {
      // Both ends dialed each other: keep the link dialed by the smaller name.
      const std::string& me = srv_.opt_.name;
      const bool mine_wins = me < p->name;
      Link* keep = (l->dialed == mine_wins) ? l : e;
      Link* drop = keep == l ? e : l;
      if (l->dialer) l->dialer->backoff_ms = kMinBackoffMs;
      if (drop->dialer) {  // park its dialer: the peer is reached over the other link
        drop->dialer->parked = int(p->index);
        drop->dialer->link = nullptr;
        drop->dialer->next_ms = UINT64_MAX;
        drop->dialer = nullptr;
      }
      l->state = Link::Up;
      l->peer = p;
      p->link = keep;
      drop->retiring = true;
      drop->quiet = true;
      drop->retire_until_ms = now() + kRetireMs;
      frame_.clear();
      peer::encode_empty(frame_, peer::Type::Retire);
      send(drop, frame_);
      if (drop->got_retire) return close_link(drop, "retired");  // the peer was first
      keep->paused = true;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&keep->tcp));
      return;
    }
    // A second link in the same direction, or from a restarted peer: the old
    // one is dead to the other end. Down, then up over the new one.
    close_link(e, "replaced by a new link from the same peer");
  }
  l->state = Link::Up;
  l->peer = p;
  if (l->dialer) {
    l->dialer->backoff_ms = kMinBackoffMs;
    l->dialer->parked = -1;
  }
  p->link = l;
  p->addr = l->addr;
  p->up_since_ms = now();
  if (p->incarnation != l->remote_incarnation) p->last_seq = 0;
  p->incarnation = l->remote_incarnation;
  up_ |= Mask(1) << p->index;
  std::printf("cluster %s: link to %s (%s) up\n", srv_.opt_.name.c_str(), p->name.c_str(),
              l->addr.c_str());
  std::fflush(stdout);
  link_up(*p);
}

void Cluster::on_frame(Link* l, peer::Type t, std::span<const uint8_t> body) {
  Peer& p = *l->peer;
  switch (t) {
    case peer::Type::Ping:
      return;
    case peer::Type::Retire:
      // The peer moves to the other link; it may be up here yet or not.
      l->got_retire = true;
      if (l->retiring) close_link(l, "retired");
      return;
    case peer::Type::RouteAdd:
    case peer::Type::RouteDel:
      return on_route(p, t == peer::Type::RouteAdd, body);
    case peer::Type::Publish:
      return on_publish(p, body);
    case peer::Type::Claim:
      return on_claim(p, body);
    case peer::Type::ClaimReply:
      return on_claim_reply(p, body);
    case peer::Type::Commit:
      return on_commit(p, body);
    case peer::Type::SessionState:
      return on_session_state(p, body);
    case peer::Type::Sync:
    case peer::Type::SyncAck:
      return on_sync(p, t == peer::Type::SyncAck, body);
    case peer::Type::Sessions:
      return on_sessions(p, body);
    case peer::Type::Hello:
    case peer::Type::Auth:
      break;
  }
  close_link(l, "unexpected frame");
}

// ---- writing

size_t Cluster::backlog(const Link* l) const {
  return l->out.size() + l->writing;
}

bool Cluster::send(Link* l, std::span<const uint8_t> frame, bool droppable) {
  if (l->state == Link::Closing || l->state == Link::Connecting) return false;
  const size_t b = backlog(l);
  if (droppable && b > opt_.queue_bytes) {
    ++st_.dropped;
    return false;
  }
  if (b + frame.size() > 4 * opt_.queue_bytes + kMaxFrame) {
    // Control traffic alone went past every bound: the peer does not read.
    ++st_.links_closed_slow;
    close_link(l, "peer too slow (link queue full)");
    return false;
  }
  l->out.insert(l->out.end(), frame.begin(), frame.end());
  l->last_tx_ms = now();
  if (!l->dirty) {
    l->dirty = true;
    dirty_.push_back(l);
  }
  return true;
}

bool Cluster::send_to(unsigned peer, std::span<const uint8_t> frame, bool droppable) {
  if (peer >= peers_.size() || !peers_[peer]->link) return false;
  return send(peers_[peer]->link, frame, droppable);
}

void Cluster::broadcast(std::span<const uint8_t> frame) {
  for (auto& p : peers_)
    if (p->link) send(p->link, frame);
}

void Cluster::flush() {
  for (size_t i = 0; i < dirty_.size(); ++i) flush_link(dirty_[i]);
  dirty_.clear();
}

void Cluster::flush_link(Link* l) {
  l->dirty = false;
  if (l->state == Link::Closing || l->writing || l->out.empty()) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(&l->tcp);
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(l->out.data()), unsigned(l->out.size()));
  int r = uv_try_write(stream, &b, 1);
  if (r == UV_EAGAIN) r = 0;
  if (r < 0) return close_link(l, uv_strerror(r));
  if (size_t(r) == l->out.size()) {
    l->out.clear();
    l->out.shrink_to_fit();
    pump_sync(l);
    if (!l->out.empty() && !l->dirty) {
      l->dirty = true;
      dirty_.push_back(l);
    }
    return;
  }
  auto* w = new LinkWrite;
  w->bytes = std::move(l->out);
  l->out = {};
  w->bytes.erase(w->bytes.begin(), w->bytes.begin() + r);
  l->writing = w->bytes.size();
  b = uv_buf_init(reinterpret_cast<char*>(w->bytes.data()), unsigned(w->bytes.size()));
  if (uv_write(&w->req, stream, &b, 1, on_write) != 0) {
    delete w;
    l->writing = 0;
    close_link(l, "write failed");
  }
}

void Cluster::on_write(uv_write_t* req, int status) {
  auto* w = reinterpret_cast<LinkWrite*>(req);
  Link* l = static_cast<Link*>(req->handle->data);
  Cluster* cl = of(reinterpret_cast<uv_handle_t*>(req->handle));
  delete w;
  if (l->state == Link::Closing) return;  // cancelled by uv_close; the Link is still alive
  l->writing = 0;
  if (status < 0) {
    cl->close_link(l, uv_strerror(status));
  } else {
    cl->pump_sync(l);
    cl->flush_link(l);
  }
  cl->srv_.flush();
}

// ---- timer: dialing, handshake and liveness deadlines, claims

void Cluster::on_timer(uv_timer_t* t) {
  Cluster* cl = of(reinterpret_cast<uv_handle_t*>(t));
  cl->tick();
  cl->srv_.flush();
}

void Cluster::tick() {
  const uint64_t t = now();
  for (auto& d : dialers_)
    if (!d->link && d->parked < 0 && t >= d->next_ms) dial(*d);
  for (size_t i = 0; i < links_.size(); ++i) {
    Link* l = links_[i].get();
    if (l->state == Link::Closing) continue;
    if (l->state != Link::Up) {
      if (t - l->since_ms > kHandshakeMs) close_link(l, "handshake timeout");
      continue;
    }
    if (l->retiring && t >= l->retire_until_ms) {
      close_link(l, "retire timeout");
      continue;
    }
    if (!l->paused && t - l->last_rx_ms > kDeadMs) {
      close_link(l, "no traffic for 5 s");
      continue;
    }
    if (t - l->last_tx_ms >= kPingMs) {
      frame_.clear();
      peer::encode_empty(frame_, peer::Type::Ping);
      send(l, frame_);
    }
  }
  claims_tick(t);
}

}  // namespace broker
