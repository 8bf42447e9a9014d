#include "lb/app.hpp"

#include <uv.h>

#include <chrono>
#include <csignal>
#include <future>
#include <memory>

#include "conf/serialize.hpp"
#include "lb/config_check.hpp"
#include "lb/control.hpp"
#include "lb/log.hpp"
#include "lb/server.hpp"
#include "net/mailbox.hpp"

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
  Control* control = nullptr;
  net::Mailbox mailbox;  // other threads' requests to the main loop (API reloads)
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
    if (control) control->set_reloader(nullptr);
    mailbox.close();
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

  // Main loop thread only (SIGHUP, or the admin API through the mailbox).
  ReloadOutcome reload(const char* trigger) {
    ReloadOutcome out;
    out.trigger = trigger;
    out.wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    conf::LoadResult r = load_config(config_path);
    if (!r.ok()) {
      server->metrics().reloads_failed->Increment();
      logf(LogLevel::Error, "reload (%s): %s is invalid; keeping the running config (%zu errors)",
           trigger, config_path.c_str(), r.errors.size());
      for (const auto& e : r.errors) logf(LogLevel::Error, "config: %s", e.c_str());
      out.errors = r.errors;
      if (control) control->note_reload(out);
      return out;
    }
    // Everything that can fail first (bind new listeners, new workers' sockets,
    // TLS contexts, new metrics/admin binds); a reload that cannot be applied
    // whole is not applied at all.
    std::vector<std::string> errors;
    auto prepared = server->prepare(*r.config, errors);
    if (!prepared) {
      server->metrics().reloads_failed->Increment();
      logf(LogLevel::Error, "reload (%s): cannot apply %s; keeping the running config", trigger,
           config_path.c_str());
      for (const auto& e : errors) logf(LogLevel::Error, "config: %s", e.c_str());
      out.errors = errors;
      if (control) control->note_reload(out);
      return out;
    }
    out.changed = conf::diff(server->file_config(), *r.config);
    server->commit(std::move(prepared));
    server->metrics().reloads_ok->Increment();
    out.ok = true;
    std::string what;
    for (const auto& c : out.changed) what += (what.empty() ? "" : ", ") + c;
    logf(LogLevel::Info, "reload (%s): %s reloaded: %s", trigger, config_path.c_str(),
         what.empty() ? "nothing changed" : what.c_str());
    if (on_reload) on_reload(*r.config);
    if (control) control->note_reload(out);
    return out;
  }

  static void signal_cb(uv_signal_t* s, int signum) {
    auto* a = static_cast<App*>(s->data);
    if (signum == SIGHUP)
      a->reload("SIGHUP");
    else
      a->begin_shutdown(signum);
  }
};

}  // namespace

int run_until_signalled(Server& server, const std::string& config_path,
                        std::function<void()> on_ready,
                        std::function<void(const conf::Config&)> on_reload, Control* control) {
  // Shared: the admin API's reloader may outlive this function by a moment.
  auto app = std::make_shared<App>();
  App& a = *app;
  a.server = &server;
  a.config_path = config_path;
  a.on_reload = std::move(on_reload);
  a.control = control;
  uv_loop_init(&a.loop);
  a.mailbox.init(&a.loop);
  if (control) {
    std::weak_ptr<App> weak = app;
    control->set_reloader([weak]() -> ReloadOutcome {
      auto self = weak.lock();
      ReloadOutcome fail;
      fail.trigger = "api";
      fail.errors = {"/: mqttlb is stopping"};
      if (!self) return fail;
      auto p = std::make_shared<std::promise<ReloadOutcome>>();
      auto f = p->get_future();
      App* raw = self.get();
      if (!self->mailbox.post([p, raw] { p->set_value(raw->reload("api")); })) return fail;
      self.reset();  // do not keep the App alive while waiting
      if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
        fail.errors = {"/: the reload did not finish within 60 s"};
        return fail;
      }
      return f.get();
    });
  }
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
      &gauges,
      [](uv_timer_t* t) {
        auto* srv = static_cast<Server*>(t->data);
        srv->update_gauges();
        srv->reap();  // retired workers, closed listeners, removed backends' series
      },
      0, 1000);
  a.gauges = &gauges;
  if (on_ready) on_ready();
  // What arrived before the handlers above replaced the early ones.
  if (g_early.term) a.begin_shutdown(g_early.term);
  if (g_early.hup && !a.draining) a.reload("SIGHUP");
  uv_run(&a.loop, UV_RUN_DEFAULT);
  uv_loop_close(&a.loop);
  server.join();
  logf(LogLevel::Info, "stopped");
  return 0;
}

}  // namespace lb
