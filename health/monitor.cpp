#include "health/monitor.hpp"

#include <uv.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <random>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "health/checker.hpp"

namespace health {

namespace {

constexpr std::array<State, 4> kStates = {State::Down, State::Up, State::Drain, State::Maint};
constexpr std::array<FailKind, 9> kFailKinds = {
    FailKind::Resolve,        FailKind::Connect,  FailKind::ConnectTimeout,
    FailKind::Tls,            FailKind::ConnackTimeout, FailKind::Refused,
    FailKind::PingTimeout,    FailKind::Closed,   FailKind::Protocol};

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

// The metric objects of one backend; pointers into the registry's families,
// which live as long as the registry (the registry outlives the Monitor).
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

// Everything the health thread owns. Checkers are created, driven and closed on
// the loop thread only; `commands` is the one thing other threads touch (under
// `mu`), followed by uv_async_send.
struct Monitor::Impl {
  struct Entry {
    MonitoredBackend mb;
    std::string client_id;
    StateMachine sm;
    Checker* checker = nullptr;  // self-freeing after close(); nulled then
    std::string last_logged_failure;
    BackendMetrics m;
    Entry(MonitoredBackend b, std::string id, uint32_t rise, uint32_t fall)
        : mb(std::move(b)), client_id(std::move(id)), sm(rise, fall) {}
  };

  conf::Health hc;
  TransitionFn on_transition;
  LogFn log;
  std::vector<std::unique_ptr<Entry>> entries;

  uv_loop_t loop;
  uv_async_t async;
  bool loop_ready = false;

  std::mutex mu;
  std::vector<std::pair<size_t, Admin>> commands;  // guarded by mu
  bool stop_requested = false;                     // guarded by mu

  void logf(const std::string& line) {
    if (log) {
      log(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
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
  }

  void on_async() {
    std::vector<std::pair<size_t, Admin>> cmds;
    bool stop;
    {
      std::lock_guard<std::mutex> lk(mu);
      cmds.swap(commands);
      stop = stop_requested;
    }
    if (stop) {
      for (auto& e : entries) {
        if (e->checker) e->checker->close();
        e->checker = nullptr;
      }
      uv_close(reinterpret_cast<uv_handle_t*>(&async), nullptr);
      return;
    }
    for (auto& [idx, a] : cmds) {
      Entry& e = *entries[idx];
      auto t = e.sm.set_admin(a, steady_ms());
      if (e.sm.checks_enabled()) {
        e.checker->start();  // no-op if already running
      } else {
        e.checker->pause();
      }
      if (t) publish(e, *t);
    }
  }

  void run() {
    for (auto& ep : entries) {
      Entry* e = ep.get();
      e->checker = Checker::create(&loop, e->mb.backend, hc, e->client_id,
                                   [this, e](const CheckResult& r) { on_result(*e, r); });
      e->checker->start();
    }
    on_async();  // admin commands (or a stop) issued before the thread started
    uv_run(&loop, UV_RUN_DEFAULT);
    // Every handle is closed (the checkers freed themselves): the loop closes.
    uv_loop_close(&loop);
  }
};

Monitor::Monitor(std::vector<MonitoredBackend> backends, const conf::Health& hc,
                 prometheus::Registry& registry, TransitionFn on_transition, LogFn log)
    : impl_(std::make_unique<Impl>()), instance_id_(random_instance_id()) {
  impl_->hc = hc;
  impl_->on_transition = std::move(on_transition);
  impl_->log = std::move(log);

  auto& up = prometheus::BuildGauge()
                 .Name("mqttlb_backend_up")
                 .Help("1 when the backend passes its health checks and takes new connections")
                 .Register(registry);
  auto& state = prometheus::BuildGauge()
                    .Name("mqttlb_backend_state")
                    .Help("Backend health state: 1 for the current state, 0 for the others")
                    .Register(registry);
  auto& transitions = prometheus::BuildCounter()
                          .Name("mqttlb_health_transitions_total")
                          .Help("Backend health state changes, by new state")
                          .Register(registry);
  auto& duration = prometheus::BuildHistogram()
                       .Name("mqttlb_health_check_duration_seconds")
                       .Help("Time from the start of a health check to its verdict")
                       .Register(registry);
  auto& failures = prometheus::BuildCounter()
                       .Name("mqttlb_health_check_failures_total")
                       .Help("Failed health checks, by reason")
                       .Register(registry);
  auto& checks = prometheus::BuildCounter()
                     .Name("mqttlb_health_checks_total")
                     .Help("Health check verdicts, by result")
                     .Register(registry);
  const prometheus::Histogram::BucketBoundaries buckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

  for (auto& b : backends) {
    const std::string name = b.backend.name;  // b is moved from below
    if (!b.status) b.status = std::make_shared<Status>();
    b.status->slowstart_ms.store(hc.slowstart_ms, std::memory_order_relaxed);
    b.status->state.store(State::Down, std::memory_order_release);
    std::string id = make_client_id(hc.client_id_prefix, instance_id_, name);
    auto e = std::make_unique<Impl::Entry>(std::move(b), id, hc.rise, hc.fall);
    BackendMetrics& m = e->m;
    m.up = &up.Add({{"backend", name}});
    m.up->Set(0);
    for (size_t i = 0; i < kStates.size(); ++i) {
      m.state[i] = &state.Add({{"backend", name}, {"state", to_string(kStates[i])}});
      m.state[i]->Set(kStates[i] == State::Down ? 1 : 0);
      m.transitions[i] = &transitions.Add({{"backend", name}, {"to", to_string(kStates[i])}});
    }
    m.duration = &duration.Add({{"backend", name}}, buckets);
    for (FailKind k : kFailKinds)
      m.failures[static_cast<size_t>(k)] =
          &failures.Add({{"backend", name}, {"reason", to_string(k)}});
    m.passes = &checks.Add({{"backend", name}, {"result", "pass"}});
    m.fails = &checks.Add({{"backend", name}, {"result", "fail"}});
    impl_->entries.push_back(std::move(e));
  }
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
  impl_->async.data = impl_.get();
  rc = uv_async_init(&impl_->loop, &impl_->async,
                     [](uv_async_t* a) { static_cast<Impl*>(a->data)->on_async(); });
  if (rc != 0) {
    uv_loop_close(&impl_->loop);
    err = std::string("health: uv_async_init: ") + uv_strerror(rc);
    return false;
  }
  impl_->loop_ready = true;
  thread_ = std::thread([impl = impl_.get()] { impl->run(); });
  started_ = true;
  return true;
}

void Monitor::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopped_) return;
    stopped_ = true;
    if (!started_) return;
  }
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stop_requested = true;
  }
  uv_async_send(&impl_->async);
  if (thread_.joinable()) thread_.join();
}

bool Monitor::set_admin_state(const std::string& backend, Admin a) {
  for (size_t i = 0; i < impl_->entries.size(); ++i) {
    if (impl_->entries[i]->mb.backend.name != backend) continue;
    {
      std::lock_guard<std::mutex> lk(impl_->mu);
      impl_->commands.emplace_back(i, a);
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (started_ && !stopped_) uv_async_send(&impl_->async);
    return true;
  }
  return false;
}

std::string Monitor::client_id(const std::string& backend) const {
  for (auto& e : impl_->entries)
    if (e->mb.backend.name == backend) return e->client_id;
  return "";
}

}  // namespace health
