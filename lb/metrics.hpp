// The balancer's metric families (docs/metrics.md). Built once in the main
// thread from the Registry created in main.cpp; workers only increment through
// pre-resolved pointers (the one exception, ConnackCounters, resolves a
// backend's series for a CONNACK code the first time that code is seen: once
// per backend and code, never per packet).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "lb/kernel_splice.hpp"
#include "lb/outcome.hpp"
#include "net/tls_transport.hpp"
#include "net/ws_frame.hpp"
#include "net/ws_http.hpp"

namespace lb {

// Why one placement attempt on a backend failed (label `reason` of
// mqttlb_backend_attempt_failures_total).
enum class AttemptFail : uint8_t {
  Refused,         // TCP connect refused / unreachable / reset
  ConnectTimeout,  // no TCP (+TLS) connection within balance.backend_connect_timeout_ms
  Tls,             // TLS handshake to the backend failed
  Closed,          // the broker closed before its CONNACK
  ConnackTimeout,  // no CONNACK within limits.backend_connack_timeout_ms
  Protocol,        // the broker's first packet was not a CONNACK (or too large)
  QueueTimeout,    // waited limits.backend_queue_timeout_ms for a connect slot
  QueueFull,       // the backend's connect queue was full
  Count
};
const char* to_string(AttemptFail f);

// Per TLS listener, resolved once in the main thread (Worker::listen).
struct TlsListenerMetrics {
  prometheus::Counter* full = nullptr;     // handshakes completed, resumed="false"
  prometheus::Counter* resumed = nullptr;  // handshakes completed, resumed="true"
  std::array<prometheus::Counter*, static_cast<size_t>(net::TlsFail::Count)> failures{};
  prometheus::Histogram* duration = nullptr;
  // Placed sessions by who protects their records (docs/tls.md "Record layer handover").
  prometheus::Counter* records_mqttlb = nullptr;
  prometheus::Counter* records_openssl = nullptr;
};

// mqttlb_backend_connacks_total{backend, code}: series made on first use.
class ConnackCounters {
 public:
  ConnackCounters(prometheus::Family<prometheus::Counter>* fam, std::string backend)
      : fam_(fam), backend_(std::move(backend)) {}
  void count(uint8_t code);  // any thread
  void remove_all();         // the backend is gone and nobody counts any more

 private:
  prometheus::Family<prometheus::Counter>* fam_;
  std::string backend_;
  std::array<std::atomic<prometheus::Counter*>, 256> by_code_{};
};

struct BackendMetrics {
  prometheus::Gauge* active = nullptr;
  prometheus::Counter* sessions = nullptr;
  prometheus::Counter* connect_failures = nullptr;  // every failed attempt
  std::array<prometheus::Counter*, static_cast<size_t>(AttemptFail::Count)> attempt_failures{};
  prometheus::Gauge* connecting = nullptr;  // connect slots in use (connect .. CONNACK)
  prometheus::Gauge* queued = nullptr;      // clients waiting for a slot
  prometheus::Family<prometheus::Counter>* connacks = nullptr;
  void attempt_failed(AttemptFail f) const {
    connect_failures->Increment();
    attempt_failures[static_cast<size_t>(f)]->Increment();
  }
};

// Why accept() failed (label `error` of mqttlb_accept_errors_total).
enum class AcceptError : uint8_t { Emfile, Enfile, Enobufs, Enomem, Other, Count };

class Metrics {
 public:
  explicit Metrics(prometheus::Registry& reg);
  // Resolves (or re-resolves) a backend's labelled series. Main thread only.
  BackendMetrics backend(const std::string& name);
  // Removes a backend's series (a reload removed it and nothing refers to it).
  void remove_backend(const BackendMetrics& m);
  prometheus::Counter* accepted(const std::string& listener);
  TlsListenerMetrics tls_listener(const std::string& listener);

  prometheus::Counter& rejected(Reject r) { return *rejected_[static_cast<size_t>(r)]; }
  prometheus::Counter& bad_connect(mqtt::ConnectError e) {
    return *bad_connect_[static_cast<size_t>(e) % bad_connect_.size()];
  }
  prometheus::Counter& closed(CloseReason r) { return *closed_[static_cast<size_t>(r)]; }
  prometheus::Counter& accept_error(AcceptError e) {
    return *accept_errors_[static_cast<size_t>(e)];
  }

  prometheus::Gauge* connections_active = nullptr;
  prometheus::Gauge* connections_limit = nullptr;  // limits.max_connections in force
  prometheus::Counter* bytes_c2b = nullptr;
  prometheus::Counter* bytes_b2c = nullptr;
  prometheus::Counter* takeovers = nullptr;        // cause="same_replica"
  prometheus::Counter* takeovers_cross = nullptr;  // cause="cross_replica" (lb/server_scale.cpp)
  prometheus::Histogram* peek_seconds = nullptr;
  prometheus::Histogram* place_seconds = nullptr;  // CONNECT complete -> CONNACK to the client
  prometheus::Counter* reloads_ok = nullptr;
  prometheus::Counter* reloads_failed = nullptr;
  prometheus::Gauge* budget_used = nullptr;  // updated by the main thread, every second
  prometheus::Gauge* budget_limit = nullptr;
  prometheus::Gauge* affinity_entries = nullptr;
  prometheus::Gauge* registry_entries = nullptr;
  // MQTT-level (issue 14): what the devices send and how they are placed.
  std::array<prometheus::Counter*, 3> connects_by_version{};  // 3.1, 3.1.1, 5.0
  std::array<prometheus::Counter*, 2> connects_clean{};       // [0] persistent, [1] clean start
  prometheus::Histogram* keep_alive_seconds = nullptr;
  prometheus::Histogram* session_seconds = nullptr;  // placed -> closed
  prometheus::Counter* affinity_hit = nullptr;       // went back to its backend
  prometheus::Counter* affinity_miss = nullptr;      // no entry: placed by the algorithm
  prometheus::Counter* affinity_moved = nullptr;     // had an entry, placed elsewhere
  prometheus::Counter* evacuated = nullptr;          // sessions moved off by an evacuation/upgrade
  // In-kernel forwarding (docs/forwarding.md): placed sessions by path, and
  // sessions that asked for the kernel path and did not get or keep it.
  prometheus::Gauge* sessions_userspace = nullptr;
  prometheus::Gauge* sessions_kernel = nullptr;
  prometheus::Counter* kernel_joins = nullptr;  // sessions joined in the kernel
  prometheus::Counter* kernel_packets_c2b = nullptr;
  prometheus::Counter* kernel_packets_b2c = nullptr;
  std::array<prometheus::Counter*, static_cast<size_t>(SpliceFallback::Count)> kernel_fallbacks{};
  // Sessions closed because the kernel gave userspace more bytes than TCP
  // received on the socket (docs/forwarding.md "Known defect").
  prometheus::Counter* kernel_overreads = nullptr;
  prometheus::Family<prometheus::Gauge>* cert_expiry = nullptr;  // by listener
  prometheus::Counter* tls_paced = nullptr;  // TLS accepts deferred by limits.tls_handshake_rate
  // MQTT over WebSocket, by side: [0] clients' handshakes with a websocket
  // listener, [1] ours with brokers (to_backend "websocket").
  std::array<std::array<prometheus::Counter*, static_cast<size_t>(net::ws::Result::Count)>, 2>
      ws_handshakes{};
  std::array<std::array<prometheus::Counter*, static_cast<size_t>(net::ws::FrameError::Count)>, 2>
      ws_protocol_errors{};
  prometheus::Gauge* workers_accepting = nullptr;  // main thread
  prometheus::Gauge* workers_retiring = nullptr;
  prometheus::Family<prometheus::Counter>* connacks_family() { return &connacks_fam_; }

 private:
  prometheus::Family<prometheus::Counter>& accepted_fam_;
  prometheus::Family<prometheus::Counter>& rejected_fam_;
  prometheus::Family<prometheus::Counter>& closed_fam_;
  prometheus::Family<prometheus::Gauge>& backend_active_fam_;
  prometheus::Family<prometheus::Counter>& backend_sessions_fam_;
  prometheus::Family<prometheus::Counter>& backend_fail_fam_;
  prometheus::Family<prometheus::Counter>& backend_attempt_fam_;
  prometheus::Family<prometheus::Gauge>& backend_connecting_fam_;
  prometheus::Family<prometheus::Gauge>& backend_queue_fam_;
  prometheus::Family<prometheus::Counter>& connacks_fam_;
  prometheus::Family<prometheus::Counter>& tls_handshakes_fam_;
  prometheus::Family<prometheus::Counter>& tls_failures_fam_;
  prometheus::Family<prometheus::Counter>& tls_records_fam_;
  prometheus::Family<prometheus::Histogram>& tls_duration_fam_;
  std::array<prometheus::Counter*, static_cast<size_t>(Reject::Count)> rejected_{};
  std::array<prometheus::Counter*, 32> bad_connect_{};
  std::array<prometheus::Counter*, static_cast<size_t>(CloseReason::Count)> closed_{};
  std::array<prometheus::Counter*, static_cast<size_t>(AcceptError::Count)> accept_errors_{};
};

}  // namespace lb
