"""Helpers for the balancer's integration tests (test_lb_*.py): start mqttlb in
front of real brokers, speak raw MQTT on sockets, find which broker a client
landed on, scrape /metrics. Built on harness.py; same rules (loopback only,
free ports, bounded waits, stop by PID)."""
import json
import os
import re
import select
import socket
import struct
import subprocess
import time
import urllib.request

import harness
from harness import binary, free_port, port_open, wait_until


# ---------------------------------------------------------------- raw MQTT
_varint = harness.varint
_str = harness.lp_bytes


def connect_packet(client_id, level=4, keepalive=60, clean=True, username=None, password=None):
    """CONNECT for MQTT 3.1 (level 3), 3.1.1 (4) or 5.0 (5)."""
    name = "MQIsdp" if level == 3 else "MQTT"
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | \
        (0x40 if password is not None else 0)
    vh = _str(name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    if level == 5:
        vh += b"\x00"  # no properties
    body = vh + _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic, payload=b"", level=4):
    body = _str(topic) + (b"\x00" if level == 5 else b"") + payload
    return b"\x30" + _varint(len(body)) + body


def subscribe_packet(pid, topic, level=4, qos=0):
    body = struct.pack("!H", pid) + (b"\x00" if level == 5 else b"") + _str(topic) + bytes([qos])
    return b"\x82" + _varint(len(body)) + body


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class Closed(Exception):
    pass


def read_packet(sock, timeout=5.0):
    """Reads one MQTT packet: (first_byte, body). Raises Closed on EOF/reset,
    socket.timeout when nothing complete arrives in time."""
    deadline = time.monotonic() + timeout
    buf = getattr(sock, "_mqtt_buf", b"")

    def fill():
        nonlocal buf
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no MQTT packet in time")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            raise Closed("reset")
        if not chunk:
            raise Closed("eof")
        buf += chunk
        sock._mqtt_buf = buf  # keep partial packets across timeouts

    while True:
        if len(buf) >= 2:
            n, mult, i = 0, 1, 1
            while i < len(buf) and i <= 4:
                n += (buf[i] & 0x7F) * mult
                mult *= 128
                if not buf[i] & 0x80:
                    break
                i += 1
            if i < len(buf) and not buf[i] & 0x80 and len(buf) >= i + 1 + n:
                pkt = (buf[0], buf[i + 1:i + 1 + n])
                sock._mqtt_buf = buf[i + 1 + n:]
                return pkt
        fill()


class Sock(socket.socket):
    """A socket that can carry read_packet's leftover bytes."""


def mqtt_connect(port, client_id, level=4, keepalive=60, timeout=5.0, expect_ok=True,
                 username=None, password=None, host="127.0.0.1", source=None):
    """Opens a raw MQTT session (from the local address `source`, if given);
    returns (sock, connack_code)."""
    s = Sock(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    s.sendall(connect_packet(client_id, level, keepalive, username=username, password=password))
    first, body = read_packet(s, timeout)
    assert first == 0x20, f"expected CONNACK, got {first:#x}"
    code = body[1]
    if expect_ok:
        assert code == 0, f"CONNACK refused: {code:#x}"
    return s, code


def is_closed(sock, timeout=5.0):
    """True when the peer closes (EOF or reset) within `timeout`; data is drained."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


# ---------------------------------------------------------------- processes
def start_backends(tc, n=3):
    """n brokers on free ports: Debian's mosquitto mixed with our mqttlb-broker
    when it is built (even indexes ours, odd mosquitto). Returns [(name, port, proc)]."""
    ours = os.path.exists(os.path.join(harness.BUILD_DIR, "mqttlb-broker"))
    out = []
    for i in range(n):
        name = f"b{i + 1}"
        if ours and i % 2 == 0:
            p, port = tc.start_our_broker(name=name)
        else:
            p, port = tc.start_mosquitto()
        out.append((name, port, p))
    return out


def kernel_forwarding_or_skip(tc):
    """Skips the test unless "forwarding": "kernel" works here (mqttlb built
    with BPF, the programs load: root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON)."""
    r = subprocess.run([binary("mqttlb"), "--forwarding-check"], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        tc.skipTest((r.stdout or r.stderr).strip() or "in-kernel forwarding unavailable")


def start_mqttlb(tc, backends, verbose=False, wrapper=(), **sections):
    """Writes a config for `backends` [(name, port, ...) or a backend dict] plus the given
    sections (e.g. balance={...}, limits={...}, workers=2) and starts mqttlb
    (under `wrapper`, a command that execs it, if given).
    Returns (proc, port, metrics_port, config_path)."""
    port, mport = free_port(), free_port()
    cfg = {
        "listeners": [{"name": "mqtt", "bind": f"127.0.0.1:{port}"}],
        "backends": [b if isinstance(b, dict) else {"name": b[0], "address": f"127.0.0.1:{b[1]}"}
                     for b in backends],
        "metrics": {"bind": f"127.0.0.1:{mport}"},
        "workers": 2,
    }
    cfg.update(sections)
    # Custom listeners (the first one named "mqtt"): report the first one's port.
    port = int(cfg["listeners"][0]["bind"].rsplit(":", 1)[1])
    # Tests stop mqttlb with SIGTERM: do not let a half-open test peer hold the
    # default 10 s drain (a test of the grace period sets its own).
    cfg["limits"] = dict(cfg.get("limits", {}))
    cfg["limits"].setdefault("shutdown_grace_ms", 1000)
    path = os.path.join(tc.tmpdir(), "mqttlb.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    # wrapper: a command that execs mqttlb (same PID), e.g. prlimit --nofile=N:N --
    args = list(wrapper) + [binary("mqttlb"), "-c", path] + (["-v"] if verbose else [])
    p = tc.spawn(args, name="mqttlb")
    tc.addCleanup(_stopped_cleanly, tc, p)  # runs before spawn's own stop
    p.wait_for_line(r"listening: mqtt on", timeout=20)
    wait_until(lambda: port_open(port), 10, what="mqttlb port")
    # port_open's probe connection counts against the limits until mqttlb sees
    # its EOF: start every test from zero connections.
    wait_until(lambda: metric(mport, "mqttlb_connections_active") == 0, 10,
               what="probe connection released")
    return p, port, mport, path


def _stopped_cleanly(tc, p):
    """Every mqttlb a test starts must stop on SIGTERM with exit 0 and no
    sanitizer report (the suite also runs under ASan+UBSan)."""
    rc = p.stop(timeout=20)
    out = p.output()
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                "WARNING: ThreadSanitizer"):
        tc.assertNotIn(bad, out, f"mqttlb reported a sanitizer error:\n{out[-4000:]}")
    tc.assertEqual(rc, 0, f"mqttlb exited with {rc}:\n{out[-2000:]}")


def paho_round_trip(port, client_id, topic, payload, ca=None, host="127.0.0.1",
                    timeout=10.0, what="paho round trip"):
    """Connects a paho MQTT 3.1.1 client (over TLS when `ca` is given), subscribes
    to `topic` at QoS 1, publishes `payload` to it and returns
    (CONNACK return code, payloads received). Fails after `timeout` s."""
    import paho.mqtt.client as mqtt
    got, box = [], {}
    c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311)
    if ca:
        c.tls_set(ca_certs=ca)

    def on_connect(cl, _u, _f, rc):
        box["rc"] = rc
        cl.subscribe(topic, 1)

    c.on_connect = on_connect
    c.on_subscribe = lambda cl, u, mid, q: cl.publish(topic, payload, 1)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.connect(host, port, 30)
    c.loop_start()
    try:
        wait_until(lambda: got, timeout, what=what)
    finally:
        c.disconnect()
        c.loop_stop()
    return box.get("rc"), got


def metrics(mport):
    """Scrapes /metrics into {'name{labels}': float}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, val = line.rpartition(" ")
        out[key] = float(val)
    return out


def metric(mport, key):
    return metrics(mport).get(key, 0.0)


# ---------------------------------------------------------------- placement
class Probes:
    """One raw subscriber per broker on 'lbprobe/#', connected directly (not
    through mqttlb). A client publishing to lbprobe/<id> through the balancer
    shows which broker it landed on."""

    def __init__(self, backends):
        self.socks = {}
        for name, port, *_ in backends:
            s, _ = mqtt_connect(port, f"probe-{name}-{os.getpid()}")
            s.sendall(subscribe_packet(1, "lbprobe/#"))
            first, _ = read_packet(s)
            assert first == 0x90, "expected SUBACK"
            self.socks[name] = s

    def close(self):
        for s in self.socks.values():
            s.close()

    def which(self, client_sock, tag, timeout=5.0, level=4):
        """Publishes lbprobe/<tag> on client_sock; returns the broker name that saw it."""
        client_sock.sendall(publish_packet(f"lbprobe/{tag}", b"x", level))
        want = f"lbprobe/{tag}".encode()
        deadline = time.monotonic() + timeout
        by_fd = {s.fileno(): (n, s) for n, s in self.socks.items()}
        while time.monotonic() < deadline and by_fd:
            for fd, (n, s) in list(by_fd.items()):  # leftovers first
                if getattr(s, "_mqtt_buf", b"") and self._match(s, want, by_fd):
                    return n
            ready, _, _ = select.select(list(by_fd), [], [], max(0.0, deadline - time.monotonic()))
            for fd in ready:
                n, s = by_fd[fd]
                if self._match(s, want, by_fd):
                    return n
        raise AssertionError(f"no broker saw lbprobe/{tag}")

    @staticmethod
    def _match(s, want, by_fd):
        try:
            first, body = read_packet(s, 0.5)
        except socket.timeout:
            return False
        except Closed:  # that broker died: stop watching it
            by_fd.pop(s.fileno(), None)
            return False
        if first >> 4 != 3:
            return False
        tlen = struct.unpack("!H", body[:2])[0]
        return body[2:2 + tlen] == want


def grep_lines(proc, pattern):
    rx = re.compile(pattern)
    return [l for l in proc.output().splitlines() if rx.search(l)]
