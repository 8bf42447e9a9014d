#include "lb/app.hpp"

#include <sys/socket.h>
#include <unistd.h>
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
#include "lb/upgrade.hpp"
#include "net/mailbox.hpp"

namespace lb {

namespace {
EarlySignals g_early;
void early_handler(int sig) {
  if (sig == SIGHUP)
    g_early.hup = 1;
  else if (sig == SIGUSR2)
    g_early.usr2 = 1;
  else
    g_early.term = sig;
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

EarlySignals& early_signals() {
  return g_early;
}

void install_early_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = early_handler;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR2}) sigaction(sig, &sa, nullptr);
}

namespace {

// The main thread's loop: signals, reloads, the shutdown sequence, binary
// upgrades. Every member is touched on that thread only (other threads post
// through `mailbox`).
struct App {
  Server* server = nullptr;
  std::string config_path;
  AppHooks hooks;
  net::Mailbox mailbox;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint, sighup, sigusr2;
  uv_timer_t drain, gauges, endpoints;
  bool draining = false;
  bool finished = false;
  uint64_t drain_started = 0;
  uint64_t grace_ms = 0;
  // Binary upgrade, old side: the pair to the new generation while it starts
  // (and until we exit), its pid.
  int next_fd = -1;
  pid_t next_pid = -1;
  uv_poll_t next_poll;
  bool next_polling = false;
  uv_timer_t next_deadline;
  // New side: the pair to the old generation (EOF: it exited).
  uv_poll_t prev_poll;
  bool prev_polling = false;

  void finish() {
    if (finished) return;
    finished = true;
    logf(LogLevel::Info, "closing %lld remaining connections",
         static_cast<long long>(server->active_connections()));
    server->close_all_sessions();
    for (uv_signal_t* s : {&sigterm, &sigint, &sighup, &sigusr2})
      uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
    for (uv_timer_t* t : {&drain, &gauges, &endpoints, &next_deadline})
      uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
    if (next_polling) uv_close(reinterpret_cast<uv_handle_t*>(&next_poll), nullptr);
    if (prev_polling) uv_close(reinterpret_cast<uv_handle_t*>(&prev_poll), nullptr);
    next_polling = prev_polling = false;
    if (hooks.control) {
      hooks.control->set_reloader(nullptr);
      hooks.control->set_upgrader(nullptr);
    }
    mailbox.close();
  }

  void drain_for(uint64_t ms) {
    draining = true;
    grace_ms = ms;
    drain_started = uv_now(&loop);
    uv_timer_start(&drain, drain_cb, 0, 50);
  }

  void begin_shutdown(int signum) {
    if (draining) {  // second signal: do not wait any longer
      finish();
      return;
    }
    uint32_t grace = server->snapshot()->cfg.limits.shutdown_grace_ms;
    logf(LogLevel::Info, "signal %d: stop accepting; draining %lld connections for up to %u ms",
         signum, static_cast<long long>(server->active_connections()), grace);
    server->stop_accepting();
    drain_for(grace);
  }

  static void drain_cb(uv_timer_t* t) {
    auto* a = static_cast<App*>(t->data);
    if (a->finished) return;
    if (a->server->active_connections() == 0 || uv_now(&a->loop) - a->drain_started >= a->grace_ms)
      a->finish();
  }

  // ---- reload -----------------------------------------------------------------

  ReloadOutcome reload(const char* trigger) {
    ReloadOutcome out;
    out.trigger = trigger;
    out.wall_ms = wall_ms();
    Control* control = hooks.control;
    conf::LoadResult r = load_config(config_path);
    std::vector<std::string> errors = r.errors;
    std::unique_ptr<Server::Prepared> prepared;
    // Everything that can fail first (bind new listeners, new workers' sockets,
    // new metrics/admin binds); a reload that cannot be applied whole is not
    // applied at all.
    if (r.ok()) prepared = server->prepare(*r.config, errors);
    if (!prepared) {
      server->metrics().reloads_failed->Increment();
      logf(LogLevel::Error,
           "reload (%s): %s cannot be applied; keeping the running config "
           "(%zu errors)",
           trigger, config_path.c_str(), errors.size());
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
    if (hooks.on_reload) hooks.on_reload(*r.config);
    if (control) control->note_reload(out);
    return out;
  }

  // ---- binary upgrade, old side -------------------------------------------------------

  AdminReply upgrade() {
    if (draining) return AdminReply::error(409, "mqttlb is draining (shutdown or upgrade)");
    if (next_fd >= 0)
      return AdminReply::error(409, "an upgrade is already in progress (new generation pid " +
                                        std::to_string(next_pid) + ")");
    if (prev_polling)
      return AdminReply::error(409,
                               "the previous generation is still draining; upgrade again once it "
                               "exited");
    std::string exe = upgrade::self_exe();
    int pair[2];
    if (exe.empty() || ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
      return AdminReply::error(500, "cannot set up the upgrade channel");
    std::string err;
    pid_t pid = upgrade::spawn(exe, hooks.args, pair[1], err);
    ::close(pair[1]);
    upgrade::Handoff h;
    if (pid > 0) {
      h.listeners = server->listening_fds();
      h.affinity = server->affinity().dump();
    }
    if (pid < 0 || !upgrade::send_handoff(pair[0], h, err)) {
      ::close(pair[0]);
      if (pid > 0) ::kill(pid, SIGTERM);
      logf(LogLevel::Error, "upgrade: cannot start %s: %s", exe.c_str(), err.c_str());
      return AdminReply::error(500, "upgrade: " + err);
    }
    size_t n = 0;
    for (const auto& [name, fds] : h.listeners) n += fds.size();
    logf(LogLevel::Info,
         "upgrade: started %s as pid %d; handed over %zu listening sockets and %zu affinity "
         "entries; waiting for it to be ready",
         exe.c_str(), static_cast<int>(pid), n, h.affinity.size());
    next_fd = pair[0];
    next_pid = pid;
    uv_poll_init(&loop, &next_poll, next_fd);
    next_poll.data = this;
    next_polling = true;
    uv_poll_start(&next_poll, UV_READABLE, next_cb);
    // Config load + first health round (bounded) + start: well under this.
    uv_timer_start(&next_deadline, next_deadline_cb, 120'000, 0);
    return {202, {{"upgrade", "started"}, {"pid", pid}}};
  }

  void upgrade_on_signal() {
    AdminReply r = upgrade();
    if (r.status >= 400)
      logf(LogLevel::Warn, "upgrade (SIGUSR2) refused: %s",
           r.body.value("error", std::string("?")).c_str());
  }

  void upgrade_failed(const std::string& why) {
    logf(LogLevel::Error,
         "upgrade: the new generation (pid %d) did not take over: %s; this "
         "process keeps serving",
         static_cast<int>(next_pid), why.c_str());
    if (next_pid > 0) ::kill(next_pid, SIGTERM);
    uv_timer_stop(&next_deadline);
    if (next_polling) {
      uv_poll_stop(&next_poll);
      uv_close(reinterpret_cast<uv_handle_t*>(&next_poll), nullptr);
      next_polling = false;
    }
    ::close(next_fd);
    next_fd = -1;
    next_pid = -1;
  }

  static void next_cb(uv_poll_t* p, int, int) {
    auto* a = static_cast<App*>(p->data);
    std::string err;
    pid_t ready = upgrade::wait_ready(a->next_fd, 0, err);
    if (ready < 0) return a->upgrade_failed(err);
    a->hand_over(ready);
  }

  static void next_deadline_cb(uv_timer_t* t) {
    static_cast<App*>(t->data)->upgrade_failed("not ready within 120 s");
  }

  // The new generation accepts on the shared sockets: stop accepting here and
  // move every session off (they reconnect to the new one, and to their broker).
  void hand_over(pid_t pid) {
    uv_timer_stop(&next_deadline);
    uv_poll_stop(&next_poll);  // keep the pair open until we exit: the new one waits for its EOF
    const conf::Upgrade& u = server->snapshot()->cfg.upgrade;
    logf(LogLevel::Info,
         "upgrade: new generation pid %d is ready; stopping accepting and moving %lld sessions "
         "off at %u/s for at most %u s",
         static_cast<int>(pid), static_cast<long long>(server->active_connections()),
         u.evict_rate_per_s, u.deadline_s);
    upgrade::sd_notify("MAINPID=" + std::to_string(pid) + "\nREADY=1");
    server->hand_over();  // stop accepting, without refusing connections still peeking
    if (hooks.endpoints_release) hooks.endpoints_release();
    auto ev = std::make_shared<Evacuation>();
    ev->rate_per_s = u.evict_rate_per_s;
    ev->deadline_ms = uint64_t{u.deadline_s} * 1000;
    ev->reason = 0x8B;  // server shutting down: reconnect (to the new generation)
    ev->started_wall_ms = wall_ms();
    server->start_evacuation(ev);
    drain_for(ev->deadline_ms + 5000);  // DISCONNECTs go out at packet boundaries, then FINs
  }

  // ---- new side ----------------------------------------------------------------

  static void prev_cb(uv_poll_t* p, int, int) {
    auto* a = static_cast<App*>(p->data);
    char c;
    if (::recv(a->hooks.old_generation_fd, &c, 1, MSG_DONTWAIT) > 0) return;
    logf(LogLevel::Info, "upgrade: the previous generation exited");
    uv_poll_stop(p);
    uv_close(reinterpret_cast<uv_handle_t*>(p), nullptr);
    a->prev_polling = false;
    ::close(a->hooks.old_generation_fd);
    a->hooks.old_generation_fd = -1;
  }

  static void endpoints_cb(uv_timer_t* t) {
    auto* a = static_cast<App*>(t->data);
    if (!a->hooks.endpoints_up || a->hooks.endpoints_up()) uv_timer_stop(t);
  }

  static void signal_cb(uv_signal_t* s, int signum) {
    auto* a = static_cast<App*>(s->data);
    if (signum == SIGHUP)
      a->reload("SIGHUP");
    else if (signum == SIGUSR2)
      a->upgrade_on_signal();
    else
      a->begin_shutdown(signum);
  }
};

// Runs fn on the App's loop and waits for its result (admin API threads).
template <typename T>
std::function<T()> on_loop(std::weak_ptr<App> weak, std::function<T(App&)> fn, T if_gone,
                           int timeout_s) {
  return [weak, fn, if_gone, timeout_s]() -> T {
    auto self = weak.lock();
    if (!self) return if_gone;
    auto p = std::make_shared<std::promise<T>>();
    auto f = p->get_future();
    App* raw = self.get();
    if (!self->mailbox.post([p, raw, fn] { p->set_value(fn(*raw)); })) return if_gone;
    self.reset();  // do not keep the App alive while waiting
    if (f.wait_for(std::chrono::seconds(timeout_s)) != std::future_status::ready) return if_gone;
    return f.get();
  };
}

}  // namespace

int run_until_signalled(Server& server, const std::string& config_path, AppHooks hooks) {
  // Shared: an admin API call may outlive this function by a moment.
  auto app = std::make_shared<App>();
  App& a = *app;
  a.server = &server;
  a.config_path = config_path;
  a.hooks = std::move(hooks);
  uv_loop_init(&a.loop);
  a.mailbox.init(&a.loop);
  if (Control* control = a.hooks.control) {
    ReloadOutcome gone;
    gone.trigger = "api";
    gone.errors = {"/: mqttlb is stopping, or the reload did not finish within 60 s"};
    control->set_reloader(on_loop<ReloadOutcome>(
        app, [](App& a) { return a.reload("api"); }, gone, 60));
    control->set_upgrader(on_loop<AdminReply>(
        app, [](App& a) { return a.upgrade(); }, AdminReply::error(503, "mqttlb is stopping"), 60));
  }
  for (uv_timer_t* t : {&a.drain, &a.gauges, &a.endpoints, &a.next_deadline}) {
    uv_timer_init(&a.loop, t);
    t->data = &a;
  }
  for (auto [h, sig] : {std::pair{&a.sigterm, SIGTERM},
                        {&a.sigint, SIGINT},
                        {&a.sighup, SIGHUP},
                        {&a.sigusr2, SIGUSR2}}) {
    uv_signal_init(&a.loop, h);
    h->data = &a;
    uv_signal_start(h, App::signal_cb, sig);
  }
  // Once per second: the gauges of shared state, and reaping what a reload retired.
  uv_timer_start(
      &a.gauges,
      [](uv_timer_t* t) {
        Server* srv = static_cast<App*>(t->data)->server;
        srv->update_gauges();
        srv->reap();
      },
      0, 1000);
  uv_timer_start(&a.endpoints, App::endpoints_cb, 0, 250);
  if (a.hooks.old_generation_fd >= 0) {
    uv_poll_init(&a.loop, &a.prev_poll, a.hooks.old_generation_fd);
    a.prev_poll.data = &a;
    a.prev_polling = true;
    uv_poll_start(&a.prev_poll, UV_READABLE | UV_DISCONNECT, App::prev_cb);
  }
  upgrade::sd_notify("READY=1");
  if (a.hooks.on_ready) a.hooks.on_ready();
  // What arrived before the handlers above replaced the early ones.
  if (g_early.term) a.begin_shutdown(g_early.term);
  if (g_early.hup && !a.draining) a.reload("SIGHUP");
  if (g_early.usr2 && !a.draining) a.upgrade_on_signal();
  uv_run(&a.loop, UV_RUN_DEFAULT);
  uv_loop_close(&a.loop);
  server.join();
  if (a.next_fd >= 0) ::close(a.next_fd);
  logf(LogLevel::Info, "stopped");
  return 0;
}

}  // namespace lb
