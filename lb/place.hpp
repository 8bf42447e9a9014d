// The place stage: from a complete CONNECT to the broker's answer.
//
// Choose a backend (affinity first, then the balancer), take a connect slot
// from that backend's gate (or wait in its bounded queue), connect, send the
// PROXY header (plain TCP; over TLS it went first as the preamble) and the
// client's bytes exactly as received, then read the broker's first packet:
//  - CONNACK success (3.x 0x00, 5.0 < 0x80): Accepted — only now may the
//    session register the client id, write affinity and take over;
//  - CONNACK refusal: Refused — it reaches the client unchanged, nothing is
//    registered (a stranger with a victim's id and a wrong password changes
//    nothing);
//  - AUTH (5.0 enhanced authentication): Authenticating — the pump forwards
//    the exchange and reports the CONNACK when it comes.
// Nothing but the buffered client bytes has gone to a broker before its
// answer, so any attempt that fails — refused, connect timeout, closed, no
// CONNACK within limits.backend_connack_timeout_ms (a frozen broker still
// completes TCP handshakes), a broken first packet, a queue timeout — is
// retried: on an untried backend at once, else on a tried one after
// balance.retry_backoff_ms (doubling, with jitter), up to 1 + balance.retries
// attempts. Then the session answers with a CONNACK refusal of its own.
//
// Thread: the session's worker loop. Ownership: owned by the session (one per
// session, only while placing). Backend transports are created and retired
// through PlaceHost; the one that answered is handed over in Placement. The
// counts it holds (gate slot, BackendCount) are dropped on every path,
// including destruction mid-attempt.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "lb/affinity.hpp"
#include "lb/client_key.hpp"
#include "lb/gate.hpp"
#include "lb/outcome.hpp"
#include "lb/runtime.hpp"
#include "lb/stage.hpp"
#include "mqtt/types.hpp"
#include "net/budget.hpp"
#include "net/transport.hpp"
#include "proxy/proxy_protocol.hpp"

namespace lb {

struct Placement {
  enum class Answer : uint8_t { Accepted, Refused, Authenticating };
  net::Transport* backend = nullptr;   // connected; its events still reach the session
  BackendCount count;                  // the session is counted on this backend
  const RuntimeBackend* rb = nullptr;  // in the snapshot the stage held (valid during placed())
  std::vector<uint8_t> to_client;      // the broker's first packet and whatever followed it
  Answer answer = Answer::Accepted;
  uint8_t code = 0;  // CONNACK return/reason code (Accepted, Refused)
  int attempts = 0;
  size_t forwarded = 0;  // client bytes the answering broker got (the CONNECT and what followed)
  enum class Affinity : uint8_t { Off, Hit, Miss, Replaced } affinity = Affinity::Off;
};

class PlaceHost : public StageTimer {
 public:
  // Starts connecting to `b` (TCP, or TLS with the PROXY header as preamble);
  // its events reach PlaceStage::on_backend_*. Null when it cannot even start:
  // err is the uv error (UV_EMFILE: out of local descriptors).
  virtual net::Transport* connect_backend(const RuntimeBackend& b, int& err) = 0;
  virtual void retire(net::Transport* t) = 0;   // close (reset); freed after its last callback
  virtual GateLane& lane(BackendState& b) = 0;  // this worker's lane of b's gate
  // Outcomes; each is the stage's last action (the host may destroy it there).
  virtual void placed(Placement p) = 0;
  virtual void place_failed(Reject why) = 0;  // no broker answered
};

struct PlaceRequest {
  std::string_view client_id;  // the balancer's key (valid while placing)
  ClientKey key;
  uint64_t session_id = 0;  // spreads an empty client id over consistent-hash
  mqtt::Version version = mqtt::Version::V311;
  bool auth_method = false;             // 5.0 CONNECT has an Authentication Method
  AffinityTable* affinity = nullptr;    // null: no affinity lookup
  sockaddr_storage peer{}, local{};     // for the PROXY header
  std::vector<uint8_t> bytes;           // CONNECT + everything after it, as received
  net::MemoryBudget* budget = nullptr;  // charged with `bytes` while placing
  size_t workers = 1;  // accepting workers: each lane gets this share of slots and queue
  // The client's pool (routes): which snapshot backends may take it; null: all.
  // Points into the stage's snapshot.
  const std::vector<bool>* pool = nullptr;
  // A TLS client: what a PROXY v2 header tells the broker (PP2_TYPE_SSL,
  // with the CN of a verified client certificate). Empty version: plain.
  proxy::SslInfo tls;
  // The backend transport sends the PROXY header itself (a WebSocket client
  // puts it before its HTTP request): the stage writes none.
  bool proxy_in_transport = false;
};

class PlaceStage final : private GateWaiter {
 public:
  // Largest first packet accepted from a broker (a CONNACK with properties).
  static constexpr size_t kMaxFirstPacket = 64 * 1024;

  PlaceStage(PlaceHost& host, std::shared_ptr<const Snapshot> snap, PlaceRequest req,
             uint64_t jitter_seed);
  ~PlaceStage() override;
  PlaceStage(const PlaceStage&) = delete;
  PlaceStage& operator=(const PlaceStage&) = delete;

  void start();
  void on_backend_connect(net::Transport* t, int status);
  void on_backend_read(net::Transport* t, const uint8_t* data, size_t len);
  void on_backend_closed(net::Transport* t, int err);  // EOF (err 0) or error
  void on_timer();

  int attempts() const { return attempts_; }

 private:
  enum class State : uint8_t { Idle, Backoff, Queued, Connecting, AwaitFirstPacket, Done };

  void next();                   // choose and begin an attempt, or give up
  int choose(bool& retry_same);  // snapshot index, or -1
  void begin();                  // take a gate slot for cur_
  void on_slot() override;       // GateWaiter: the slot came
  void connect();
  void fail(AttemptFail why, int uv_err = 0);  // this attempt failed; next()
  void drop_attempt();
  void answered(Placement::Answer a, uint8_t code);
  uint64_t backoff_ms(int same_tries);

  PlaceHost& host_;
  std::shared_ptr<const Snapshot> snap_;
  PlaceRequest req_;
  State st_ = State::Idle;
  int attempts_ = 0;
  std::vector<uint8_t> tried_;  // attempts per snapshot backend
  bool only_busy_ = true;       // every failure so far was a full or slow queue
  // The affinity entry found on the first choice: where the client "belongs".
  std::optional<uint64_t> affinity_backend_;
  bool affinity_looked_ = false;
  uint64_t rng_;

  // The attempt in flight.
  int cur_ = -1;
  BackendCount count_;
  GateLane* lane_ = nullptr;
  bool slot_ = false;
  net::Transport* t_ = nullptr;
  std::vector<uint8_t> in_;  // the broker's bytes until its first packet is complete
};

}  // namespace lb
