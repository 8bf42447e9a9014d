// Server I/O: listener, per-connection read path (per-loop slab), write path
// (uv_try_write first, queue only the remainder), timers, signals, shutdown.
#include "broker/server.hpp"

#include <arpa/inet.h>
#include <time.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "proxy/proxy_protocol.hpp"

namespace broker {
namespace {

constexpr size_t kWriteHigh = 256 * 1024;   // above: deliveries wait in the session queue
constexpr size_t kReadPause = 1024 * 1024;  // above: stop reading this client
constexpr size_t kReadResume = 256 * 1024;  // below: read again
constexpr uint64_t kDrainTimeoutMs = 5000;  // waiting to flush a final packet
constexpr uint64_t kTickMs = 250;

// Owns its bytes until on_write runs [DESIGN: a write request owns its bytes].
struct WriteReq {
  uv_write_t req;
  std::vector<uint8_t> bytes;
};

Server* server_of(uv_handle_t* h) {
  return static_cast<Server*>(h->loop->data);
}

}  // namespace

uint64_t wall_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

Server::Server(Options o) : opt_(std::move(o)), slab_(new uint8_t[kSlab]) {
  loop_ = new uv_loop_t;
  uv_loop_init(loop_);
  loop_->data = this;
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the name: this node's version salt
  for (unsigned char ch : opt_.name) h = (h ^ ch) * 1099511628211ull;
  version_salt_ = h & 0xFFF;
}

Server::~Server() {
  sessions_.clear();
  uv_loop_close(loop_);
  delete loop_;
}

void Server::log_debug(const char* fmt, ...) {
  if (!opt_.debug) return;
  va_list ap;
  va_start(ap, fmt);
  std::fputs("debug: ", stdout);
  std::vfprintf(stdout, fmt, ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  va_end(ap);
}

int Server::run() {
  sockaddr_storage addr{};
  int rc = opt_.bind.find(':') != std::string::npos
               ? uv_ip6_addr(opt_.bind.c_str(), opt_.port, reinterpret_cast<sockaddr_in6*>(&addr))
               : uv_ip4_addr(opt_.bind.c_str(), opt_.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) {
    std::fprintf(stderr, "mqttlb-broker: bad --bind address %s: %s\n", opt_.bind.c_str(),
                 uv_strerror(rc));
    return 2;
  }
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  ++open_handles_;
  // Everything (peer links, timers, signals) is set up before the client
  // port listens: a client that can connect finds a complete broker.
  if (opt_.cluster) {
    cluster_ = std::make_unique<Cluster>(*this, *opt_.cluster);
    retained_.keep_tombstones(true);
    std::string err;
    if (!cluster_->start(err)) {
      std::fprintf(stderr, "mqttlb-broker: %s\n", err.c_str());
      cluster_->shutdown();
      uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
      uv_run(loop_, UV_RUN_DEFAULT);
      return 1;
    }
  }
  uv_timer_init(loop_, &tick_timer_);
  uv_timer_start(&tick_timer_, on_tick, kTickMs, kTickMs);
  uv_signal_init(loop_, &sigterm_);
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_init(loop_, &sigint_);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  rc = uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 4096, on_connection);
  if (rc != 0) {
    std::fprintf(stderr, "mqttlb-broker: cannot listen on %s:%d: %s\n", opt_.bind.c_str(),
                 opt_.port, uv_strerror(rc));
    stopping_ = true;
    if (cluster_) cluster_->shutdown();
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&listener_), reinterpret_cast<uv_handle_t*>(&tick_timer_),
          reinterpret_cast<uv_handle_t*>(&sigterm_), reinterpret_cast<uv_handle_t*>(&sigint_)})
      uv_close(h, nullptr);
    uv_run(loop_, UV_RUN_DEFAULT);
    return 1;
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);

  std::printf("mqttlb-broker %s listening on %s\n", opt_.name.c_str(),
              proxy::format_address(bound).c_str());
  if (cluster_) std::printf("cluster %s: %s\n", opt_.name.c_str(), cluster_->describe().c_str());
  std::fflush(stdout);
  last_stats_ms_ = now();
  uv_run(loop_, UV_RUN_DEFAULT);
  std::printf(
      "mqttlb-broker %s stopped (dropped: queue full %llu, too large %llu, expired %llu; "
      "connections rejected %llu)\n",
      opt_.name.c_str(), (unsigned long long)stats_.dropped_queue_full,
      (unsigned long long)stats_.dropped_too_large, (unsigned long long)stats_.dropped_expired,
      (unsigned long long)stats_.connections_rejected);
  if (cluster_) std::printf("cluster %s: %s\n", opt_.name.c_str(), cluster_->stats_line().c_str());
  std::fflush(stdout);
  return 0;
}

void Server::print_stats() {
  size_t online = 0;
  for (const auto& [id, s] : sessions_) online += s->conn != nullptr;
  std::printf(
      "stats %s: clients %zu, sessions %zu, subscriptions %zu, retained %zu; dropped: "
      "queue full %llu, too large %llu, expired %llu%s%s\n",
      opt_.name.c_str(), online, sessions_.size(), trie_.size(), retained_.size(),
      (unsigned long long)stats_.dropped_queue_full, (unsigned long long)stats_.dropped_too_large,
      (unsigned long long)stats_.dropped_expired, cluster_ ? "; cluster: " : "",
      cluster_ ? cluster_->stats_line().c_str() : "");
  std::fflush(stdout);
}

void Server::resume_input(Conn* c) {
  set_reading(c, true);
  if (c->in) {
    auto buf = std::move(c->in);  // feed() keeps any unfinished tail again
    feed(c, *buf);
  }
}

void Server::on_signal(uv_signal_t* s, int) {
  server_of(reinterpret_cast<uv_handle_t*>(s))->shutdown();
}

void Server::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  if (cluster_) cluster_->shutdown();
  for_each_conn([this](Conn* c) {
    if (c->v5() && c->online()) {  // best effort: tell 5.0 clients why
      scratch_.clear();
      mqtt::encode_disconnect({uint8_t(mqtt::Reason::ServerShuttingDown), {}}, c->version,
                              scratch_);
      send_scratch(c);
    }
  });
  flush();
  for_each_conn([this](Conn* c) { close(c); });
}

void Server::on_connection(uv_stream_t* l, int status) {
  Server* srv = server_of(reinterpret_cast<uv_handle_t*>(l));
  if (status < 0) return;
  Conn* c = new Conn;
  uv_tcp_init(srv->loop_, &c->tcp);
  c->tcp.data = c;
  c->since_ms = srv->now();
  if (uv_accept(l, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0 || srv->stopping_) {
    srv->close(c);
    return;
  }
  if (srv->conn_count_ >= srv->opt_.max_connections) {
    ++srv->stats_.connections_rejected;
    srv->log_debug("rejected connection: --max-connections %zu reached", srv->opt_.max_connections);
    srv->close(c);
    return;
  }
  c->counted = true;
  ++srv->conn_count_;
  uv_tcp_nodelay(&c->tcp, 1);
  c->state = srv->opt_.proxy_protocol ? Conn::AwaitProxy : Conn::AwaitConnect;
  if (srv->opt_.debug) {
    sockaddr_storage peer{};
    int len = sizeof peer;
    uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&peer), &len);
    c->x = std::make_unique<ConnExtras>();
    c->x->peer = proxy::format_address(peer);
  }
  srv->set_reading(c, true);
}

void Server::set_reading(Conn* c, bool on) {
  if (on == c->reading || c->state >= Conn::Draining) return;
  auto* s = reinterpret_cast<uv_stream_t*>(&c->tcp);
  if (on) {
    if (uv_read_start(s, on_alloc, on_read) != 0) return close(c);
  } else {
    uv_read_stop(s);
  }
  c->reading = on;
}

void Server::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  // One slab per loop: read_cb consumes it before the next alloc_cb.
  Server* srv = server_of(h);
  *buf = uv_buf_init(reinterpret_cast<char*>(srv->slab_.get()), kSlab);
}

void Server::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  Server* srv = server_of(reinterpret_cast<uv_handle_t*>(s));
  Conn* c = static_cast<Conn*>(s->data);
  if (n < 0) {
    srv->close(c);  // EOF or error without DISCONNECT: abnormal, the will applies
  } else if (n > 0) {
    srv->feed(c, {reinterpret_cast<const uint8_t*>(buf->base), size_t(n)});
  }
  srv->flush();
}

void Server::feed(Conn* c, std::span<const uint8_t> data) {
  if (c->state >= Conn::Draining) return;
  if (c->in) {
    std::vector<uint8_t>& in = *c->in;
    in.insert(in.end(), data.begin(), data.end());
    const size_t used = consume(c, in);
    if (c->state >= Conn::Draining) {
      c->in.reset();
      return;
    }
    in.erase(in.begin(), in.begin() + long(used));
    if (in.empty()) c->in.reset();  // idle: hold no buffer
    return;
  }
  const size_t used = consume(c, data);
  if (used < data.size() && c->state < Conn::Draining)
    c->in = std::make_unique<std::vector<uint8_t>>(data.begin() + long(used), data.end());
}

size_t Server::consume(Conn* c, std::span<const uint8_t> d) {
  size_t pos = 0;
  while (pos < d.size() && c->state < Conn::Draining && c->state != Conn::AwaitClaim && !c->held) {
    const auto rest = d.subspan(pos);
    if (c->state == Conn::AwaitProxy) {
      const proxy::Header h = proxy::parse(rest);
      if (h.status == proxy::Status::NeedMore) break;
      if (h.status != proxy::Status::Done) {
        log_debug("closing: bad or missing PROXY header");
        close(c);
        break;
      }
      if (c->x && !h.local) c->x->peer = proxy::format_address(h.src);
      pos += h.length;
      c->state = Conn::AwaitConnect;
      continue;
    }
    const mqtt::FrameResult fr = mqtt::peek_frame(rest);
    if (fr.status == mqtt::DecodeStatus::NeedMore) break;
    if (fr.status == mqtt::DecodeStatus::Malformed) {
      fail(c, mqtt::Reason::MalformedPacket, "malformed fixed header");
      break;
    }
    const size_t total = fr.header.total_length();
    if (total > opt_.max_packet_size) {
      // Above the Maximum Packet Size we announced: 0x95, then close (5.0 section 3.2.2.3.6).
      fail(c, mqtt::Reason::PacketTooLarge, "packet larger than Maximum Packet Size");
      break;
    }
    if (rest.size() < total) break;
    on_packet(c, fr.header, rest.first(total));
    pos += total;
  }
  return pos;
}

size_t Server::backlog(const Conn* c) const {
  return c->out ? c->out->pending.size() + c->out->writing : 0;
}

void Server::send(Conn* c, std::span<const uint8_t> bytes) {
  if (c->state == Conn::Closing || bytes.empty()) return;
  if (!c->out) c->out = std::make_unique<OutQ>();
  OutQ& o = *c->out;
  o.pending.insert(o.pending.end(), bytes.begin(), bytes.end());
  if (!o.dirty) {
    o.dirty = true;
    dirty_.push_back(c);
  }
  if (c->reading && c->state == Conn::Connected && backlog(c) > kReadPause) set_reading(c, false);
}

// Writes everything sent during this callback: one try_write per connection.
void Server::flush() {
  for (size_t i = 0; i < dirty_.size(); ++i) flush_conn(dirty_[i]);
  dirty_.clear();
  if (cluster_) cluster_->flush();
}

void Server::flush_conn(Conn* c) {
  OutQ* o = c->out.get();
  if (!o) return;
  o->dirty = false;
  if (c->state == Conn::Closing || o->writing || o->pending.empty()) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(o->pending.data()), unsigned(o->pending.size()));
  int r = uv_try_write(stream, &b, 1);
  if (r == UV_EAGAIN) r = 0;
  if (r < 0) return close(c);
  if (size_t(r) == o->pending.size()) {
    c->out.reset();
    if (c->state == Conn::Draining) return close(c);
    if (c->online() && !c->reading) set_reading(c, true);
    // All written without a write callback: what waits in the session queue
    // goes now (on_write does the same when a uv_write completes).
    if (c->online() && c->session && !c->session->queue_empty()) pump(c->session);
    return;
  }
  auto* w = new WriteReq;
  w->bytes = std::move(o->pending);
  o->pending = {};
  w->bytes.erase(w->bytes.begin(), w->bytes.begin() + r);
  o->writing = w->bytes.size();
  b = uv_buf_init(reinterpret_cast<char*>(w->bytes.data()), unsigned(w->bytes.size()));
  if (uv_write(&w->req, stream, &b, 1, on_write) != 0) {
    delete w;
    o->writing = 0;
    close(c);
  }
}

void Server::on_write(uv_write_t* req, int status) {
  auto* w = reinterpret_cast<WriteReq*>(req);
  Conn* c = static_cast<Conn*>(req->handle->data);
  Server* srv = server_of(reinterpret_cast<uv_handle_t*>(req->handle));
  delete w;
  if (c->state == Conn::Closing) return;  // cancelled by uv_close; Conn still alive
  if (status < 0) {
    srv->close(c);
    srv->flush();
    return;
  }
  c->out->writing = 0;
  if (!c->out->pending.empty()) {
    srv->flush_conn(c);
  } else {
    c->out.reset();
    if (c->state == Conn::Draining) {
      srv->close(c);
      srv->flush();
      return;
    }
  }
  if (c->online()) {
    if (!c->reading && srv->backlog(c) < kReadResume) srv->set_reading(c, true);
    if (c->session) srv->pump(c->session);
  }
  srv->flush();
}

void Server::drain_close(Conn* c) {
  if (c->state >= Conn::Draining) return;
  set_reading(c, false);
  c->state = Conn::Draining;
  c->since_ms = now();
  if (backlog(c) == 0) close(c);  // else flush_conn/on_write closes once written
}

void Server::close(Conn* c) {
  if (c->state == Conn::Closing) return;
  c->state = Conn::Closing;
  c->reading = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
}

void Server::on_closed(uv_handle_t* h) {
  Conn* c = static_cast<Conn*>(h->data);
  Server* srv = server_of(h);
  if (c->counted) --srv->conn_count_;
  if ((c->claiming || c->held) && srv->cluster_) srv->cluster_->conn_closed(c);
  srv->detach(c);  // the session outlives the connection, or ends here
  delete c;
  srv->flush();
}

void Server::on_tick(uv_timer_t* t) {
  Server* srv = server_of(reinterpret_cast<uv_handle_t*>(t));
  srv->tick();
  srv->flush();
}

void Server::tick() {
  const uint64_t t = now();
  if (opt_.stats_s && t - last_stats_ms_ >= uint64_t(opt_.stats_s) * 1000) {
    last_stats_ms_ = t;
    print_stats();
  }
  for_each_conn([&](Conn* c) {
    switch (c->state) {
      case Conn::AwaitProxy:
      case Conn::AwaitConnect:
        if (t - c->since_ms > opt_.connect_timeout_ms) close(c);  // no CONNECT in time
        break;
      case Conn::Connected:
        // The server disconnects after 1.5 x Keep Alive of silence [MQTT-3.1.2-24].
        if (c->keep_alive && t - c->since_ms > uint64_t(c->keep_alive) * 1500)
          fail(c, mqtt::Reason::KeepAliveTimeout, "keep alive timeout");
        break;
      case Conn::AwaitClaim:  // the cluster ends every claim within seconds
        break;
      case Conn::Draining:
        if (t - c->since_ms > kDrainTimeoutMs) close(c);
        break;
      case Conn::Closing:
        break;
    }
  });
  if (t < next_deadline_ms_) return;
  // Delayed wills and expired offline sessions. Collected first: publishing and
  // destroying must not run while iterating the map.
  std::vector<Session*> wills, expired;
  next_deadline_ms_ = UINT64_MAX;
  for (auto& [id, s] : sessions_) {
    if (s->conn) continue;
    if (s->expires_at_ms && t >= s->expires_at_ms) {
      expired.push_back(s.get());
      continue;
    }
    if (s->will && t >= s->will->due_ms)
      wills.push_back(s.get());
    else if (s->will)
      next_deadline_ms_ = std::min(next_deadline_ms_, s->will->due_ms);
    if (s->expires_at_ms) next_deadline_ms_ = std::min(next_deadline_ms_, s->expires_at_ms);
  }
  for (Session* s : wills) {
    auto w = std::move(s->will);
    publish_will(w->will, s->serial);
  }
  for (Session* s : expired) {
    log_debug("session expired: %s", s->client_id.c_str());
    destroy_session(s);
  }
}

}  // namespace broker
