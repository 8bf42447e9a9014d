#include "lb/app.hpp"

#include <uv.h>

#include <csignal>

#include "lb/config_check.hpp"
#include "lb/log.hpp"
#include "lb/server.hpp"

namespace lb {

namespace {
EarlySignals g_early;
void early_handler(int sig) {
  if (sig == SIGHUP)
    g_early.hup = 1;
  else
    g_early.term = sig;
}
}  // namespace

EarlySignals& early_signals() {
  return g_early;
}

void install_early_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = early_handler;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaction(sig, &sa, nullptr);
}

namespace {

struct App {
  Server* server;
  std::string config_path;
  std::function<void(const conf::Config&)> on_reload;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t drain;
  uv_timer_t* gauges = nullptr;
  bool draining = false;
  bool finished = false;
  uint64_t drain_started = 0;
  uint32_t grace_ms = 0;

  void finish() {
    if (finished) return;
    finished = true;
    logf(LogLevel::Info, "closing %lld remaining connections",
         static_cast<long long>(server->active_connections()));
    server->close_all_sessions();
    for (uv_signal_t* s : {&sigterm, &sigint, &sighup})
      uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&drain), nullptr);
    if (gauges) uv_close(reinterpret_cast<uv_handle_t*>(gauges), nullptr);
  }

  void begin_shutdown(int signum) {
    if (draining) {  // second signal: do not wait any longer
      finish();
      return;
    }
    draining = true;
    grace_ms = server->snapshot()->cfg.limits.shutdown_grace_ms;
    logf(LogLevel::Info, "signal %d: stop accepting; draining %lld connections for up to %u ms",
         signum, static_cast<long long>(server->active_connections()), grace_ms);
    server->stop_accepting();
    drain_started = uv_now(&loop);
    uv_timer_start(&drain, drain_cb, 0, 50);
  }

  static void drain_cb(uv_timer_t* t) {
    auto* a = static_cast<App*>(t->data);
    if (a->finished) return;
    if (a->server->active_connections() == 0 || uv_now(&a->loop) - a->drain_started >= a->grace_ms)
      a->finish();
  }

  void reload() {
    conf::LoadResult r = load_config(config_path);
    if (!r.ok()) {
      server->metrics().reloads_failed->Increment();
      logf(LogLevel::Error, "SIGHUP: %s is invalid; keeping the running config (%zu errors)",
           config_path.c_str(), r.errors.size());
      for (const auto& e : r.errors) logf(LogLevel::Error, "config: %s", e.c_str());
      return;
    }
    server->swap(*r.config);
    server->metrics().reloads_ok->Increment();
    logf(LogLevel::Info,
         "SIGHUP: %s reloaded: backends, balance, limits and health apply to new connections",
         config_path.c_str());
    if (server->needs_restart(*r.config))
      logf(LogLevel::Warn, "SIGHUP: listeners or workers changed: they apply only after a restart");
    if (on_reload) on_reload(*r.config);
  }

  static void signal_cb(uv_signal_t* s, int signum) {
    auto* a = static_cast<App*>(s->data);
    if (signum == SIGHUP)
      a->reload();
    else
      a->begin_shutdown(signum);
  }
};

}  // namespace

int run_until_signalled(Server& server, const std::string& config_path,
                        std::function<void()> on_ready,
                        std::function<void(const conf::Config&)> on_reload) {
  App a;
  a.server = &server;
  a.config_path = config_path;
  a.on_reload = std::move(on_reload);
  uv_loop_init(&a.loop);
  uv_timer_init(&a.loop, &a.drain);
  a.drain.data = &a;
  for (auto [h, sig] : {std::pair{&a.sigterm, SIGTERM}, {&a.sigint, SIGINT}, {&a.sighup, SIGHUP}}) {
    uv_signal_init(&a.loop, h);
    h->data = &a;
    uv_signal_start(h, App::signal_cb, sig);
  }
  // Once per second: the gauges of shared state (budget, tables).
  uv_timer_t gauges;
  uv_timer_init(&a.loop, &gauges);
  gauges.data = &server;
  uv_timer_start(
      &gauges, [](uv_timer_t* t) { static_cast<Server*>(t->data)->update_gauges(); }, 0, 1000);
  a.gauges = &gauges;
  if (on_ready) on_ready();
  // What arrived before the handlers above replaced the early ones.
  if (g_early.term) a.begin_shutdown(g_early.term);
  if (g_early.hup && !a.draining) a.reload();
  uv_run(&a.loop, UV_RUN_DEFAULT);
  uv_loop_close(&a.loop);
  server.join();
  logf(LogLevel::Info, "stopped");
  return 0;
}

}  // namespace lb
