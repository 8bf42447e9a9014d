#!/usr/bin/env bash
# The README's run command: installs what is missing (Debian 12, as root),
# builds mqttlb and the reference broker, and runs a local cluster in the
# foreground until Ctrl-C:
#   three reference brokers  127.0.0.1:1884, 1885, 1886  (build/mqttlb-broker), one cluster:
#                            peer links on 127.0.0.1:11884, 11885, 11886, authenticated with
#                            a secret made for this run; a message published on any broker
#                            reaches subscribers on all of them
#   mqttlb                   0.0.0.0:1883 -> the three brokers (leastconn, client-id affinity)
#                            0.0.0.0:8883 the same over TLS (listener "mqtts"; a throwaway
#                            CA + server certificate in $BUILD/quickstart-tls/, made by
#                            tests/certs.sh with the openssl CLI when missing or expiring)
#   metrics                  http://127.0.0.1:9100/metrics
# Ctrl-C (or SIGTERM) stops everything this script started, by PID.
# Environment: MQTTLB_BUILD (build dir, default build), MQTTLB_PORT (default 1883),
# MQTTLB_TLS_PORT (default 8883),
# MQTTLB_BROKER_PORTS (default "1884 1885 1886"), MQTTLB_CLUSTER_PORTS (the brokers' peer
# links, default each broker port + 10000), MQTTLB_METRICS_PORT (default 9100),
# MQTTLB_LISTEN_HOST (default 0.0.0.0), MQTTLB_SKIP_BUILD=1 (use the binaries
# already in the build dir: no install, no build; the integration test does this).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${MQTTLB_BUILD:-build}
LISTEN_HOST=${MQTTLB_LISTEN_HOST:-0.0.0.0}
LB_PORT=${MQTTLB_PORT:-1883}
TLS_PORT=${MQTTLB_TLS_PORT:-8883}
read -r -a BROKER_PORTS <<<"${MQTTLB_BROKER_PORTS:-1884 1885 1886}"
DEFAULT_CLUSTER_PORTS=""
for p in "${BROKER_PORTS[@]}"; do DEFAULT_CLUSTER_PORTS="$DEFAULT_CLUSTER_PORTS $((p + 10000))"; done
read -r -a CLUSTER_PORTS <<<"${MQTTLB_CLUSTER_PORTS:-$DEFAULT_CLUSTER_PORTS}"
if [ "${#CLUSTER_PORTS[@]}" != "${#BROKER_PORTS[@]}" ]; then
  echo "quickstart: MQTTLB_CLUSTER_PORTS needs one port per broker (${#BROKER_PORTS[@]})" >&2
  exit 1
fi
METRICS_PORT=${MQTTLB_METRICS_PORT:-9100}

if [ "${MQTTLB_SKIP_BUILD:-0}" != "1" ]; then
  . deploy/deps.sh
  # shellcheck disable=SC2086
  mqttlb_install_deps $MQTTLB_BUILD_DEPS $MQTTLB_RUN_DEPS
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target mqttlb mqttlb-broker
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$LB_PORT" "$TLS_PORT" "${BROKER_PORTS[@]}" "${CLUSTER_PORTS[@]}" "$METRICS_PORT"; do
  if port_busy "$p"; then
    echo "quickstart: port $p is already in use (set MQTTLB_PORT / MQTTLB_TLS_PORT / MQTTLB_BROKER_PORTS / MQTTLB_CLUSTER_PORTS / MQTTLB_METRICS_PORT)" >&2
    exit 1
  fi
done

# Throwaway test PKI for the TLS listener (certs.sh makes 2-day certificates):
# regenerated when missing or expiring within the hour. Never use it in production.
TLS_DIR="$(cd "$BUILD" && pwd)/quickstart-tls"
if [ ! -f "$TLS_DIR/server.crt" ] || [ ! -f "$TLS_DIR/server.key" ] || [ ! -f "$TLS_DIR/ca.crt" ] ||
  ! openssl x509 -checkend 3600 -noout -in "$TLS_DIR/server.crt" >/dev/null 2>&1; then
  sh tests/certs.sh "$TLS_DIR"
fi

RUN_DIR=$(mktemp -d /tmp/mqttlb-quickstart.XXXXXX)
PIDS=()
cleanup() {
  # A second Ctrl-C must not cut the cleanup short and leave brokers running.
  trap - EXIT
  trap '' INT TERM
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 1 100); do  # up to 10 s, then SIGKILL what is left
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$RUN_DIR"
  echo "quickstart: stopped"
}
trap cleanup EXIT
# The first Ctrl-C (or TERM) ignores the next ones at once: a second signal
# between this trap and cleanup's own `trap '' INT TERM` cut the cleanup short.
trap 'trap "" INT TERM; exit 0' INT TERM

wait_port() {  # $1 port, $2 pid, $3 name
  local i
  for i in $(seq 1 100); do
    port_busy "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "quickstart: $3 exited; log:" >&2; cat "$RUN_DIR/$3.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "quickstart: $3 did not open port $1 within 10 s" >&2
  exit 1
}

# The brokers' cluster secret: fresh random bytes for this run, readable only by us.
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN_DIR/cluster.secret")

BACKENDS=""
BROKERS_TXT=""
n=${#BROKER_PORTS[@]}
for ((i = 0; i < n; i++)); do
  p=${BROKER_PORTS[$i]}
  peers=""
  for ((j = 0; j < n; j++)); do
    [ "$j" = "$i" ] || peers="$peers${peers:+,}127.0.0.1:${CLUSTER_PORTS[$j]}"
  done
  name="b$((i + 1))"
  "$BUILD/mqttlb-broker" --port "$p" --name "$name" \
    --cluster-bind "127.0.0.1:${CLUSTER_PORTS[$i]}" --peers "$peers" \
    --cluster-secret "$RUN_DIR/cluster.secret" --stats 60 >"$RUN_DIR/$name.log" 2>&1 &
  PIDS+=($!)
  wait_port "$p" "$!" "$name"
  BACKENDS="$BACKENDS${BACKENDS:+,}
    {\"name\": \"$name\", \"address\": \"127.0.0.1:$p\"}"
  BROKERS_TXT="$BROKERS_TXT${BROKERS_TXT:+, }$name 127.0.0.1:$p (pid $!)"
done

# Every broker linked to every other one (each logs "link to bN ... up").
for ((k = 0; k < 100; k++)); do
  linked=1
  for ((i = 1; i <= n; i++)); do
    for ((j = 1; j <= n; j++)); do
      [ "$i" = "$j" ] && continue
      grep -q "link to b$j .* up" "$RUN_DIR/b$i.log" || linked=0
    done
  done
  [ "$linked" = 1 ] && break
  sleep 0.1
done
if [ "$linked" != 1 ]; then
  echo "quickstart: the brokers did not link up within 10 s; logs:" >&2
  cat "$RUN_DIR"/b*.log >&2
  exit 1
fi

cat >"$RUN_DIR/mqttlb.json" <<JSON
{
  "listeners": [
    {"name": "mqtt", "bind": "$LISTEN_HOST:$LB_PORT"},
    {"name": "mqtts", "bind": "$LISTEN_HOST:$TLS_PORT",
     "tls": {"cert": "$TLS_DIR/server.crt", "key": "$TLS_DIR/server.key"}}
  ],
  "backends": [$BACKENDS
  ],
  "balance": {"algorithm": "leastconn", "affinity": "client-id"},
  "health": {"interval_ms": 2000, "timeout_ms": 1000, "rise": 2, "fall": 3},
  "metrics": {"bind": "127.0.0.1:$METRICS_PORT"}
}
JSON

"$BUILD/mqttlb" -c "$RUN_DIR/mqttlb.json" &
LB_PID=$!
PIDS+=("$LB_PID")
wait_port "$LB_PORT" "$LB_PID" mqttlb
wait_port "$TLS_PORT" "$LB_PID" mqttlb

cat <<TXT

mqttlb is running (config: $RUN_DIR/mqttlb.json)
  MQTT       mqtt://127.0.0.1:$LB_PORT   (plain TCP; MQTT 3.1, 3.1.1 and 5.0)
  MQTTS      mqtts://localhost:$TLS_PORT (TLS; throwaway CA $TLS_DIR/ca.crt)
  brokers    $BROKERS_TXT
             (build/mqttlb-broker, one cluster; logs in $RUN_DIR)
  metrics    http://127.0.0.1:$METRICS_PORT/metrics

Try it, in another terminal:
  mosquitto_sub -h 127.0.0.1 -p $LB_PORT -i demo-sub -t 'demo/#' -v
  mosquitto_pub -h 127.0.0.1 -p $LB_PORT -i demo-sub-pub -t demo/hello -m 'hi'
  mosquitto_sub -h localhost -p $TLS_PORT --cafile $TLS_DIR/ca.crt -i demo-sub -t 'demo/#' -v
  mosquitto_pub -h localhost -p $TLS_PORT --cafile $TLS_DIR/ca.crt -i demo-sub-pub -t demo/hello -m 'hi'
  (over TLS; the certificate names localhost and 127.0.0.1)
  The brokers are one cluster: mqttlb may put the two clients on different brokers
  and the message still arrives. Kill the broker mosquitto_sub is on (kill PID, see
  above; curl the metrics below to find it): it reconnects through mqttlb to
  another broker and keeps receiving.
  curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep ^mqttlb_backend_sessions_active

Ctrl-C stops mqttlb and the brokers.
TXT

wait "$LB_PID"
