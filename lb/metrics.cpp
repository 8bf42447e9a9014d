#include "lb/metrics.hpp"

#include <cstdio>
#include <iterator>

namespace lb {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

const char* to_string(CloseReason r) {
  switch (r) {
    case CloseReason::Client:
      return "client";
    case CloseReason::Backend:
      return "backend";
    case CloseReason::IdleTimeout:
      return "idle_timeout";
    case CloseReason::Takeover:
      return "takeover";
    case CloseReason::BackendShutdown:
      return "backend_shutdown";
    case CloseReason::Shutdown:
      return "shutdown";
    case CloseReason::Evacuated:
      return "evacuated";
    case CloseReason::Kicked:
      return "kicked";
    default:
      return "error";
  }
}

const char* to_string(Reject r) {
  static const char* const names[] = {"max_connections",
                                      "max_connections_per_ip",
                                      "shutting_down",
                                      "connect_timeout",
                                      "client_closed",
                                      "no_backend",
                                      "unsupported_level",
                                      "tls_handshake",
                                      "invalid_connect",
                                      "memory_budget",
                                      "backend_busy",
                                      "local_resources",
                                      "connect_rate_global",
                                      "connect_rate_per_ip",
                                      "flapping",
                                      "identity_mismatch",
                                      "websocket"};
  static_assert(std::size(names) == static_cast<size_t>(Reject::Count));
  return names[static_cast<size_t>(r) % std::size(names)];
}

const char* to_string(AttemptFail f) {
  static const char* const names[] = {"refused",       "connect_timeout", "tls",
                                      "closed",        "connack_timeout", "protocol",
                                      "queue_timeout", "queue_full"};
  static_assert(std::size(names) == static_cast<size_t>(AttemptFail::Count));
  return names[static_cast<size_t>(f) % std::size(names)];
}

void ConnackCounters::count(uint8_t code) {
  prometheus::Counter* c = by_code_[code].load(std::memory_order_acquire);
  if (!c) {
    char label[8];
    std::snprintf(label, sizeof label, "0x%02x", code);
    c = &fam_->Add({{"backend", backend_}, {"code", label}});  // Family::Add is thread-safe
    by_code_[code].store(c, std::memory_order_release);
  }
  c->Increment();
}

const char* reject_label(mqtt::ConnectError e) {
  using E = mqtt::ConnectError;
  switch (e) {
    case E::NotConnect:
      return "not_connect";
    case E::BadFixedHeaderFlags:
      return "bad_fixed_header_flags";
    case E::MalformedLength:
      return "malformed_length";
    case E::TooLarge:
      return "too_large";
    case E::BadProtocolName:
      return "bad_protocol_name";
    case E::UnsupportedLevel:
      return "unsupported_level";
    case E::ReservedFlag:
      return "reserved_flag";
    case E::WillQos:
      return "will_qos";
    case E::WillRetain:
      return "will_retain";
    case E::PasswordWithoutUsername:
      return "password_without_username";
    case E::Truncated:
      return "truncated";
    case E::TrailingBytes:
      return "trailing_bytes";
    case E::InvalidUtf8:
      return "invalid_utf8";
    case E::ClientIdRejected:
      return "client_id_rejected";
    case E::EmptyClientIdNeedsClean:
      return "empty_client_id_needs_clean";
    case E::BadProperty:
      return "bad_property";
    case E::DuplicateProperty:
      return "duplicate_property";
    case E::BadPropertyValue:
      return "bad_property_value";
    case E::AuthDataWithoutMethod:
      return "auth_data_without_method";
    default:
      return "invalid_connect";
  }
}

Metrics::Metrics(prometheus::Registry& reg)
    : accepted_fam_(BuildCounter()
                        .Name("mqttlb_connections_accepted_total")
                        .Help("TCP connections accepted, by listener")
                        .Register(reg)),
      rejected_fam_(BuildCounter()
                        .Name("mqttlb_connections_rejected_total")
                        .Help("Connections closed before reaching a backend, by reason")
                        .Register(reg)),
      closed_fam_(BuildCounter()
                      .Name("mqttlb_sessions_closed_total")
                      .Help("Forwarded sessions ended, by reason")
                      .Register(reg)),
      backend_active_fam_(
          BuildGauge()
              .Name("mqttlb_backend_sessions_active")
              .Help("Sessions currently forwarded to (or connecting to) each backend")
              .Register(reg)),
      backend_sessions_fam_(BuildCounter()
                                .Name("mqttlb_backend_sessions_total")
                                .Help("Sessions established to each backend")
                                .Register(reg)),
      backend_fail_fam_(BuildCounter()
                            .Name("mqttlb_backend_connect_failures_total")
                            .Help("Failed placement attempts on each backend (any reason)")
                            .Register(reg)),
      backend_attempt_fam_(BuildCounter()
                               .Name("mqttlb_backend_attempt_failures_total")
                               .Help("Failed placement attempts on each backend, by reason")
                               .Register(reg)),
      backend_connecting_fam_(
          BuildGauge()
              .Name("mqttlb_backend_connecting")
              .Help("Connect slots in use on each backend (TCP connect until CONNACK)")
              .Register(reg)),
      backend_queue_fam_(BuildGauge()
                             .Name("mqttlb_backend_queue_length")
                             .Help("Clients waiting for a connect slot on each backend")
                             .Register(reg)),
      connacks_fam_(BuildCounter()
                        .Name("mqttlb_backend_connacks_total")
                        .Help("CONNACKs received from each backend, by return/reason code")
                        .Register(reg)),
      tls_handshakes_fam_(BuildCounter()
                              .Name("mqttlb_tls_handshakes_total")
                              .Help("TLS handshakes completed on each TLS listener, by resumption")
                              .Register(reg)),
      tls_failures_fam_(BuildCounter()
                            .Name("mqttlb_tls_handshake_failures_total")
                            .Help("TLS handshakes failed on each TLS listener, by reason")
                            .Register(reg)),
      tls_records_fam_(BuildCounter()
                           .Name("mqttlb_tls_record_layer_total")
                           .Help("Placed TLS sessions by who protects their records: mqttlb "
                                 "(handed over, OpenSSL's state freed) or openssl")
                           .Register(reg)),
      tls_duration_fam_(BuildHistogram()
                            .Name("mqttlb_tls_handshake_duration_seconds")
                            .Help("Time from accept to a completed TLS handshake")
                            .Register(reg)) {
  for (size_t i = 0; i < rejected_.size(); ++i)
    rejected_[i] = &rejected_fam_.Add({{"reason", to_string(static_cast<Reject>(i))}});
  // BadConnect has one series per ConnectError; the generic slot holds "invalid_connect".
  rejected_[static_cast<size_t>(Reject::BadConnect)] =
      &rejected_fam_.Add({{"reason", "invalid_connect"}});
  for (size_t e = 0; e < bad_connect_.size(); ++e) {
    auto ce = static_cast<mqtt::ConnectError>(e);
    const char* label = reject_label(ce);
    if (ce == mqtt::ConnectError::UnsupportedLevel) label = "unsupported_level";
    bad_connect_[e] = &rejected_fam_.Add({{"reason", label}});
  }
  for (size_t r = 0; r < closed_.size(); ++r)
    closed_[r] = &closed_fam_.Add({{"reason", to_string(static_cast<CloseReason>(r))}});

  connections_active = &BuildGauge()
                            .Name("mqttlb_connections_active")
                            .Help("Client connections currently open (any phase)")
                            .Register(reg)
                            .Add({});
  connections_limit =
      &BuildGauge()
           .Name("mqttlb_connections_limit")
           .Help("limits.max_connections in force (configured, or derived from the open-files limit)")
           .Register(reg)
           .Add({});
  auto& bytes =
      BuildCounter().Name("mqttlb_bytes_total").Help("Bytes forwarded, by direction").Register(reg);
  bytes_c2b = &bytes.Add({{"direction", "client_to_backend"}});
  bytes_b2c = &bytes.Add({{"direction", "backend_to_client"}});
  // cause: where the newer connection came in (docs/metrics.md); sum over
  // cause is the family's meaning before replicas shared a store.
  auto& takeover_fam =
      BuildCounter()
          .Name("mqttlb_takeovers_total")
          .Help("Older sessions closed because their client id connected to another backend")
          .Register(reg);
  takeovers = &takeover_fam.Add({{"cause", "same_replica"}});
  takeovers_cross = &takeover_fam.Add({{"cause", "cross_replica"}});
  peek_seconds = &BuildHistogram()
                      .Name("mqttlb_connect_peek_duration_seconds")
                      .Help("Time from accept to a complete, valid CONNECT")
                      .Register(reg)
                      .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005,
                                                                       0.01, 0.025, 0.05, 0.1, 0.25,
                                                                       0.5, 1, 2.5, 5, 10});
  place_seconds = &BuildHistogram()
                       .Name("mqttlb_place_duration_seconds")
                       .Help("From a complete CONNECT to the broker's accepting CONNACK")
                       .Register(reg)
                       .Add({}, prometheus::Histogram::BucketBoundaries{
                                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1, 2.5, 5, 10});
  auto& accept_errors = BuildCounter()
                            .Name("mqttlb_accept_errors_total")
                            .Help("accept() failures on the listeners, by error")
                            .Register(reg);
  const char* aerr[] = {"emfile", "enfile", "enobufs", "enomem", "other"};
  for (size_t i = 0; i < accept_errors_.size(); ++i)
    accept_errors_[i] = &accept_errors.Add({{"error", aerr[i]}});
  auto& budget = BuildGauge()
                     .Name("mqttlb_memory_budget_bytes")
                     .Help("Bytes held for CONNECT buffers and queued writes, and the budget")
                     .Register(reg);
  budget_used = &budget.Add({{"kind", "used"}});
  budget_limit = &budget.Add({{"kind", "limit"}});
  auto& tables = BuildGauge()
                     .Name("mqttlb_table_entries")
                     .Help("Entries in the shared client tables")
                     .Register(reg);
  affinity_entries = &tables.Add({{"table", "affinity"}});
  registry_entries = &tables.Add({{"table", "sessions"}});
  auto& workers = BuildGauge()
                      .Name("mqttlb_workers")
                      .Help("Worker threads: accepting, or retired by a reload and still draining")
                      .Register(reg);
  workers_accepting = &workers.Add({{"state", "accepting"}});
  workers_retiring = &workers.Add({{"state", "retiring"}});
  auto& connects = BuildCounter()
                       .Name("mqttlb_connects_total")
                       .Help("Valid CONNECTs read, by protocol version")
                       .Register(reg);
  connects_by_version = {&connects.Add({{"version", "3.1"}}), &connects.Add({{"version", "3.1.1"}}),
                         &connects.Add({{"version", "5.0"}})};
  auto& clean = BuildCounter()
                    .Name("mqttlb_connects_clean_start_total")
                    .Help("Valid CONNECTs by clean start (3.x clean session) flag")
                    .Register(reg);
  connects_clean = {&clean.Add({{"clean_start", "false"}}), &clean.Add({{"clean_start", "true"}})};
  keep_alive_seconds = &BuildHistogram()
                            .Name("mqttlb_connect_keep_alive_seconds")
                            .Help("Keep alive asked for in CONNECT (0: none)")
                            .Register(reg)
                            .Add({}, prometheus::Histogram::BucketBoundaries{
                                         0, 10, 30, 60, 120, 300, 600, 1200, 3600, 65535});
  session_seconds =
      &BuildHistogram()
           .Name("mqttlb_session_duration_seconds")
           .Help("From a broker's accepting CONNACK to the end of the session")
           .Register(reg)
           .Add({}, prometheus::Histogram::BucketBoundaries{1, 10, 60, 300, 900, 3600, 4 * 3600,
                                                            12 * 3600, 86400, 7 * 86400});
  auto& aff = BuildCounter()
                  .Name("mqttlb_affinity_lookups_total")
                  .Help("Placements by affinity outcome")
                  .Register(reg);
  affinity_hit = &aff.Add({{"result", "hit"}});
  affinity_miss = &aff.Add({{"result", "miss"}});
  affinity_moved = &aff.Add({{"result", "replaced"}});
  evacuated = &BuildCounter()
                   .Name("mqttlb_evacuated_sessions_total")
                   .Help("Sessions moved off their backend (evacuation, removed backend, upgrade)")
                   .Register(reg)
                   .Add({});
  auto& fwd = BuildGauge()
                  .Name("mqttlb_sessions_forwarding")
                  .Help("Placed sessions by forwarding path (userspace pump or kernel sockhash)")
                  .Register(reg);
  sessions_userspace = &fwd.Add({{"path", "userspace"}});
  sessions_kernel = &fwd.Add({{"path", "kernel"}});
  kernel_joins = &BuildCounter()
                      .Name("mqttlb_kernel_joins_total")
                      .Help("Sessions whose sockets were joined for in-kernel forwarding")
                      .Register(reg)
                      .Add({});
  auto& kpk = BuildCounter()
                  .Name("mqttlb_kernel_packets_total")
                  .Help("MQTT packets forwarded in the kernel (joined sessions), by direction")
                  .Register(reg);
  kernel_packets_c2b = &kpk.Add({{"direction", "client_to_backend"}});
  kernel_packets_b2c = &kpk.Add({{"direction", "backend_to_client"}});
  auto& fb = BuildCounter()
                 .Name("mqttlb_kernel_fallbacks_total")
                 .Help(
                     "Sessions that asked for in-kernel forwarding and ran (or went back) to "
                     "the userspace pump, by reason")
                 .Register(reg);
  for (size_t i = 0; i < kernel_fallbacks.size(); ++i)
    kernel_fallbacks[i] = &fb.Add({{"reason", to_string(static_cast<SpliceFallback>(i))}});
  kernel_overreads = &BuildCounter()
                          .Name("mqttlb_kernel_overreads_total")
                          .Help("Taken-back kernel sessions closed because a socket gave userspace "
                                "more bytes than TCP received on it (a kernel sockmap defect)")
                          .Register(reg)
                          .Add({});
  BuildGauge()
      .Name("mqttlb_build_info")
      .Help("Always 1; the labels say which mqttlb this is")
      .Register(reg)
      .Add({{"version", MQTTLB_VERSION}})
      .Set(1);
  cert_expiry = &BuildGauge()
                     .Name("mqttlb_tls_certificate_expiry_timestamp_seconds")
                     .Help("When each TLS listener's certificate expires (Unix time)")
                     .Register(reg);
  tls_paced = &BuildCounter()
                   .Name("mqttlb_tls_accepts_paced_total")
                   .Help("Times a TLS listener waited for limits.tls_handshake_rate")
                   .Register(reg)
                   .Add({});
  auto& ws_hs = BuildCounter()
                    .Name("mqttlb_websocket_handshakes_total")
                    .Help(
                        "WebSocket handshakes, by side (client: on a websocket listener; "
                        "backend: to a broker) and result")
                    .Register(reg);
  auto& ws_err =
      BuildCounter()
          .Name("mqttlb_websocket_protocol_errors_total")
          .Help("WebSocket connections closed for a framing violation, by side and reason")
          .Register(reg);
  for (size_t side = 0; side < 2; ++side) {
    const char* s = side == 0 ? "client" : "backend";
    for (size_t r = 0; r < ws_handshakes[side].size(); ++r)
      ws_handshakes[side][r] = &ws_hs.Add(
          {{"side", s}, {"result", net::ws::to_string(static_cast<net::ws::Result>(r))}});
    for (size_t e = 1; e < ws_protocol_errors[side].size(); ++e)  // [0] is FrameError::None
      ws_protocol_errors[side][e] = &ws_err.Add(
          {{"side", s}, {"reason", net::ws::to_string(static_cast<net::ws::FrameError>(e))}});
    ws_protocol_errors[side][0] = ws_protocol_errors[side][1];
  }
  auto& reloads = BuildCounter()
                      .Name("mqttlb_config_reloads_total")
                      .Help("SIGHUP reloads, by result")
                      .Register(reg);
  reloads_ok = &reloads.Add({{"result", "ok"}});
  reloads_failed = &reloads.Add({{"result", "invalid"}});
}

void ConnackCounters::remove_all() {
  for (auto& slot : by_code_)
    if (prometheus::Counter* c = slot.exchange(nullptr)) fam_->Remove(c);
}

void Metrics::remove_backend(const BackendMetrics& m) {
  backend_active_fam_.Remove(m.active);
  backend_sessions_fam_.Remove(m.sessions);
  backend_fail_fam_.Remove(m.connect_failures);
  for (auto* c : m.attempt_failures) backend_attempt_fam_.Remove(c);
  backend_connecting_fam_.Remove(m.connecting);
  backend_queue_fam_.Remove(m.queued);
}

BackendMetrics Metrics::backend(const std::string& name) {
  BackendMetrics m;
  m.active = &backend_active_fam_.Add({{"backend", name}});
  m.sessions = &backend_sessions_fam_.Add({{"backend", name}});
  m.connect_failures = &backend_fail_fam_.Add({{"backend", name}});
  for (size_t i = 0; i < m.attempt_failures.size(); ++i)
    m.attempt_failures[i] = &backend_attempt_fam_.Add(
        {{"backend", name}, {"reason", to_string(static_cast<AttemptFail>(i))}});
  m.connecting = &backend_connecting_fam_.Add({{"backend", name}});
  m.queued = &backend_queue_fam_.Add({{"backend", name}});
  m.connacks = &connacks_fam_;
  return m;
}

TlsListenerMetrics Metrics::tls_listener(const std::string& listener) {
  TlsListenerMetrics m;
  m.full = &tls_handshakes_fam_.Add({{"listener", listener}, {"resumed", "false"}});
  m.resumed = &tls_handshakes_fam_.Add({{"listener", listener}, {"resumed", "true"}});
  for (size_t i = 0; i < m.failures.size(); ++i)
    m.failures[i] = &tls_failures_fam_.Add(
        {{"listener", listener}, {"reason", net::to_string(static_cast<net::TlsFail>(i))}});
  m.records_mqttlb = &tls_records_fam_.Add({{"listener", listener}, {"layer", "mqttlb"}});
  m.records_openssl = &tls_records_fam_.Add({{"listener", listener}, {"layer", "openssl"}});
  m.duration = &tls_duration_fam_.Add(
      {{"listener", listener}},
      prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25, 0.5, 1, 2.5, 5, 10});
  return m;
}

prometheus::Counter* Metrics::accepted(const std::string& listener) {
  return &accepted_fam_.Add({{"listener", listener}});
}

}  // namespace lb
