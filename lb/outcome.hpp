// How connections end, as counted in metrics and logs (docs/metrics.md). Pure
// enums and their labels; no dependencies.
#pragma once

#include <cstdint>

#include "mqtt/connect.hpp"

namespace lb {

// Why a connection was refused or closed before a broker accepted it.
// docs/operations.md "Refusals" gives the CONNACK each one answers with.
enum class Reject : uint8_t {
  MaxConnections,       // limits.max_connections (closed at accept)
  MaxConnectionsPerIp,  // limits.max_connections_per_ip
  ShuttingDown,
  ConnectTimeout,    // CONNECT not complete within connect_timeout_ms
  ClientClosed,      // EOF/reset before a complete CONNECT or before placement finished
  NoBackend,         // no healthy backend, or every attempt failed (CONNACK 0x03/0x88)
  UnsupportedLevel,  // CONNACK 0x01/0x84 sent
  TlsHandshake,      // TLS listener: the handshake failed (see mqttlb_tls_handshake_failures_total)
  BadConnect,        // any other invalid first packet: see the `reason` label (ConnectError)
  MemoryBudget,      // limits.memory_budget_bytes spent
  BackendBusy,       // the backends' connect queues were full or too slow (CONNACK 0x03/0x97)
  LocalResources,    // no local file descriptor (or memory) for the backend socket
  RateGlobal,        // limits.connect_rate.global_per_s (CONNACK 0x03/0x9F on plain listeners)
  RatePerIp,         // limits.connect_rate.per_ip_per_s, per source prefix
  Flapping,          // limits.flap: the client id is in the penalty box (CONNACK 0x03/0x9F)
  IdentityMismatch,  // listener tls.identity: the client id is not the certificate's (0x02/0x85)
  WebSocket,  // websocket listener: handshake refused or a framing violation before the CONNECT
  Count
};
const char* to_string(Reject r);

// Why an established session ended.
enum class CloseReason : uint8_t {
  Client,   // client closed (EOF after half-close, or reset)
  Backend,  // backend closed
  IdleTimeout,
  Takeover,         // same client id connected to another backend
  BackendShutdown,  // health on_down: shutdown-sessions
  Shutdown,         // mqttlb stopping
  Evacuated,        // moved off its backend (admin evacuation, removed backend, upgrade)
  Kicked,           // closed by an operator (admin API)
  Error,
  Count
};
const char* to_string(CloseReason r);

// Metric label for a CONNECT parse error ("not_connect", "too_large", ...).
const char* reject_label(mqtt::ConnectError e);

}  // namespace lb
