#include "lb/metrics.hpp"

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
    default:
      return "error";
  }
}

const char* to_string(TlsFail f) {
  switch (f) {
    case TlsFail::NoSharedCipher:
      return "no_shared_cipher";
    case TlsFail::UnknownCa:
      return "unknown_ca";
    case TlsFail::BadCertificate:
      return "bad_certificate";
    case TlsFail::NoClientCert:
      return "no_client_cert";
    case TlsFail::NotTls:
      return "not_tls";
    case TlsFail::HttpRequest:
      return "http_request";
    case TlsFail::Timeout:
      return "timeout";
    case TlsFail::Closed:
      return "closed";
    default:
      return "other";
  }
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
                            .Help("Failed or timed-out connection attempts to each backend")
                            .Register(reg)),
      tls_handshakes_fam_(BuildCounter()
                              .Name("mqttlb_tls_handshakes_total")
                              .Help("TLS handshakes completed on each TLS listener, by resumption")
                              .Register(reg)),
      tls_failures_fam_(BuildCounter()
                            .Name("mqttlb_tls_handshake_failures_total")
                            .Help("TLS handshakes failed on each TLS listener, by reason")
                            .Register(reg)),
      tls_duration_fam_(BuildHistogram()
                            .Name("mqttlb_tls_handshake_duration_seconds")
                            .Help("Time from accept to a completed TLS handshake")
                            .Register(reg)) {
  const char* rej[] = {"max_connections",   "max_connections_per_ip", "shutting_down",
                       "connect_timeout",   "client_closed",          "no_backend",
                       "unsupported_level", "tls_handshake"};
  for (size_t i = 0; i < std::size(rej); ++i)
    rejected_[i] = &rejected_fam_.Add({{"reason", rej[i]}});
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
  auto& bytes =
      BuildCounter().Name("mqttlb_bytes_total").Help("Bytes forwarded, by direction").Register(reg);
  bytes_c2b = &bytes.Add({{"direction", "client_to_backend"}});
  bytes_b2c = &bytes.Add({{"direction", "backend_to_client"}});
  takeovers =
      &BuildCounter()
           .Name("mqttlb_takeovers_total")
           .Help("Older sessions closed because their client id connected to another backend")
           .Register(reg)
           .Add({});
  peek_seconds = &BuildHistogram()
                      .Name("mqttlb_connect_peek_duration_seconds")
                      .Help("Time from accept to a complete, valid CONNECT")
                      .Register(reg)
                      .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005,
                                                                       0.01, 0.025, 0.05, 0.1, 0.25,
                                                                       0.5, 1, 2.5, 5, 10});
  auto& reloads = BuildCounter()
                      .Name("mqttlb_config_reloads_total")
                      .Help("SIGHUP reloads, by result")
                      .Register(reg);
  reloads_ok = &reloads.Add({{"result", "ok"}});
  reloads_failed = &reloads.Add({{"result", "invalid"}});
}

BackendMetrics Metrics::backend(const std::string& name) {
  BackendMetrics m;
  m.active = &backend_active_fam_.Add({{"backend", name}});
  m.sessions = &backend_sessions_fam_.Add({{"backend", name}});
  m.connect_failures = &backend_fail_fam_.Add({{"backend", name}});
  return m;
}

TlsListenerMetrics Metrics::tls_listener(const std::string& listener) {
  TlsListenerMetrics m;
  m.full = &tls_handshakes_fam_.Add({{"listener", listener}, {"resumed", "false"}});
  m.resumed = &tls_handshakes_fam_.Add({{"listener", listener}, {"resumed", "true"}});
  for (size_t i = 0; i < m.failures.size(); ++i)
    m.failures[i] = &tls_failures_fam_.Add(
        {{"listener", listener}, {"reason", to_string(static_cast<TlsFail>(i))}});
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
