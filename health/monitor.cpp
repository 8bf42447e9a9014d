#include "health/monitor.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <pthread.h>
#include <uv.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <random>
#include <utility>

#include "health/checker.hpp"
#include "net/mailbox.hpp"
#include "net/transport.hpp"

namespace health {

namespace {

constexpr std::array<State, 4> kStates = {State::Down, State::Up, State::Drain, State::Maint};
constexpr std::array<FailKind, 9> kFailKinds = {
    FailKind::Resolve,     FailKind::Connect,        FailKind::ConnectTimeout,
    FailKind::Tls,         FailKind::ConnackTimeout, FailKind::Refused,
    FailKind::PingTimeout, FailKind::Closed,         FailKind::Protocol};

Admin to_admin(conf::BackendAdmin a) {
  switch (a) {
    case conf::BackendAdmin::Drain:
      return Admin::Drain;
    case conf::BackendAdmin::Maint:
      return Admin::Maint;
    case conf::BackendAdmin::Ready:
      break;
  }
  return Admin::Ready;
}

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string random_instance_id() {
  static const char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::random_device rd;
  std::string s;
  for (int i = 0; i < 4; ++i) s += kDigits[rd() % 36];
  return s;
}

bool same_target(const conf::Backend& a, const conf::Backend& b) {
  if (a.name != b.name || a.address.host != b.address.host || a.address.port != b.address.port ||
      a.proxy_protocol != b.proxy_protocol || a.tls.has_value() != b.tls.has_value())
    return false;
  if (!a.tls) return true;
  return a.tls->ca == b.tls->ca && a.tls->verify == b.tls->verify && a.tls->sni == b.tls->sni &&
         a.tls->cert == b.tls->cert && a.tls->key == b.tls->key;
}

// Settings that change what a Checker does (rise/fall/slowstart/on_down do not).
bool same_checks(const conf::Health& a, const conf::Health& b) {
  return a.interval_ms == b.interval_ms && a.timeout_ms == b.timeout_ms && a.mode == b.mode &&
         a.protocol_level == b.protocol_level && a.keep_alive_s == b.keep_alive_s &&
         a.username == b.username && a.password == b.password &&
         a.accept_refusal == b.accept_refusal && a.client_id_prefix == b.client_id_prefix;
}

// The metric objects of one backend: pointers into the registry's families,
// which live as long as the registry (it must outlive the Monitor).
struct BackendMetrics {
  prometheus::Gauge* up = nullptr;
  std::array<prometheus::Gauge*, 4> state{};
  std::array<prometheus::Counter*, 4> transitions{};
  prometheus::Histogram* duration = nullptr;
  std::array<prometheus::Counter*, 10> failures{};  // indexed by FailKind
  prometheus::Counter* passes = nullptr;
  prometheus::Counter* fails = nullptr;
};

}  // namespace

// Everything the health thread owns. Entries and Checkers are created, driven
// and closed on the loop thread only (after start()). Other threads reach it
// through Monitor::post (commands, run on the loop by the mailbox) and read
// the name -> client id map and the first-round count under `mu`.
struct Monitor::Impl {
  struct Entry {
    MonitoredBackend mb;
    std::string client_id;
    StateMachine sm;
    Checker* checker = nullptr;  // frees itself after close(); nulled then
    std::string last_logged_failure;
    bool first_pending = false;  // counted in Impl::first_round_left until its first verdict
    BackendMetrics m;
    Entry(MonitoredBackend b, std::string id, uint32_t rise, uint32_t fall)
        : mb(std::move(b)), client_id(std::move(id)), sm(rise, fall) {}
  };

  std::string instance_id;
  conf::Health hc;
  TransitionFn on_transition;
  LogFn log;
  std::vector<std::unique_ptr<Entry>> entries;  // loop thread (before start: ctor)

  prometheus::Family<prometheus::Gauge>* f_up = nullptr;
  prometheus::Family<prometheus::Gauge>* f_state = nullptr;
  prometheus::Family<prometheus::Counter>* f_transitions = nullptr;
  prometheus::Family<prometheus::Histogram>* f_duration = nullptr;
  prometheus::Family<prometheus::Counter>* f_failures = nullptr;
  prometheus::Family<prometheus::Counter>* f_checks = nullptr;

  uv_loop_t loop;
  net::Mailbox mailbox;  // commands from other threads, run on the loop
  net::Slab slab;        // every checker's reads land here (one loop thread)

  std::mutex mu;
  std::map<std::string, std::string> ids;  // backend name -> client id; guarded by mu
  size_t first_round_left = 0;             // guarded by mu
  std::condition_variable first_round_cv;

  void first_verdict(Entry& e) {
    if (!e.first_pending) return;
    e.first_pending = false;
    std::lock_guard<std::mutex> lk(mu);
    if (first_round_left > 0 && --first_round_left == 0) first_round_cv.notify_all();
  }

  void logf(const std::string& line) {
    if (log) {
      log(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }

  std::unique_ptr<Entry> make_entry(MonitoredBackend b) {
    const std::string name = b.backend.name;
    if (!b.status) b.status = std::make_shared<Status>();
    b.status->slowstart_ms.store(hc.slowstart_ms, std::memory_order_relaxed);
    // Checks disabled: every backend is simply Up (no slowstart: up_since 0).
    State initial = hc.enabled ? State::Down : State::Up;
    if (!hc.enabled) b.status->up_since_ms.store(0, std::memory_order_relaxed);
    b.status->state.store(initial, std::memory_order_release);
    auto e = std::make_unique<Entry>(
        std::move(b), make_client_id(hc.client_id_prefix, instance_id, name), hc.rise, hc.fall);
    static const prometheus::Histogram::BucketBoundaries kBuckets = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    BackendMetrics& m = e->m;
    m.up = &f_up->Add({{"backend", name}});
    m.up->Set(initial == State::Up ? 1 : 0);
    for (size_t i = 0; i < kStates.size(); ++i) {
      m.state[i] = &f_state->Add({{"backend", name}, {"state", to_string(kStates[i])}});
      m.state[i]->Set(kStates[i] == initial ? 1 : 0);
      m.transitions[i] = &f_transitions->Add({{"backend", name}, {"to", to_string(kStates[i])}});
    }
    m.duration = &f_duration->Add({{"backend", name}}, kBuckets);
    for (FailKind k : kFailKinds)
      m.failures[static_cast<size_t>(k)] =
          &f_failures->Add({{"backend", name}, {"reason", to_string(k)}});
    m.passes = &f_checks->Add({{"backend", name}, {"result", "pass"}});
    m.fails = &f_checks->Add({{"backend", name}, {"result", "fail"}});
    return e;
  }

  void publish_ids() {
    std::lock_guard<std::mutex> lk(mu);
    ids.clear();
    for (auto& e : entries) ids[e->mb.backend.name] = e->client_id;
  }

  void start_checker(Entry* e) {
    if (!hc.enabled) return;
    e->checker = Checker::create(&loop, &slab, e->mb.backend, hc, e->client_id,
                                 [this, e](const CheckResult& r) { on_result(*e, r); });
    if (e->sm.checks_enabled()) e->checker->start();
  }

  void stop_checker(Entry* e) {
    if (e->checker) e->checker->close();
    e->checker = nullptr;
  }

  void publish(Entry& e, const Transition& t) {
    Status& st = *e.mb.status;
    if (t.to == State::Up) st.up_since_ms.store(e.sm.up_since_ms(), std::memory_order_relaxed);
    // Release: a worker that sees the new state also sees up_since_ms.
    st.state.store(t.to, std::memory_order_release);
    e.m.up->Set(t.to == State::Up ? 1 : 0);
    for (size_t i = 0; i < kStates.size(); ++i) e.m.state[i]->Set(kStates[i] == t.to ? 1 : 0);
    e.m.transitions[static_cast<size_t>(t.to)]->Increment();
    logf("health: backend " + e.mb.backend.name + " " + to_string(t.from) + " -> " +
         to_string(t.to) + ": " + t.reason);
    if (on_transition) on_transition(e.mb.backend.name, t.from, t.to, t.reason);
  }

  void on_result(Entry& e, const CheckResult& r) {
    if (r.scheduled) e.m.duration->Observe(r.seconds);
    Status::LastCheck lc;
    lc.valid = true;
    lc.pass = r.pass;
    if (!r.pass) {
      // The detail usually says its kind already ("connect: connection refused").
      const std::string kind = std::string(to_string(r.kind)) + ": ";
      lc.reason = r.detail.rfind(kind, 0) == 0 ? r.detail : kind + r.detail;
    }
    lc.seconds = r.seconds;
    lc.wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    e.mb.status->record(std::move(lc));
    if (r.pass) {
      e.m.passes->Increment();
      e.last_logged_failure.clear();
    } else {
      e.m.fails->Increment();
      e.m.failures[static_cast<size_t>(r.kind)]->Increment();
      // One line per change of failure, not one per interval.
      if (r.detail != e.last_logged_failure) {
        logf("health: backend " + e.mb.backend.name + " check failed (" + to_string(r.kind) +
             "): " + r.detail);
        e.last_logged_failure = r.detail;
      }
    }
    if (auto t = e.sm.on_check(r.pass, r.detail, steady_ms())) publish(e, *t);
    first_verdict(e);  // after publishing: a waiter then sees the new state
  }

  void apply_admin(const std::string& name, Admin a) {
    for (auto& ep : entries)
      if (ep->mb.backend.name == name) return apply_admin(*ep, a);
  }

  void apply_admin(Entry& e, Admin a) {
    if (!hc.enabled) {
      if (a != Admin::Ready)
        logf("health: backend " + e.mb.backend.name + ": admin " + to_string(a) +
             " ignored (health.enabled is false)");
      return;
    }
    auto t = e.sm.set_admin(a, steady_ms());
    if (e.checker) {
      if (e.sm.checks_enabled()) {
        e.checker->start();  // no-op if already running
      } else {
        e.checker->pause();
      }
    }
    if (!e.sm.checks_enabled()) first_verdict(e);  // maint: no verdict will come
    if (t) publish(e, *t);
  }

  void remove_series(const BackendMetrics& m) {
    f_up->Remove(m.up);
    for (auto* g : m.state) f_state->Remove(g);
    for (auto* c : m.transitions) f_transitions->Remove(c);
    f_duration->Remove(m.duration);
    for (auto* c : m.failures)
      if (c) f_failures->Remove(c);
    f_checks->Remove(m.passes);
    f_checks->Remove(m.fails);
  }

  void apply_update(std::vector<MonitoredBackend> backends, const conf::Health& nhc) {
    bool restart = !same_checks(hc, nhc);
    bool toggled = hc.enabled != nhc.enabled;  // rebuild every entry
    hc = nhc;
    std::vector<std::unique_ptr<Entry>> next;
    for (auto& b : backends) {
      std::unique_ptr<Entry> kept;
      for (auto& old : entries) {
        if (old && old->mb.backend.name == b.backend.name) {
          if (!toggled && same_target(old->mb.backend, b.backend) && old->mb.status == b.status)
            kept = std::move(old);
          break;
        }
      }
      if (kept) {
        // The config's admin state applies when the reload changes it (an
        // admin command given since stays in force otherwise).
        bool admin_changed = kept->mb.backend.admin != b.backend.admin;
        kept->mb.backend = b.backend;  // weight may differ; irrelevant to checks
        kept->sm.set_thresholds(hc.rise, hc.fall);
        kept->mb.status->slowstart_ms.store(hc.slowstart_ms, std::memory_order_relaxed);
        if (kept->checker && !restart) kept->checker->reload_tls();
        if (restart) {
          stop_checker(kept.get());
          kept->client_id = make_client_id(hc.client_id_prefix, instance_id, b.backend.name);
          start_checker(kept.get());
        }
        if (admin_changed) apply_admin(*kept, to_admin(kept->mb.backend.admin));
        next.push_back(std::move(kept));
      } else {
        next.push_back(make_entry(std::move(b)));
        apply_admin(*next.back(), to_admin(next.back()->mb.backend.admin));
        start_checker(next.back().get());
        logf("health: backend " + next.back()->mb.backend.name + " added (checks start now)");
      }
    }
    for (auto& old : entries) {
      if (!old) continue;
      first_verdict(*old);  // removed before its first verdict: nothing to wait for
      bool replaced = false;
      for (auto& n : next) replaced |= n->mb.backend.name == old->mb.backend.name;
      stop_checker(old.get());
      if (!replaced) {
        logf("health: backend " + old->mb.backend.name + " removed");
        remove_series(old->m);  // not frozen at their last value
      }
    }
    entries = std::move(next);
    publish_ids();
  }

  // The last command (Monitor::stop): every checker closes, then the mailbox;
  // the loop ends once their handles are closed.
  void shutdown() {
    for (auto& e : entries) {
      stop_checker(e.get());
      first_verdict(*e);
    }
    mailbox.close();
  }

  // `early`: commands posted before start(), after the config's own state.
  void run(std::vector<std::function<void()>> early) {
    pthread_setname_np(pthread_self(), "mqttlb-health");
    if (!hc.enabled) logf("health: checks disabled (health.enabled false): every backend is up");
    for (auto& e : entries) {
      apply_admin(*e, to_admin(e->mb.backend.admin));  // from the config
      start_checker(e.get());                          // not started in maint
    }
    for (auto& fn : early) fn();
    uv_run(&loop, UV_RUN_DEFAULT);
    // Every handle is closed (the checkers freed themselves): the loop closes.
    uv_loop_close(&loop);
  }
};

Monitor::Monitor(std::vector<MonitoredBackend> backends, const conf::Health& hc,
                 prometheus::Registry& registry, TransitionFn on_transition, LogFn log)
    : impl_(std::make_unique<Impl>()), instance_id_(random_instance_id()) {
  Impl& m = *impl_;
  m.instance_id = instance_id_;
  m.hc = hc;
  m.on_transition = std::move(on_transition);
  m.log = std::move(log);
  m.f_up = &prometheus::BuildGauge()
                .Name("mqttlb_backend_up")
                .Help("1 when the backend passes its health checks and takes new connections")
                .Register(registry);
  m.f_state = &prometheus::BuildGauge()
                   .Name("mqttlb_backend_state")
                   .Help("Backend health state: 1 for the current state, 0 for the others")
                   .Register(registry);
  m.f_transitions = &prometheus::BuildCounter()
                         .Name("mqttlb_health_transitions_total")
                         .Help("Backend health state changes, by new state")
                         .Register(registry);
  m.f_duration = &prometheus::BuildHistogram()
                      .Name("mqttlb_health_check_duration_seconds")
                      .Help("Time from the start of a health check to its verdict")
                      .Register(registry);
  m.f_failures = &prometheus::BuildCounter()
                      .Name("mqttlb_health_check_failures_total")
                      .Help("Failed health checks, by reason")
                      .Register(registry);
  m.f_checks = &prometheus::BuildCounter()
                    .Name("mqttlb_health_checks_total")
                    .Help("Health check verdicts, by result")
                    .Register(registry);
  for (auto& b : backends) {
    m.entries.push_back(m.make_entry(std::move(b)));
    m.entries.back()->first_pending = hc.enabled;
  }
  m.first_round_left = hc.enabled ? m.entries.size() : 0;
  m.publish_ids();
}

Monitor::~Monitor() {
  stop();
}

bool Monitor::start(std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  if (started_ || stopped_) {
    err = "health monitor already started";
    return false;
  }
  int rc = uv_loop_init(&impl_->loop);
  if (rc != 0) {
    err = std::string("health: uv_loop_init: ") + uv_strerror(rc);
    return false;
  }
  rc = impl_->mailbox.init(&impl_->loop);
  if (rc != 0) {
    uv_loop_close(&impl_->loop);
    err = std::string("health: mailbox: ") + uv_strerror(rc);
    return false;
  }
  // Under mu_: a command posted from now on goes to the mailbox, behind these.
  thread_ = std::thread(
      [impl = impl_.get(), early = std::move(early_)]() mutable { impl->run(std::move(early)); });
  early_.clear();
  started_ = true;
  return true;
}

void Monitor::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopped_) return;
    stopped_ = true;
    if (!started_) return;
    // The last command: stopped_ refuses every later one.
    impl_->mailbox.post([impl = impl_.get()] { impl->shutdown(); });
  }
  if (thread_.joinable()) thread_.join();
}

bool Monitor::wait_first_round(uint32_t max_ms) {
  std::unique_lock<std::mutex> lk(impl_->mu);
  return impl_->first_round_cv.wait_for(lk, std::chrono::milliseconds(max_ms),
                                        [this] { return impl_->first_round_left == 0; });
}

void Monitor::post(std::function<void()> fn) {
  std::lock_guard<std::mutex> lk(mu_);
  if (stopped_) return;
  if (started_)
    impl_->mailbox.post(std::move(fn));
  else
    early_.push_back(std::move(fn));
}

bool Monitor::set_admin_state(const std::string& backend, Admin a) {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    if (impl_->ids.count(backend) == 0) return false;
  }
  post([impl = impl_.get(), backend, a] { impl->apply_admin(backend, a); });
  return true;
}

void Monitor::update(std::vector<MonitoredBackend> backends, const conf::Health& hc) {
  post([impl = impl_.get(), backends = std::move(backends), hc]() mutable {
    impl->apply_update(std::move(backends), hc);
  });
}

std::string Monitor::client_id(const std::string& backend) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  auto it = impl_->ids.find(backend);
  return it == impl_->ids.end() ? std::string() : it->second;
}

}  // namespace health
