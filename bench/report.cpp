#include "bench/report.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace bench {

namespace {

double ms(uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}
double secs(uint64_t a, uint64_t b) {
  return b > a ? static_cast<double>(b - a) / 1e9 : 0;
}

nlohmann::json hist_json(const Histogram& h) {
  return {{"count", h.count()},
          {"min", ms(h.min())},
          {"mean", h.mean() / 1e6},
          {"p50", ms(h.percentile(50))},
          {"p90", ms(h.percentile(90))},
          {"p99", ms(h.percentile(99))},
          {"p999", ms(h.percentile(99.9))},
          {"max", ms(h.max())}};
}

void print_hist(const char* name, const Histogram& h) {
  if (!h.count()) return;
  std::printf("  %-22s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms  (n=%llu)\n", name,
              ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)),
              ms(h.percentile(99.9)), ms(h.max()), static_cast<unsigned long long>(h.count()));
}

}  // namespace

void print_report(const Runner& r, const Options& o, int exit_code) {
  const Stats& s = r.stats();
  double conn_span = secs(s.t_connect_first, s.t_connect_last);
  double conn_rate = conn_span > 0 ? static_cast<double>(s.connected) / conn_span : 0;
  uint64_t run_end = s.t_run_end ? s.t_run_end : s.t_run_start;
  double run_s = secs(s.t_run_start, run_end);
  double recv_s = secs(s.t_run_start, std::max(run_end, s.t_last_recv));
  if (o.mode == Mode::Sub) recv_s = secs(s.t_first_recv, s.t_last_recv);
  double sent_rate = run_s > 0 ? static_cast<double>(s.sent) / run_s : 0;
  double recv_rate = recv_s > 0 ? static_cast<double>(s.received) / recv_s : 0;
  uint64_t lost =
      o.mode == Mode::PubSub ? (s.expected > s.unique ? s.expected - s.unique : 0) : s.gaps;
  bool msgs = o.mode != Mode::Conn;

  if (o.json) {
    nlohmann::json j;
    j["mode"] = mode_name(o.mode);
    j["target"] = o.host + ":" + std::to_string(o.port);
    j["protocol_version"] = o.version;
    j["qos"] = o.qos;
    j["size"] = o.size;
    j["count"] = o.count;
    if (o.mode == Mode::PubSub) j["subscribers"] = o.subscribers;
    j["rate"] = o.rate;
    j["window"] = o.window;
    j["duration_s"] = o.duration;
    j["hold_s"] = o.hold;
    j["tls"] = o.tls;
    j["elapsed_s"] = r.elapsed_s();
    j["connections"] = {
        {"planned", s.planned},        {"attempted", s.attempted}, {"connected", s.connected},
        {"failed", s.failed},          {"lost", s.lost},           {"per_s", conn_rate},
        {"tls_resumed", s.tls_resumed}};
    j["tcp_connect_ms"] = hist_json(s.tcp_connect);
    j["connack_ms"] = hist_json(s.connack);
    j["handshake_ms"] = hist_json(s.handshake);
    j["failures"] = nlohmann::json::object();
    for (auto& [why, n] : s.failures) j["failures"][why] = n;
    if (msgs) {
      j["messages"] = {{"sent", s.sent},
                       {"acked", s.acked},
                       {"unacked", s.unacked},
                       {"received", s.received},
                       {"unique", s.unique},
                       {"duplicates", s.duplicates},
                       {"expected", s.expected},
                       {"lost", lost},
                       {"foreign", s.foreign},
                       {"window_resets", s.window_resets},
                       {"behind_schedule", s.behind},
                       {"publish_s", run_s},
                       {"sent_per_s", sent_rate},
                       {"received_per_s", recv_rate}};
      j["latency_ms"] = hist_json(s.latency);
      j["ack_latency_ms"] = hist_json(s.ack_latency);
    }
    j["error"] = r.error();
    j["exit_code"] = exit_code;
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
    return;
  }

  std::printf("mqttlb-bench %s -> %s:%u  MQTT %s  QoS %u  %s\n", mode_name(o.mode), o.host.c_str(),
              o.port,
              o.version == 5   ? "5.0"
              : o.version == 4 ? "3.1.1"
                               : "3.1",
              o.qos, o.tls ? "TLS" : "plain TCP");
  std::printf("connections: %llu planned, %llu connected, %llu failed, %llu lost; %.0f conn/s\n",
              static_cast<unsigned long long>(s.planned),
              static_cast<unsigned long long>(s.connected),
              static_cast<unsigned long long>(s.failed), static_cast<unsigned long long>(s.lost),
              conn_rate);
  print_hist("TCP connect", s.tcp_connect);
  print_hist("CONNECT->CONNACK", s.connack);
  print_hist("connect()->CONNACK", s.handshake);
  if (o.tls && o.resume)
    std::printf("  TLS sessions resumed: %llu\n", static_cast<unsigned long long>(s.tls_resumed));
  if (msgs) {
    std::printf(
        "messages: sent %llu (%.0f/s over %.1fs), acked %llu, received %llu (%.0f/s), lost %llu, "
        "duplicates %llu\n",
        static_cast<unsigned long long>(s.sent), sent_rate, run_s,
        static_cast<unsigned long long>(s.acked), static_cast<unsigned long long>(s.received),
        recv_rate, static_cast<unsigned long long>(lost),
        static_cast<unsigned long long>(s.duplicates));
    if (s.unacked)
      std::printf("  unacknowledged at the end: %llu\n",
                  static_cast<unsigned long long>(s.unacked));
    if (s.window_resets)
      std::printf("  closed-loop windows reopened after a stall: %llu\n",
                  static_cast<unsigned long long>(s.window_resets));
    if (s.behind)
      std::printf("  behind the requested rate by %llu messages\n",
                  static_cast<unsigned long long>(s.behind));
    print_hist("end-to-end latency", s.latency);
    print_hist("PUBLISH->ack latency", s.ack_latency);
  }
  if (!s.failures.empty()) {
    std::printf("failures:\n");
    for (auto& [why, n] : s.failures)
      std::printf("  %llu x %s\n", static_cast<unsigned long long>(n), why.c_str());
  }
  std::fflush(stdout);
}

}  // namespace bench
