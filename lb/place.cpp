#include "lb/place.hpp"

#include <algorithm>

#include "lb/clock.hpp"
#include "lb/log.hpp"
#include "mqtt/frame.hpp"
#include "net/tls_transport.hpp"
#include "net/ws_transport.hpp"
#include "proxy/proxy_protocol.hpp"

namespace lb {

namespace {

// Per-connection warnings: at most one line per second each, all workers.
LogLimiter g_attempt_log(1000);

bool local_shortage(int uv_err) {
  return uv_err == UV_EMFILE || uv_err == UV_ENFILE || uv_err == UV_ENOBUFS || uv_err == UV_ENOMEM;
}

// splitmix64: jitter only, no security role.
uint64_t next_rand(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

PlaceStage::PlaceStage(PlaceHost& host, std::shared_ptr<const Snapshot> snap, PlaceRequest req,
                       uint64_t jitter_seed)
    : host_(host), snap_(std::move(snap)), req_(std::move(req)), rng_(jitter_seed) {
  tried_.assign(snap_->backends.size(), 0);
  if (req_.budget) req_.budget->charge(req_.bytes.capacity());
}

PlaceStage::~PlaceStage() {
  drop_attempt();
  if (req_.budget) req_.budget->release(req_.bytes.capacity());
}

void PlaceStage::start() {
  next();
}

int PlaceStage::choose(bool& retry_same) {
  const Snapshot& s = *snap_;
  const int64_t now = steady_ms();
  std::vector<Candidate> c(s.backends.size());
  bool untried = false;
  uint32_t tier = UINT32_MAX;
  for (size_t i = 0; i < c.size(); ++i) {
    const auto& b = s.backends[i];
    c[i].name = b.cfg.name;
    c[i].weight = b.cfg.weight * b.state->status->weight_factor(now);
    c[i].active = b.state->active.load(std::memory_order_relaxed);
    c[i].eligible = b.state->status->accepts_new() && (!req_.pool || (*req_.pool)[i]);
    if (c[i].eligible) tier = std::min(tier, b.cfg.tier);
  }
  // SRV priorities (lb/srv_plan.hpp): only the lowest tier with a healthy
  // backend for this client; a higher tier is a failover, as if drained.
  for (size_t i = 0; i < c.size(); ++i) {
    c[i].eligible = c[i].eligible && s.backends[i].cfg.tier == tier;
    untried |= c[i].eligible && tried_[i] == 0;
  }
  // Untried backends first; when every healthy one was tried, the same ones
  // again (after a back-off): a storm on the only healthy broker must not be
  // refused just because its first connect timed out.
  retry_same = !untried;
  if (untried)
    for (size_t i = 0; i < c.size(); ++i) c[i].eligible = c[i].eligible && tried_[i] == 0;
  if (attempts_ == 0 && req_.affinity && !req_.client_id.empty()) {
    affinity_looked_ = true;
    affinity_backend_ = req_.affinity->get(req_.key, now);
    if (affinity_backend_) {
      for (size_t i = 0; i < c.size(); ++i)
        if (c[i].eligible && s.backends[i].state->name_hash == *affinity_backend_)
          return static_cast<int>(i);
    }
  }
  // An empty client id has no affinity; the session id spreads consistent-hash keys.
  std::string spread;
  std::string_view key = req_.client_id;
  if (key.empty()) {
    spread = std::to_string(req_.session_id);
    key = spread;
  }
  return s.balancer->pick(c, key);
}

uint64_t PlaceStage::backoff_ms(int same_tries) {
  uint64_t base = snap_->cfg.balance.retry_backoff_ms;
  if (base == 0) return 0;
  uint64_t ms = std::min<uint64_t>(base << std::min(same_tries - 1, 5), 5000);
  // +-25 % jitter: clients refused together must not come back together.
  uint64_t span = ms / 2 + 1;
  return ms - ms / 4 + next_rand(rng_) % span;
}

void PlaceStage::next() {
  if (static_cast<uint32_t>(attempts_) > snap_->cfg.balance.retries) {
    st_ = State::Done;
    return host_.place_failed(only_busy_ && attempts_ > 0 ? Reject::BackendBusy
                                                          : Reject::NoBackend);
  }
  bool retry_same = false;
  int i = choose(retry_same);
  if (i < 0) {
    st_ = State::Done;
    return host_.place_failed(Reject::NoBackend);
  }
  cur_ = i;
  count_ = BackendCount(snap_->backends[i].state);
  if (retry_same && tried_[i] > 0) {
    uint64_t ms = backoff_ms(tried_[i]);
    if (ms > 0) {
      st_ = State::Backoff;
      host_.arm_timer(ms);
      return;
    }
  }
  begin();
}

void PlaceStage::begin() {
  ++attempts_;
  ++tried_[cur_];
  const conf::Limits& lim = snap_->cfg.limits;
  BackendState& b = *count_.get();
  const size_t lanes = req_.workers == 0 ? 1 : req_.workers;
  uint32_t slots = std::max<uint32_t>(1, lim.backend_max_connecting / lanes);
  uint32_t queue = static_cast<uint32_t>(lim.backend_queue / lanes);
  lane_ = &host_.lane(b);
  switch (lane_->take(*this, slots, queue)) {
    case GateLane::Take::Granted:
      slot_ = true;
      return connect();
    case GateLane::Take::Queued:
      st_ = State::Queued;
      host_.arm_timer(lim.backend_queue_timeout_ms);
      return;
    case GateLane::Take::Full:
      lane_ = nullptr;
      return fail(AttemptFail::QueueFull);
  }
}

void PlaceStage::on_slot() {
  slot_ = true;
  host_.disarm_timer();
  connect();
}

void PlaceStage::connect() {
  const RuntimeBackend& rb = snap_->backends[cur_];
  st_ = State::Connecting;
  int err = 0;
  t_ = host_.connect_backend(rb, err);
  if (!t_) {
    if (local_shortage(err)) {
      // Our shortage, not the broker's fault: counted as such, not retried.
      uint64_t skipped = 0;
      if (g_attempt_log.allow(steady_ms(), skipped))
        logf(LogLevel::Warn,
             "backend %s: cannot open a socket: %s; client refused (%llu similar lines "
             "suppressed)",
             rb.cfg.name.c_str(), uv_strerror(err), static_cast<unsigned long long>(skipped));
      drop_attempt();
      st_ = State::Done;
      return host_.place_failed(Reject::LocalResources);
    }
    return fail(AttemptFail::Refused, err);
  }
  host_.arm_timer(snap_->cfg.balance.backend_connect_timeout_ms);
}

void PlaceStage::on_backend_connect(net::Transport* t, int status) {
  if (t != t_ || st_ != State::Connecting) return;
  if (status != 0)
    return fail(status == net::TlsTransport::kTlsFailed ? AttemptFail::Tls
                : status == net::WsTransport::kWsFailed ? AttemptFail::Protocol
                                                        : AttemptFail::Refused,
                status);
  const RuntimeBackend& rb = snap_->backends[cur_];
  std::vector<uint8_t> header;
  // Over TLS the header went first, as the preamble; over WebSocket, before its request.
  if (!rb.cfg.tls && !req_.proxy_in_transport) {
    if (rb.cfg.proxy_protocol == conf::ProxyProtocol::V1)
      proxy::append_v1(header, req_.peer, req_.local);
    if (rb.cfg.proxy_protocol == conf::ProxyProtocol::V2) {
      if (req_.tls.version.empty())
        proxy::append_v2(header, req_.peer, req_.local);
      else
        proxy::append_v2(header, req_.peer, req_.local, req_.tls);
    }
  }
  // The client's bytes exactly as received: never re-encoded.
  if ((!header.empty() && t_->write(header.data(), header.size()) != 0) ||
      t_->write(req_.bytes.data(), req_.bytes.size()) != 0)
    return fail(AttemptFail::Closed);
  st_ = State::AwaitFirstPacket;
  host_.arm_timer(snap_->cfg.limits.backend_connack_timeout_ms);
  t_->start_read();
}

void PlaceStage::on_backend_read(net::Transport* t, const uint8_t* data, size_t len) {
  if (t != t_ || st_ != State::AwaitFirstPacket) return;
  in_.insert(in_.end(), data, data + len);
  mqtt::FrameResult f = mqtt::peek_frame(in_);
  if (f.status == mqtt::DecodeStatus::Malformed) return fail(AttemptFail::Protocol);
  if (f.status == mqtt::DecodeStatus::NeedMore) return;
  const size_t total = f.header.total_length();
  if (total > kMaxFirstPacket) return fail(AttemptFail::Protocol);
  if (in_.size() < total) return;
  const uint8_t type = f.header.type();
  const bool v5 = req_.version == mqtt::Version::V5;
  if (type == 2 && f.header.remaining_length >= 2) {
    uint8_t code = in_[f.header.header_length + 1];
    bool ok = v5 ? code < 0x80 : code == 0;
    return answered(ok ? Placement::Answer::Accepted : Placement::Answer::Refused, code);
  }
  if (type == 15 && v5 && req_.auth_method)  // AUTH: enhanced authentication goes on
    return answered(Placement::Answer::Authenticating, 0);
  fail(AttemptFail::Protocol);  // [MQTT-3.2.0-1] the first packet must be CONNACK
}

void PlaceStage::on_backend_closed(net::Transport* t, int err) {
  if (t != t_) return;
  if (st_ == State::Connecting)
    return fail(err == net::TlsTransport::kTlsFailed ? AttemptFail::Tls : AttemptFail::Refused,
                err);
  if (st_ == State::AwaitFirstPacket) fail(AttemptFail::Closed, err);
}

void PlaceStage::on_timer() {
  switch (st_) {
    case State::Backoff:
      return begin();
    case State::Queued:
      return fail(AttemptFail::QueueTimeout);
    case State::Connecting:
      return fail(AttemptFail::ConnectTimeout);
    case State::AwaitFirstPacket:
      return fail(AttemptFail::ConnackTimeout);
    default:
      return;
  }
}

void PlaceStage::fail(AttemptFail why, int uv_err) {
  const RuntimeBackend& rb = snap_->backends[cur_];
  rb.state->metrics.attempt_failed(why);
  if (why != AttemptFail::QueueFull && why != AttemptFail::QueueTimeout) only_busy_ = false;
  uint64_t skipped = 0;
  if (g_attempt_log.allow(steady_ms(), skipped)) {
    std::string detail = t_ ? t_->error_detail() : std::string();
    if (detail.empty() && uv_err != 0 && uv_err != UV_EOF) detail = uv_strerror(uv_err);
    logf(LogLevel::Warn,
         "backend %s: attempt %d failed: %s%s%s; %s (%llu similar lines suppressed)",
         rb.cfg.name.c_str(), attempts_, to_string(why), detail.empty() ? "" : ": ", detail.c_str(),
         static_cast<uint32_t>(attempts_) > snap_->cfg.balance.retries ? "giving up"
                                                                       : "trying again",
         static_cast<unsigned long long>(skipped));
  }
  drop_attempt();
  next();
}

void PlaceStage::drop_attempt() {
  host_.disarm_timer();
  if (lane_) {
    if (slot_)
      lane_->release();  // may grant a waiter of another session, synchronously
    else
      lane_->cancel(*this);
  }
  lane_ = nullptr;
  slot_ = false;
  if (t_) host_.retire(t_);
  t_ = nullptr;
  std::vector<uint8_t>().swap(in_);
  count_.reset();
}

void PlaceStage::answered(Placement::Answer a, uint8_t code) {
  host_.disarm_timer();
  // The connect step is over: the broker accepted the connection and answered.
  if (lane_ && slot_) lane_->release();
  lane_ = nullptr;
  slot_ = false;
  const RuntimeBackend& rb = snap_->backends[cur_];
  if (a != Placement::Answer::Authenticating) rb.state->connacks->count(code);
  Placement p;
  p.backend = t_;
  p.count = std::move(count_);
  p.rb = &rb;
  p.to_client = std::move(in_);
  p.answer = a;
  p.code = code;
  p.attempts = attempts_;
  p.forwarded = req_.bytes.size();
  using A = Placement::Affinity;
  if (affinity_looked_)
    p.affinity = !affinity_backend_                          ? A::Miss
                 : *affinity_backend_ == rb.state->name_hash ? A::Hit
                                                             : A::Replaced;
  t_ = nullptr;
  st_ = State::Done;
  host_.placed(std::move(p));  // last action: the host may destroy this stage
}

}  // namespace lb
