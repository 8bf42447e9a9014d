// The balancer's metric families (docs/metrics.md). Built once in the main
// thread from the Registry created in main.cpp; workers only increment through
// the pre-resolved pointers below (no label lookups on the data path).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <string>

#include "mqtt/connect.hpp"

namespace lb {

// Why a connection was closed before reaching a backend.
enum class Reject : uint8_t {
  MaxConnections,
  MaxConnectionsPerIp,
  ShuttingDown,
  ConnectTimeout,    // CONNECT not complete within connect_timeout_ms
  ClientClosed,      // EOF/reset before a complete CONNECT
  NoBackend,         // no healthy backend, or every attempt failed (CONNACK 0x03/0x88 sent)
  UnsupportedLevel,  // CONNACK 0x01/0x84 sent
  TlsHandshake,      // TLS listener: the handshake failed (see mqttlb_tls_handshake_failures_total)
  BadConnect,        // any other invalid first packet: see the `reason` label (ConnectError)
  Count
};

// Why an established session ended.
enum class CloseReason : uint8_t {
  Client,   // client closed (EOF after half-close, or reset)
  Backend,  // backend closed
  IdleTimeout,
  Takeover,         // same client id connected to another backend
  BackendShutdown,  // health on_down: shutdown-sessions
  Shutdown,         // mqttlb stopping
  Error,
  Count
};

const char* to_string(CloseReason r);
// Metric label for a CONNECT parse error ("not_connect", "too_large", ...).
const char* reject_label(mqtt::ConnectError e);

// Why a TLS handshake on a listener failed (label `reason`, docs/metrics.md).
enum class TlsFail : uint8_t {
  NoSharedCipher,  // no common protocol version / cipher suite / signature algorithm
  UnknownCa,       // client certificate from an unknown CA, or the client refused ours
  BadCertificate,  // other certificate verification failures (expired, bad signature...)
  NoClientCert,    // verify_client required and the client sent none
  NotTls,          // the first bytes are not a TLS record (e.g. plain MQTT)
  HttpRequest,     // the first bytes are an HTTP request
  Timeout,         // not done within limits.connect_timeout_ms
  Closed,          // the client closed or reset the connection during the handshake
  Other,
  Count
};
const char* to_string(TlsFail f);

// Per TLS listener, resolved once in the main thread (Worker::listen).
struct TlsListenerMetrics {
  prometheus::Counter* full = nullptr;     // handshakes completed, resumed="false"
  prometheus::Counter* resumed = nullptr;  // handshakes completed, resumed="true"
  std::array<prometheus::Counter*, static_cast<size_t>(TlsFail::Count)> failures{};
  prometheus::Histogram* duration = nullptr;
};

struct BackendMetrics {
  prometheus::Gauge* active = nullptr;
  prometheus::Counter* sessions = nullptr;
  prometheus::Counter* connect_failures = nullptr;
};

class Metrics {
 public:
  explicit Metrics(prometheus::Registry& reg);
  // Resolves (or re-resolves) a backend's labelled series. Main thread only.
  BackendMetrics backend(const std::string& name);
  prometheus::Counter* accepted(const std::string& listener);
  TlsListenerMetrics tls_listener(const std::string& listener);

  prometheus::Counter& rejected(Reject r) { return *rejected_[static_cast<size_t>(r)]; }
  prometheus::Counter& bad_connect(mqtt::ConnectError e) {
    return *bad_connect_[static_cast<size_t>(e) % bad_connect_.size()];
  }
  prometheus::Counter& closed(CloseReason r) { return *closed_[static_cast<size_t>(r)]; }

  prometheus::Gauge* connections_active = nullptr;
  prometheus::Counter* bytes_c2b = nullptr;
  prometheus::Counter* bytes_b2c = nullptr;
  prometheus::Counter* takeovers = nullptr;
  prometheus::Histogram* peek_seconds = nullptr;
  prometheus::Counter* reloads_ok = nullptr;
  prometheus::Counter* reloads_failed = nullptr;

 private:
  prometheus::Family<prometheus::Counter>& accepted_fam_;
  prometheus::Family<prometheus::Counter>& rejected_fam_;
  prometheus::Family<prometheus::Counter>& closed_fam_;
  prometheus::Family<prometheus::Gauge>& backend_active_fam_;
  prometheus::Family<prometheus::Counter>& backend_sessions_fam_;
  prometheus::Family<prometheus::Counter>& backend_fail_fam_;
  prometheus::Family<prometheus::Counter>& tls_handshakes_fam_;
  prometheus::Family<prometheus::Counter>& tls_failures_fam_;
  prometheus::Family<prometheus::Histogram>& tls_duration_fam_;
  std::array<prometheus::Counter*, static_cast<size_t>(Reject::Count)> rejected_{};
  std::array<prometheus::Counter*, 32> bad_connect_{};
  std::array<prometheus::Counter*, static_cast<size_t>(CloseReason::Count)> closed_{};
};

}  // namespace lb
