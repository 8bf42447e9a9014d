#!/usr/bin/env bash
# The README's run command: installs what is missing (Debian 12, as root),
# builds mqttlb and the reference broker, and runs a local cluster in the
# foreground until Ctrl-C:
#   three reference brokers  127.0.0.1:1884, 1885, 1886  (build/mqttlb-broker)
#   mqttlb                   0.0.0.0:1883 -> the three brokers (leastconn, client-id affinity)
#                            0.0.0.0:8883 the same over TLS (listener "mqtts"; a throwaway
#                            CA + server certificate in $BUILD/quickstart-tls/, made by
#                            tests/certs.sh with the openssl CLI when missing or expiring)
#   metrics                  http://127.0.0.1:9100/metrics
# Ctrl-C (or SIGTERM) stops everything this script started, by PID.
# Environment: MQTTLB_BUILD (build dir, default build), MQTTLB_PORT (default 1883),
# MQTTLB_TLS_PORT (default 8883),
# MQTTLB_BROKER_PORTS (default "1884 1885 1886"), MQTTLB_METRICS_PORT (default 9100),
# MQTTLB_LISTEN_HOST (default 0.0.0.0), MQTTLB_SKIP_BUILD=1 (use the binaries
# already in the build dir: no install, no build; the integration test does this).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${MQTTLB_BUILD:-build}
LISTEN_HOST=${MQTTLB_LISTEN_HOST:-0.0.0.0}
LB_PORT=${MQTTLB_PORT:-1883}
TLS_PORT=${MQTTLB_TLS_PORT:-8883}
read -r -a BROKER_PORTS <<<"${MQTTLB_BROKER_PORTS:-1884 1885 1886}"
METRICS_PORT=${MQTTLB_METRICS_PORT:-9100}

if [ "${MQTTLB_SKIP_BUILD:-0}" != "1" ]; then
  . deploy/deps.sh
  # shellcheck disable=SC2086
  mqttlb_install_deps $MQTTLB_BUILD_DEPS $MQTTLB_RUN_DEPS
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target mqttlb mqttlb-broker
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$LB_PORT" "$TLS_PORT" "${BROKER_PORTS[@]}" "$METRICS_PORT"; do
  if port_busy "$p"; then
    echo "quickstart: port $p is already in use (set MQTTLB_PORT / MQTTLB_TLS_PORT / MQTTLB_BROKER_PORTS / MQTTLB_METRICS_PORT)" >&2
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
trap 'exit 0' INT TERM

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

BACKENDS=""
i=0
for p in "${BROKER_PORTS[@]}"; do
  i=$((i + 1))
  "$BUILD/mqttlb-broker" --port "$p" --name "b$i" >"$RUN_DIR/b$i.log" 2>&1 &
  PIDS+=($!)
  wait_port "$p" "$!" "b$i"
  BACKENDS="$BACKENDS${BACKENDS:+,}
    {\"name\": \"b$i\", \"address\": \"127.0.0.1:$p\"}"
done

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
  brokers    $(for p in "${BROKER_PORTS[@]}"; do printf '127.0.0.1:%s ' "$p"; done)(build/mqttlb-broker)
  metrics    http://127.0.0.1:$METRICS_PORT/metrics

Try it, in another terminal:
  mosquitto_sub -h 127.0.0.1 -p $LB_PORT -i demo-sub -t 'demo/#' -v
  mosquitto_pub -h 127.0.0.1 -p $LB_PORT -i demo-sub-pub -t demo/hello -m 'hi'
  mosquitto_sub -h localhost -p $TLS_PORT --cafile $TLS_DIR/ca.crt -i demo-sub -t 'demo/#' -v
  (over TLS; the certificate names localhost and 127.0.0.1)
  (each broker is separate: a subscriber sees messages published on its own broker;
   a client id always returns to the broker it last used)
  curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep ^mqttlb_backend_sessions_active

Ctrl-C stops mqttlb and the brokers.
TXT

wait "$LB_PID"
