#include "lb/store_redis.hpp"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "lb/clock.hpp"
#include "lb/log.hpp"
#include "lb/store_codec.hpp"

namespace lb {

StoreMetrics::StoreMetrics(prometheus::Registry& reg) {
  using namespace prometheus;
  up = &BuildGauge()
            .Name("mqttlb_affinity_store_up")
            .Help("1 while the shared affinity store (Redis) is connected and subscribed")
            .Register(reg)
            .Add({});
  queue_length = &BuildGauge()
                      .Name("mqttlb_affinity_store_queue_length")
                      .Help("Placements waiting to be written to the store")
                      .Register(reg)
                      .Add({});
  auto& errors = BuildCounter()
                     .Name("mqttlb_affinity_store_errors_total")
                     .Help("Affinity store failures, by kind")
                     .Register(reg);
  err_connect = &errors.Add({{"kind", "connect"}});
  err_lost = &errors.Add({{"kind", "connection_lost"}});
  err_timeout = &errors.Add({{"kind", "timeout"}});
  err_reply = &errors.Add({{"kind", "error_reply"}});
  auto& dropped = BuildCounter()
                      .Name("mqttlb_affinity_store_dropped_total")
                      .Help("Placements not written to the store (the local table has them)")
                      .Register(reg);
  dropped_queue = &dropped.Add({{"reason", "queue_full"}});
  dropped_outage = &dropped.Add({{"reason", "outage_buffer_full"}});
  writes = &BuildCounter()
                .Name("mqttlb_affinity_store_writes_total")
                .Help("Placements written to the store (acknowledged)")
                .Register(reg)
                .Add({});
  auto& msgs = BuildCounter()
                   .Name("mqttlb_affinity_store_messages_total")
                   .Help("Placement messages on the store's channel, by direction")
                   .Register(reg);
  published = &msgs.Add({{"direction", "published"}});
  received = &msgs.Add({{"direction", "received"}});
  invalid = &msgs.Add({{"direction", "invalid"}});
  resyncs = &BuildCounter()
                 .Name("mqttlb_affinity_store_resyncs_total")
                 .Help("Full reads of the shared table (at start and after each reconnect)")
                 .Register(reg)
                 .Add({});
  resync_entries = &BuildCounter()
                        .Name("mqttlb_affinity_store_resync_entries_total")
                        .Help("Entries read back from the store into the local table")
                        .Register(reg)
                        .Add({});
  remote_takeovers =
      &BuildCounter()
           .Name("mqttlb_remote_takeovers_total")
           .Help("Sessions other replicas closed because a client connected through this one")
           .Register(reg)
           .Add({});
}

namespace {

// What a command's reply is for (the privdata of hiredis callbacks).
enum class Op : uintptr_t { Setup, Ping, Set, Publish, Scan, Mget };

void* op(Op o) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(o));
}

constexpr uint32_t kPingEveryMs = 1000;
constexpr uint32_t kTickMs = 50;
constexpr uint32_t kFirstBackoffMs = 100;

}  // namespace

struct RedisStore::Impl {
  Impl(const conf::AffinityStore& c, uint32_t ttl, uint64_t rmax, StoreSink& s, StoreMetrics& m)
      : cfg(c), ttl_s(ttl), resync_max(rmax), sink(s), metrics(m) {
    std::random_device rd;
    replica = (uint64_t{rd()} << 32) ^ rd();
    if (replica == 0) replica = 1;
    chan = store::channel(cfg.key_prefix);
    pattern = store::scan_pattern(cfg.key_prefix);
  }

  const conf::AffinityStore cfg;
  std::atomic<uint32_t> ttl_s;
  const uint64_t resync_max;
  StoreSink& sink;
  StoreMetrics& metrics;
  uint64_t replica = 0;
  std::string chan, pattern;

  // --- shared with placed() (any thread) ---
  struct Placed {
    ClientKey key;
    uint64_t backend;
  };
  std::mutex mu;
  std::vector<Placed> inbox;  // at most cfg.queue entries
  bool open = false;          // the loop takes work (guarded by mu)
  bool stop_asked = false;

  // --- loop thread only ---
  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t tick;
  std::thread th;
  enum class State : uint8_t { Down, Connecting, Up } state = State::Down;
  redisAsyncContext* cmd = nullptr;
  redisAsyncContext* sub = nullptr;
  bool cmd_ready = false, sub_ready = false;
  bool teardown_due = false;  // free the contexts outside hiredis callbacks
  // Commands on `cmd` whose replies are outstanding, oldest first (Redis
  // answers in order). A SET not acknowledged when Redis is declared down
  // goes back to `outage`, to be written again.
  struct Sent {
    int64_t ms;
    bool set = false;
    ClientKey key;
    uint64_t backend = 0;
  };
  std::deque<Sent> sent;
  int64_t connect_started_ms = 0;  // Connecting
  int64_t next_attempt_ms = 0;     // Down
  int64_t last_ping_ms = 0;
  uint32_t backoff_ms = kFirstBackoffMs;
  bool degraded = false;  // an outage was logged; the recovery is logged once too
  // Placements made while Redis was away, written once it is back (bounded by cfg.queue).
  std::unordered_map<ClientKey, uint64_t, ClientKeyHash> outage;
  // Resynchronisation (SCAN + MGET, one step in flight).
  bool resyncing = false, resync_waiting = false;
  std::string cursor = "0";
  std::vector<ClientKey> mget_keys;
  uint64_t resync_seen = 0;
  int64_t next_resync_ms = 0;

  // ---- thread and handles ----

  bool start(std::string& err) {
    if (uv_loop_init(&loop) != 0) {
      err = "affinity store: cannot create its loop";
      return false;
    }
    uv_async_init(&loop, &wake, [](uv_async_t* a) { static_cast<Impl*>(a->data)->on_wake(); });
    wake.data = this;
    uv_timer_init(&loop, &tick);
    tick.data = this;
    uv_timer_start(
        &tick, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->on_tick(); }, 0, kTickMs);
    {
      std::lock_guard<std::mutex> g(mu);
      open = true;
    }
    metrics.up->Set(0);
    th = std::thread([this] {
      uv_run(&loop, UV_RUN_DEFAULT);
      uv_loop_close(&loop);
    });
    return true;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> g(mu);
      if (!open) return;
      open = false;
      stop_asked = true;
    }
    uv_async_send(&wake);
    if (th.joinable()) th.join();
    metrics.up->Set(0);
  }

  void on_wake() {
    bool stopping;
    {
      std::lock_guard<std::mutex> g(mu);
      stopping = stop_asked;
    }
    if (stopping) {
      // Not inside a hiredis callback: the contexts can be freed now; their
      // poll handles close in this loop before it ends.
      free_contexts();
      uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
      return;
    }
    drain_inbox();
  }

  void on_tick() {
    const int64_t now = steady_ms();
    if (teardown_due) free_contexts();
    switch (state) {
      case State::Down:
        if (now >= next_attempt_ms) connect();
        break;
      case State::Connecting:
        if (now - connect_started_ms > cfg.timeout_ms) fail(metrics.err_connect, "no connection");
        break;
      case State::Up:
        if (!sent.empty() && now - sent.front().ms > cfg.timeout_ms) {
          fail(metrics.err_timeout, "no reply in time");
          break;
        }
        if (sent.empty() && now - last_ping_ms >= kPingEveryMs) {
          last_ping_ms = now;
          command(Op::Ping, {"PING"});
        }
        if (resyncing && !resync_waiting && now >= next_resync_ms) scan_step();
        break;
    }
    drain_inbox();
    std::lock_guard<std::mutex> g(mu);
    metrics.queue_length->Set(static_cast<double>(inbox.size() + outage.size()));
  }

  // ---- connections ----

  redisAsyncContext* open_context() {
    redisAsyncContext* ac = redisAsyncConnect(cfg.url.host.c_str(), cfg.url.port);
    if (!ac) return nullptr;
    if (ac->err || redisLibuvAttach(ac, &loop) != REDIS_OK) {
      redisAsyncFree(ac);
      return nullptr;
    }
    ac->data = this;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
  }

  // First command of each connection (once `cmd`/`sub` hold it, so that its
  // reply is accounted for in `sent`).
  void auth(redisAsyncContext* ac) {
    if (cfg.url.password.empty()) return;
    redisCallbackFn* fn = ac == sub ? on_sub : on_reply;  // a refusal counts on either
    if (cfg.url.user.empty())
      argv(ac, Op::Setup, {"AUTH", cfg.url.password}, fn);
    else
      argv(ac, Op::Setup, {"AUTH", cfg.url.user, cfg.url.password}, fn);
  }

  void connect() {
    state = State::Connecting;
    sent.clear();
    connect_started_ms = steady_ms();
    cmd = open_context();
    sub = cmd ? open_context() : nullptr;
    if (!cmd || !sub) return fail(metrics.err_connect, "cannot create a connection");
    auth(cmd);
    auth(sub);
    if (cfg.url.db != 0) command(Op::Setup, {"SELECT", std::to_string(cfg.url.db)});
    command(Op::Ping, {"PING"});  // its PONG: the command connection is usable
    // (SELECT does not apply to pub/sub: channels are global to the server.)
    argv(sub, Op::Setup, {"SUBSCRIBE", chan}, on_sub);
  }

  static Impl* of(const redisAsyncContext* ac) { return static_cast<Impl*>(ac->data); }

  static void on_connect(const redisAsyncContext* ac, int status) {
    Impl* self = of(ac);
    if (status == REDIS_OK) return;  // usable once PING / SUBSCRIBE answer
    // hiredis frees `ac` after this returns: forget it, never free it.
    self->forget(ac);
    self->fail(self->metrics.err_connect, ac->errstr);
  }

  static void on_disconnect(const redisAsyncContext* ac, int status) {
    Impl* self = of(ac);
    const bool ours = ac == self->cmd || ac == self->sub;
    self->forget(ac);  // being freed by hiredis
    if (ours && status != REDIS_OK) self->fail(self->metrics.err_lost, ac->errstr);
  }

  void forget(const redisAsyncContext* ac) {
    if (ac == cmd) cmd = nullptr;
    if (ac == sub) sub = nullptr;
  }

  // Redis is away: count it, log the outage once, schedule a reconnect. The
  // contexts are freed on the next tick (never inside a hiredis callback).
  void fail(prometheus::Counter* why, const char* detail) {
    if (state == State::Down) return;
    why->Increment();
    if (!degraded) {
      degraded = true;
      logf(LogLevel::Warn,
           "affinity store: redis at %s:%u unavailable (%s); serving from the local table, "
           "reconnecting with back-off",
           cfg.url.host.c_str(), cfg.url.port, detail);
    }
    state = State::Down;
    metrics.up->Set(0);
    next_attempt_ms = steady_ms() + backoff_ms;
    backoff_ms = std::min<uint32_t>(backoff_ms * 2, cfg.reconnect_max_ms);
    teardown_due = true;
    for (const auto& x : sent)
      if (x.set) keep(x.key, x.backend);
    sent.clear();
    cmd_ready = sub_ready = false;
    resyncing = resync_waiting = false;
    mget_keys.clear();
  }

  void free_contexts() {
    teardown_due = false;
    sent.clear();
    redisAsyncContext* c = cmd;
    redisAsyncContext* s = sub;
    cmd = sub = nullptr;  // their NULL-reply callbacks and on_disconnect see strangers
    if (c) redisAsyncFree(c);
    if (s) redisAsyncFree(s);
  }

  void maybe_up() {
    if (state != State::Connecting || !cmd_ready || !sub_ready) return;
    state = State::Up;
    metrics.up->Set(1);
    backoff_ms = kFirstBackoffMs;
    last_ping_ms = steady_ms();
    logf(LogLevel::Info, "affinity store: %s redis at %s:%u (replica %s); resynchronising",
         degraded ? "back on" : "connected to", cfg.url.host.c_str(), cfg.url.port,
         store::hex64(replica).c_str());
    degraded = false;
    // What was placed here meanwhile goes first, then the whole shared table.
    for (const auto& [key, backend] : outage) write(key, backend);
    outage.clear();
    resyncing = true;
    resync_waiting = false;
    cursor = "0";
    resync_seen = 0;
    next_resync_ms = 0;
    metrics.resyncs->Increment();
  }

  // ---- commands ----

  // True when the command was queued on `cmd` (and recorded in `sent`).
  bool argv(redisAsyncContext* ac, Op o, std::initializer_list<std::string> args,
            redisCallbackFn* fn = on_reply) {
    std::vector<const char*> v;
    std::vector<size_t> len;
    for (const auto& a : args) {
      v.push_back(a.data());
      len.push_back(a.size());
    }
    if (redisAsyncCommandArgv(ac, fn, op(o), static_cast<int>(v.size()), v.data(), len.data()) !=
            REDIS_OK ||
        ac != cmd)
      return false;
    sent.push_back({steady_ms(), false, {}, 0});
    return true;
  }
  bool command(Op o, std::initializer_list<std::string> args) { return cmd && argv(cmd, o, args); }

  // A placement for later (Redis away): one per client id, at most cfg.queue.
  void keep(const ClientKey& key, uint64_t backend) {
    if (outage.size() < cfg.queue || outage.count(key))
      outage[key] = backend;
    else
      metrics.dropped_outage->Increment();
  }

  void write(const ClientKey& key, uint64_t backend) {
    if (command(Op::Set, {"SET", store::redis_key(cfg.key_prefix, key), store::hex64(backend), "EX",
                          std::to_string(ttl_s.load())}))
      sent.back() = {sent.back().ms, true, key, backend};
    store::Message m;
    m.replica = replica;
    m.key = key;
    m.backend = backend;
    command(Op::Publish, {"PUBLISH", chan, store::encode(m)});
  }

  void drain_inbox() {
    std::vector<Placed> batch;
    {
      std::lock_guard<std::mutex> g(mu);
      batch.swap(inbox);
    }
    for (const auto& p : batch) {
      if (state == State::Up && sent.size() < 2 * size_t{cfg.queue})
        write(p.key, p.backend);
      else if (state == State::Up)
        metrics.dropped_queue->Increment();  // Redis is slow: do not pile up
      else
        keep(p.key, p.backend);
    }
  }

  static void on_reply(redisAsyncContext* ac, void* r, void* priv) {
    Impl* self = of(ac);
    if (!r || ac != self->cmd || self->teardown_due) return;  // a context on its way out
    auto* reply = static_cast<redisReply*>(r);
    if (!self->sent.empty()) self->sent.pop_front();
    // An error reply (a wrong password, a read-only replica, ...): Redis is
    // not usable; the text goes into the one outage line.
    if (reply->type == REDIS_REPLY_ERROR) return self->fail(self->metrics.err_reply, reply->str);
    switch (static_cast<Op>(reinterpret_cast<uintptr_t>(priv))) {
      case Op::Ping:
        self->cmd_ready = true;
        return self->maybe_up();
      case Op::Set:
        return self->metrics.writes->Increment();
      case Op::Publish:
        return self->metrics.published->Increment();
      case Op::Scan:
        return self->on_scan(reply);
      case Op::Mget:
        return self->on_mget(reply);
      case Op::Setup:
        return;
    }
  }

  // The pub/sub connection: the SUBSCRIBE confirmation, then every message.
  static void on_sub(redisAsyncContext* ac, void* r, void*) {
    Impl* self = of(ac);
    if (!r || ac != self->sub || self->teardown_due) return;
    auto* reply = static_cast<redisReply*>(r);
    if (reply->type == REDIS_REPLY_ERROR) return self->fail(self->metrics.err_reply, reply->str);
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
      return;
    std::string_view kind(reply->element[0]->str, reply->element[0]->len);
    if (kind == "subscribe") {
      self->sub_ready = true;
      return self->maybe_up();
    }
    if (kind != "message" || reply->element[2]->type != REDIS_REPLY_STRING) return;
    self->on_message(std::string_view(reply->element[2]->str, reply->element[2]->len));
  }

  void on_message(std::string_view text) {
    auto m = store::decode(text);
    if (!m) {
      metrics.invalid->Increment();
      return;
    }
    if (m->replica == replica) return;  // our own
    if (m->kind == store::Message::Kind::TookOver) {
      if (m->target == replica) metrics.remote_takeovers->Increment();
      return;
    }
    metrics.received->Increment();
    if (!sink.apply_remote(m->key, m->backend, true) || state != State::Up) return;
    store::Message t;
    t.kind = store::Message::Kind::TookOver;
    t.replica = replica;
    t.target = m->replica;
    t.key = m->key;
    command(Op::Publish, {"PUBLISH", chan, store::encode(t)});
  }

  // ---- resynchronisation: SCAN the prefix, MGET each batch ----

  void scan_step() {
    resync_waiting = true;
    command(Op::Scan,
            {"SCAN", cursor, "MATCH", pattern, "COUNT", std::to_string(cfg.resync_batch)});
  }

  void on_scan(redisReply* reply) {
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY)
      return fail(metrics.err_reply, "unexpected SCAN reply");
    cursor.assign(reply->element[0]->str, reply->element[0]->len);
    std::vector<std::string> keys;
    mget_keys.clear();
    const redisReply* arr = reply->element[1];
    for (size_t i = 0; i < arr->elements; ++i) {
      const redisReply* k = arr->element[i];
      if (k->type != REDIS_REPLY_STRING) continue;
      std::string_view name(k->str, k->len);
      if (auto key = store::parse_redis_key(cfg.key_prefix, name)) {
        mget_keys.push_back(*key);
        keys.emplace_back(name);
      }
    }
    if (keys.empty()) return resync_next();
    std::vector<const char*> v{"MGET"};
    std::vector<size_t> len{4};
    for (const auto& k : keys) {
      v.push_back(k.data());
      len.push_back(k.size());
    }
    if (redisAsyncCommandArgv(cmd, on_reply, op(Op::Mget), static_cast<int>(v.size()), v.data(),
                              len.data()) == REDIS_OK)
      sent.push_back({steady_ms(), false, {}, 0});
  }

  void on_mget(redisReply* reply) {
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != mget_keys.size())
      return fail(metrics.err_reply, "unexpected MGET reply");
    for (size_t i = 0; i < reply->elements && resync_seen < resync_max; ++i) {
      const redisReply* v = reply->element[i];
      if (v->type != REDIS_REPLY_STRING) continue;  // expired meanwhile
      if (auto b = store::parse_hex64(std::string_view(v->str, v->len))) {
        sink.apply_remote(mget_keys[i], *b, false);
        metrics.resync_entries->Increment();
        ++resync_seen;
      }
    }
    mget_keys.clear();
    resync_next();
  }

  void resync_next() {
    resync_waiting = false;
    next_resync_ms = steady_ms() + cfg.resync_interval_ms;
    if (cursor != "0" && resync_seen < resync_max) return;
    resyncing = false;
    logf(LogLevel::Info, "affinity store: resynchronised %llu entries",
         static_cast<unsigned long long>(resync_seen));
  }
};

RedisStore::RedisStore(const conf::AffinityStore& cfg, uint32_t ttl_s, uint64_t resync_max,
                       StoreSink& sink, StoreMetrics& metrics)
    : impl_(std::make_unique<Impl>(cfg, ttl_s, resync_max, sink, metrics)) {}

RedisStore::~RedisStore() {
  stop();
}

bool RedisStore::start(std::string& err) {
  return impl_->start(err);
}

void RedisStore::stop() {
  impl_->stop();
}

void RedisStore::placed(const ClientKey& key, uint64_t backend) {
  Impl& s = *impl_;
  {
    std::lock_guard<std::mutex> g(s.mu);
    if (!s.open) return;
    if (s.inbox.size() >= s.cfg.queue) {
      s.metrics.dropped_queue->Increment();
      return;
    }
    s.inbox.push_back({key, backend});
    // Under the lock: stop() closes `wake` only after it saw open == false.
    if (s.inbox.size() == 1) uv_async_send(&s.wake);  // else a wake-up is on its way
  }
}

void RedisStore::set_ttl(uint32_t ttl_s) {
  impl_->ttl_s.store(ttl_s);
}

uint64_t RedisStore::replica_id() const {
  return impl_->replica;
}

}  // namespace lb
