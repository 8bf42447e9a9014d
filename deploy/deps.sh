# Sourced by deploy/quickstart.sh and tests/run.sh: installs the Debian 12
# packages mqttlb needs that are not installed yet (apt-get, as root).
MQTTLB_BUILD_DEPS="cmake make g++ pkg-config libuv1-dev libssl-dev nlohmann-json3-dev prometheus-cpp-dev doctest-dev openssl libhiredis-dev libc-ares-dev libmicrohttpd-dev libcurl4-openssl-dev libwslay-dev libhttp-parser-dev clang libbpf-dev"
# The shared libraries build/mqttlb and build/mqttlb-broker link (their NEEDED
# entries, checked by tests/integration/test_container_image.py) and the CA
# store backends' TLS uses by default: all the container image's final stage
# installs.
MQTTLB_RUNTIME_LIBS="libc6 libgcc-s1 libstdc++6 libuv1 libssl3 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libhiredis0.14 libc-ares2 libmicrohttpd12 libcurl4 libwslay1 libhttp-parser2.9 libbpf1 ca-certificates"
# What the quickstart needs to run: the libraries plus its demo clients.
MQTTLB_RUN_DEPS="$MQTTLB_RUNTIME_LIBS mosquitto-clients python3"
# Peers used by the integration tests and the benchmark comparison.
MQTTLB_TEST_DEPS="mosquitto mosquitto-clients python3 python3-paho-mqtt python3-pyflakes clang libclang-rt-14-dev procps curl haproxy nginx-light libnginx-mod-stream redis-server dnsmasq chromium prometheus docker-compose python3-yaml buildah mmdebstrap"

mqttlb_install_deps() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts these daemons on install; our tests start their own on free ports.
  for svc in mosquitto haproxy nginx redis-server dnsmasq prometheus; do
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
  done
}

# The browser test (tests/integration/test_lb_websocket_browser.py) fetches
# MQTT.js with npm: Debian's npm, unless an npm is on PATH already (Node.js's
# own packages ship one and conflict with Debian's).
mqttlb_install_npm() {
  command -v npm >/dev/null 2>&1 || mqttlb_install_deps npm
}
