#include "lb/discovery.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <uv.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "lb/dns_answer.hpp"
#include "lb/log.hpp"
#include "lb/srv_plan.hpp"

namespace lb {

namespace {

constexpr int kClassIn = 1;
constexpr int kTypeA = 1, kTypeAAAA = 28, kTypeSRV = 33;
constexpr uint32_t kMinRequeryMs = 1000;
constexpr int kMaxAddrs = 256;  // per answer (a DNS answer over UDP holds far fewer)

const char* type_name(conf::Discovery::Type t) {
  return t == conf::Discovery::Type::AAAA ? "AAAA" : t == conf::Discovery::Type::SRV ? "SRV" : "A";
}

std::once_flag g_ares_init;

struct Addr {
  std::string host;
  uint32_t ttl;
};

// Addresses of an A or AAAA answer with their TTLs; false when it has none.
bool parse_addrs(int type, const unsigned char* buf, int len, std::vector<Addr>& out) {
  char text[INET6_ADDRSTRLEN];
  int n = kMaxAddrs;
  if (type == kTypeA) {
    ares_addrttl a[kMaxAddrs];
    if (ares_parse_a_reply(buf, len, nullptr, a, &n) != ARES_SUCCESS) return false;
    for (int i = 0; i < n; ++i)
      if (inet_ntop(AF_INET, &a[i].ipaddr, text, sizeof text))
        out.push_back({text, static_cast<uint32_t>(std::max(0, a[i].ttl))});
  } else {
    ares_addr6ttl a[kMaxAddrs];
    if (ares_parse_aaaa_reply(buf, len, nullptr, a, &n) != ARES_SUCCESS) return false;
    for (int i = 0; i < n; ++i)
      if (inet_ntop(AF_INET6, &a[i].ip6addr, text, sizeof text))
        out.push_back({text, static_cast<uint32_t>(std::max(0, a[i].ttl))});
  }
  return !out.empty();
}

}  // namespace

DiscoveryMetrics::DiscoveryMetrics(prometheus::Registry& reg)
    : backends(prometheus::BuildGauge()
                   .Name("mqttlb_discovery_backends")
                   .Help("Backends the DNS name currently resolves to (the last good answer)")
                   .Register(reg)),
      lookups(prometheus::BuildCounter()
                  .Name("mqttlb_discovery_lookups_total")
                  .Help("DNS discovery lookups, by result (ok, empty, error)")
                  .Register(reg)) {}

std::string Discovery::source_id(const conf::Discovery& d) {
  return d.dns + "/" + type_name(d.type) +
         (d.type == conf::Discovery::Type::SRV ? std::string() : "/" + std::to_string(d.port));
}

std::string Discovery::backend_name(const conf::Discovery& d, const std::string& host,
                                    uint16_t port) {
  std::string h = host;
  if (!h.empty() && h.back() == '.') h.pop_back();
  return d.dns + "-" + h + "-" + std::to_string(port);
}

// One discovery[] entry: its c-ares channel, the sockets c-ares opened (one
// uv_poll each), its timers. Heap object that never moves; lives until the
// loop ends (after its handles are closed).
struct Entry;

struct Poll {
  uv_poll_t h;
  Entry* e;
  int fd;
};

struct Discovery::Impl {
  Discovery::ResultFn on_result;
  DiscoveryMetrics& metrics;
  std::vector<std::unique_ptr<Entry>> entries;
  uv_loop_t loop;
  uv_async_t wake;  // stop
  std::thread th;
  std::mutex mu;
  std::condition_variable cv;
  size_t answered = 0;  // entries with a first result (guarded by mu)
  bool started = false, stopping = false;
  Impl(ResultFn fn, DiscoveryMetrics& m) : on_result(std::move(fn)), metrics(m) {}
  void first_done() {
    std::lock_guard<std::mutex> g(mu);
    ++answered;
    cv.notify_all();
  }
};

struct Entry {
  Discovery::Impl* d = nullptr;
  conf::Discovery cfg;
  std::string source;
  ares_channel ch = nullptr;
  uv_timer_t requery;    // next lookup
  uv_timer_t ares_tick;  // c-ares' own timeouts
  std::map<int, Poll*> polls;
  bool first = true;      // no result yet
  bool failing = false;   // the failure was logged; the recovery is logged once
  bool stopping = false;  // ares_destroy in progress: callbacks touch nothing
  size_t last_good = 0;
  uint32_t retry_ms = kMinRequeryMs;  // after a failure
  // The lookup in flight.
  uint64_t generation = 0;
  int waiting = 0;  // SRV: target lookups outstanding
  uint32_t min_ttl = UINT32_MAX;
  std::vector<conf::Backend> found;
  bool error = false;
  prometheus::Gauge* g_backends = nullptr;
  prometheus::Counter *c_ok = nullptr, *c_empty = nullptr, *c_error = nullptr;

  bool init(std::string& err) {
    ares_options o{};
    o.sock_state_cb = [](void* data, ares_socket_t fd, int r, int w) {
      static_cast<Entry*>(data)->sock_state(fd, r, w);
    };
    o.sock_state_cb_data = this;
    o.timeout = static_cast<int>(std::max<uint32_t>(cfg.timeout_ms / 2, 50));
    o.tries = 2;
    int rc =
        ares_init_options(&ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
      err = std::string("discovery ") + cfg.dns + ": " + ares_strerror(rc);
      return false;
    }
    if (!cfg.resolvers.empty()) {
      std::string csv;
      for (const auto& r : cfg.resolvers) csv += (csv.empty() ? "" : ",") + r.str();
      rc = ares_set_servers_ports_csv(ch, csv.c_str());
      if (rc != ARES_SUCCESS) {
        err = "discovery " + cfg.dns + ": resolvers " + csv + ": " + ares_strerror(rc);
        return false;
      }
    }
    return true;
  }

  void sock_state(int fd, int readable, int writable) {
    auto it = polls.find(fd);
    if (!readable && !writable) {
      if (it == polls.end()) return;
      Poll* p = it->second;
      polls.erase(it);
      uv_poll_stop(&p->h);
      uv_close(reinterpret_cast<uv_handle_t*>(&p->h),
               [](uv_handle_t* h) { delete static_cast<Poll*>(h->data); });
      return;
    }
    Poll* p;
    if (it == polls.end()) {
      p = new Poll{};
      p->e = this;
      p->fd = fd;
      p->h.data = p;
      if (uv_poll_init_socket(&d->loop, &p->h, fd) != 0) {
        delete p;  // never initialised: no close needed
        return;
      }
      polls[fd] = p;
    } else {
      p = it->second;
    }
    int ev = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
    uv_poll_start(&p->h, ev, [](uv_poll_t* h, int status, int events) {
      auto* p = static_cast<Poll*>(h->data);
      Entry* e = p->e;
      // An error on the socket: let c-ares read it and see the failure.
      bool r = status < 0 || (events & UV_READABLE);
      bool w = status == 0 && (events & UV_WRITABLE);
      ares_process_fd(e->ch, r ? p->fd : ARES_SOCKET_BAD, w ? p->fd : ARES_SOCKET_BAD);
      e->arm_ares();
    });
  }

  void arm_ares() {
    if (stopping) return;
    timeval tv{};
    if (!ares_timeout(ch, nullptr, &tv)) {
      uv_timer_stop(&ares_tick);
      return;
    }
    uint64_t ms =
        static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
    uv_timer_start(
        &ares_tick,
        [](uv_timer_t* t) {
          auto* e = static_cast<Entry*>(t->data);
          ares_process_fd(e->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
          e->arm_ares();
        },
        ms + 1, 0);
  }

  // ---- one lookup ----

  void lookup() {
    ++generation;
    found.clear();
    error = false;
    waiting = 0;
    min_ttl = UINT32_MAX;
    int type = cfg.type == conf::Discovery::Type::SRV    ? kTypeSRV
               : cfg.type == conf::Discovery::Type::AAAA ? kTypeAAAA
                                                         : kTypeA;
    ares_search(ch, cfg.dns.c_str(), kClassIn, type, on_answer, this);
    arm_ares();
  }

  static void on_answer(void* arg, int status, int, unsigned char* buf, int len) {
    auto* e = static_cast<Entry*>(arg);
    if (e->stopping || status == ARES_EDESTRUCTION) return;
    if (status != ARES_SUCCESS)
      return e->done(status == ARES_ENODATA || status == ARES_ENOTFOUND ? "empty"
                                                                        : ares_strerror(status));
    if (e->cfg.type != conf::Discovery::Type::SRV) {
      std::vector<Addr> addrs;
      if (!parse_addrs(e->cfg.type == conf::Discovery::Type::A ? kTypeA : kTypeAAAA, buf, len,
                       addrs))
        return e->done("empty");
      for (const auto& a : addrs) e->add(a.host, e->cfg.port, a.ttl, a.host);
      return e->done(nullptr);
    }
    ares_srv_reply* srv = nullptr;
    if (ares_parse_srv_reply(buf, len, &srv) != ARES_SUCCESS || !srv) return e->done("empty");
    if (auto ttl = dns::min_answer_ttl(buf, static_cast<size_t>(len), kTypeSRV))
      e->min_ttl = std::min(e->min_ttl, *ttl);
    std::vector<dns::SrvRecord> records;
    for (ares_srv_reply* r = srv; r; r = r->next)
      records.push_back({r->host, r->port, r->priority, r->weight});
    ares_free_data(srv);
    // RFC 2782 priorities become tiers, weights backend weights (lb/srv_plan).
    auto targets = dns::plan_srv(records);
    if (targets.empty()) return e->done("empty");
    // Each target is resolved (A; AAAA when it has no A record); the lookup
    // is done when all have answered.
    e->waiting = static_cast<int>(targets.size());
    for (auto& t : targets) {
      auto* q = new Target{e, e->generation, std::move(t), false};
      ares_search(e->ch, q->srv.target.c_str(), kClassIn, kTypeA, on_target, q);
    }
  }

  // One SRV target being resolved; owned by the c-ares callback (on_target).
  struct Target {
    Entry* e;
    uint64_t generation;
    dns::SrvTarget srv;
    bool aaaa;  // the A query found nothing: this is the AAAA one
  };

  static void on_target(void* arg, int status, int, unsigned char* buf, int len) {
    std::unique_ptr<Target> t(static_cast<Target*>(arg));
    Entry* e = t->e;
    if (e->stopping || status == ARES_EDESTRUCTION || t->generation != e->generation) return;
    std::vector<Addr> addrs;
    const bool none = status == ARES_ENODATA || status == ARES_ENOTFOUND;
    if (status == ARES_SUCCESS && parse_addrs(t->aaaa ? kTypeAAAA : kTypeA, buf, len, addrs)) {
      // One backend per address, each with the target's weight and tier.
      for (const auto& a : addrs)
        e->add(a.host, t->srv.port, a.ttl, t->srv.target + "-" + a.host, t->srv.weight,
               t->srv.tier);
    } else if ((status == ARES_SUCCESS || none) && !t->aaaa) {
      t->aaaa = true;  // no A record: ask for AAAA (still one lookup outstanding)
      Target* q = t.release();
      ares_search(e->ch, q->srv.target.c_str(), kClassIn, kTypeAAAA, on_target, q);
      return;
    } else if (status != ARES_SUCCESS && !none) {
      e->error = true;  // the set would be incomplete: keep the last good one
    }
    if (--e->waiting == 0) e->done(e->error ? "a target did not resolve" : nullptr);
  }

  // weight 0: the template's. tier: lb/srv_plan.hpp (0 for A / AAAA).
  void add(const std::string& addr, uint16_t port, uint32_t ttl, const std::string& label,
           uint32_t weight = 0, uint32_t tier = 0) {
    conf::Backend b = cfg.templ;
    b.name = Discovery::backend_name(cfg, label, port);
    b.address = conf::Endpoint{addr, port};
    if (weight) b.weight = weight;
    b.tier = tier;
    min_ttl = std::min(min_ttl, ttl);
    for (const auto& f : found)
      if (f.name == b.name) return;
    found.push_back(std::move(b));
  }

  // The lookup is over: `failure` null on success.
  void done(const char* failure) {
    if (!failure && found.empty()) failure = "empty";
    uint32_t next = cfg.interval_ms;
    if (failure) {
      const bool empty = std::string(failure) == "empty";
      (empty ? c_empty : c_error)->Increment();
      if (!failing)
        logf(LogLevel::Warn, "discovery %s (%s): %s%s; keeping the last %zu backends",
             cfg.dns.c_str(), type_name(cfg.type),
             empty ? "empty answer" : "lookup failed: ", empty ? "" : failure, last_good);
      failing = true;
      // Asked again sooner than the interval: from 1 s, doubling up to it.
      next = std::min(cfg.interval_ms, retry_ms);
      retry_ms = std::min<uint32_t>(retry_ms * 2, cfg.interval_ms);
    } else {
      retry_ms = kMinRequeryMs;
      c_ok->Increment();
      if (failing)
        logf(LogLevel::Info, "discovery %s (%s): answering again: %zu backends", cfg.dns.c_str(),
             type_name(cfg.type), found.size());
      failing = false;
      std::sort(found.begin(), found.end(),
                [](const conf::Backend& a, const conf::Backend& b) { return a.name < b.name; });
      last_good = found.size();
      g_backends->Set(static_cast<double>(found.size()));
      if (min_ttl != UINT32_MAX) {
        // Records expire: ask again when they do (not sooner than 1 s).
        uint64_t ttl_ms = std::max<uint64_t>(uint64_t{min_ttl} * 1000, kMinRequeryMs);
        next = static_cast<uint32_t>(std::min<uint64_t>(next, ttl_ms));
      }
      d->on_result(source, found);
    }
    found.clear();
    if (first) {
      first = false;
      d->first_done();
    }
    uv_timer_start(
        &requery, [](uv_timer_t* t) { static_cast<Entry*>(t->data)->lookup(); }, next, 0);
  }
};

Discovery::Discovery(std::vector<conf::Discovery> entries, ResultFn on_result,
                     DiscoveryMetrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(on_result), metrics)) {
  std::call_once(g_ares_init, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  for (auto& c : entries) {
    auto e = std::make_unique<Entry>();
    e->d = impl_.get();
    e->source = source_id(c);
    e->g_backends = &metrics.backends.Add({{"discovery", e->source}});
    e->c_ok = &metrics.lookups.Add({{"discovery", e->source}, {"result", "ok"}});
    e->c_empty = &metrics.lookups.Add({{"discovery", e->source}, {"result", "empty"}});
    e->c_error = &metrics.lookups.Add({{"discovery", e->source}, {"result", "error"}});
    e->cfg = std::move(c);
    impl_->entries.push_back(std::move(e));
  }
}

Discovery::~Discovery() {
  stop();
}

bool Discovery::start(std::string& err) {
  Impl& d = *impl_;
  if (uv_loop_init(&d.loop) != 0) {
    err = "discovery: cannot create its loop";
    return false;
  }
  for (auto& e : d.entries) {  // channels first: nothing of the loop exists yet
    if (e->init(err)) continue;
    for (auto& x : d.entries)
      if (x->ch) ares_destroy(x->ch);  // no socket was opened: no poll to close
    uv_loop_close(&d.loop);
    return false;
  }
  for (auto& e : d.entries) {
    uv_timer_init(&d.loop, &e->requery);
    e->requery.data = e.get();
    uv_timer_init(&d.loop, &e->ares_tick);
    e->ares_tick.data = e.get();
  }
  uv_async_init(&d.loop, &d.wake, [](uv_async_t* a) {
    auto* d = static_cast<Impl*>(a->data);
    for (auto& e : d->entries) {
      e->stopping = true;
      ares_destroy(e->ch);  // pending callbacks see ARES_EDESTRUCTION; sockets are released
      e->ch = nullptr;
      while (!e->polls.empty()) e->sock_state(e->polls.begin()->first, 0, 0);  // any left
      uv_close(reinterpret_cast<uv_handle_t*>(&e->requery), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&e->ares_tick), nullptr);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
  });
  d.wake.data = &d;
  for (auto& e : d.entries) e->lookup();
  d.started = true;
  d.th = std::thread([&d] {
    uv_run(&d.loop, UV_RUN_DEFAULT);
    uv_loop_close(&d.loop);
  });
  return true;
}

bool Discovery::wait_first(uint32_t max_ms) {
  Impl& d = *impl_;
  std::unique_lock<std::mutex> lk(d.mu);
  return d.cv.wait_for(lk, std::chrono::milliseconds(max_ms),
                       [&] { return d.answered >= d.entries.size(); });
}

void Discovery::stop() {
  Impl& d = *impl_;
  if (!d.started || d.stopping) return;
  d.stopping = true;
  uv_async_send(&d.wake);
  if (d.th.joinable()) d.th.join();
}

}  // namespace lb
