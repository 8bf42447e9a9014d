"""MQTT over WebSocket peers for the integration tests: an RFC 6455 codec (the
frames are built here, independently of mqttlb's), a raw client handshake,
a scripted WebSocket broker, and a paho-mqtt round trip over websockets.

    s = ws_open(port)                          # socket after the 101
    s.sendall(frame(connect))                  # masked binary frame
    data, ops, used = decode(buf)              # server frames -> payload

Rules as in harness.py: loopback only, free ports, every wait bounded.
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import threading
import time

from harness import free_port, wait_until
from stream_peers import client_id_of, first_packet_len, pump

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def _xor(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(payload, op=OP_BIN, fin=True, mask=True, key=None):
    """One frame; masked (as a client sends) with `key` or a random one."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n <= 0xFFFF:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = key or os.urandom(4)
    return head + key + _xor(payload, key)


def frames(payload, rng, max_frame=3000, mask=True):
    """payload cut into a fragmented message or several messages of random sizes,
    some tiny, with a Ping now and then between fragments."""
    out, i, open_msg = [], 0, False
    while i < len(payload):
        n = min(len(payload) - i, rng.choice((1, 2, 7, rng.randrange(1, max_frame + 1))))
        last = i + n >= len(payload)
        fin = last or rng.random() < 0.5
        out.append(frame(payload[i:i + n], OP_CONT if open_msg else OP_BIN, fin, mask))
        open_msg = not fin
        if rng.random() < 0.05:
            out.append(frame(b"p", OP_PING, True, mask))
        i += n
    return b"".join(out)


def decode(buf):
    """Complete frames at the front of buf -> (data payload, [opcodes], bytes used)."""
    out, ops, i = bytearray(), [], 0
    while i + 2 <= len(buf):
        b0, b1 = buf[i], buf[i + 1]
        n, j = b1 & 0x7F, i + 2
        if n == 126:
            if j + 2 > len(buf):
                break
            n, j = struct.unpack("!H", buf[j:j + 2])[0], j + 2
        elif n == 127:
            if j + 8 > len(buf):
                break
            n, j = struct.unpack("!Q", buf[j:j + 8])[0], j + 8
        key = None
        if b1 & 0x80:
            key, j = bytes(buf[j:j + 4]), j + 4
        if j + n > len(buf):
            break
        p = bytes(buf[j:j + n])
        if key:
            p = _xor(p, key)
        op = b0 & 0x0F
        ops.append((op, p) if op >= 8 else op)
        if op in (OP_CONT, OP_BIN):
            out += p
        i = j + n
    return bytes(out), ops, i


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def upgrade_request(path="/mqtt", protocol="mqtt", key="dGhlIHNhbXBsZSBub25jZQ==", extra=""):
    proto = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{proto}{extra}\r\n").encode()


def read_head(sock, timeout=5.0):
    """Reads an HTTP head; returns (status line, headers dict, bytes after it)."""
    buf, deadline = b"", time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        d = sock.recv(65536)
        if not d:
            raise ConnectionError(f"closed before the HTTP head: {buf!r}")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return lines[0], hdrs, rest


def ws_open(port, path="/mqtt", tls_ca=None, protocol="mqtt", timeout=5.0):
    """A raw client after a checked 101; returns (socket, bytes that followed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_ca:
        s = ssl.create_default_context(cafile=tls_ca).wrap_socket(s, server_hostname="localhost")
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(upgrade_request(path, protocol, key))
    status, hdrs, rest = read_head(s, timeout)
    if not status.startswith("HTTP/1.1 101"):
        raise AssertionError(f"no 101: {status}")
    assert hdrs.get("sec-websocket-accept") == accept_of(key), hdrs
    assert hdrs.get("sec-websocket-protocol") == protocol, hdrs
    return s, rest


def read_frames_until(sock, cond, buf=b"", timeout=5.0):
    """Reads until cond(data, ops) holds or the peer closes; returns (data, ops, closed)."""
    buf, deadline = bytearray(buf), time.monotonic() + timeout
    while True:
        data, ops, _ = decode(buf)
        if cond(data, ops):
            return data, ops, False
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; so far {data!r} {ops!r}")
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            data, ops, _ = decode(buf)
            return data, ops, True
        buf += d


class WsBroker:
    """A scripted MQTT broker behind a WebSocket port (for to_backend "websocket"):
    checks the Upgrade (records its headers), answers 101, reads frames until the
    CONNECT is complete, then sends `connack` + the planned segments as unmasked
    frames and a Close, and records every payload byte (and the raw Upgrade
    request) until EOF."""

    def __init__(self, tc, connack=b"\x20\x02\x00\x00"):
        self.port = free_port()
        self.connack = connack
        self.plans, self.results, self.requests = {}, {}, []
        self.cv = threading.Condition()
        self.ls = socket.create_server(("127.0.0.1", self.port))
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()
        tc.addCleanup(self.close)

    def expect(self, cid, b2c_frames):
        with self.cv:
            self.plans[cid] = list(b2c_frames)

    def result(self, cid, timeout=30.0):
        with self.cv:
            ok = self.cv.wait_for(lambda: cid in self.results, timeout)
            assert ok, f"ws broker: no finished connection for {cid!r}"
            return self.results[cid]

    def close(self):
        self.stop = True
        self.ls.close()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        deadline = time.monotonic() + 60
        try:
            status, hdrs, rest = read_head(c, 10)
            with self.cv:
                self.requests.append((status, hdrs))
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                       f"{accept_of(hdrs['sec-websocket-key'])}\r\n"
                       "Sec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
            raw = bytearray(rest)
            while True:
                data, ops, _ = decode(raw)
                n = first_packet_len(data)
                if n is not None:
                    break
                d = c.recv(65536)
                if not d:
                    return
                raw += d
            cid = client_id_of(data[:n])
            with self.cv:
                plan = self.plans.pop(cid, [])
            segs = [frame(self.connack, mask=False)] + plan + [
                frame(b"\x03\xe8", OP_CLOSE, mask=False)]
            pump(c, segs, lambda d: raw.extend(d), deadline)
            data, ops, _ = decode(raw)
            with self.cv:
                self.results[cid] = (data, ops)
                self.cv.notify_all()
        except (OSError, AssertionError, KeyError):
            pass
        finally:
            c.close()


def paho_ws_round_trip(port, client_id, topic, payload, path="/mqtt", ca=None, timeout=10.0):
    """paho-mqtt over websockets (wss when `ca`): connect, subscribe QoS 1,
    publish QoS 1, receive. Returns (CONNACK code, payloads received)."""
    import paho.mqtt.client as mqtt
    got, box = [], {}
    c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311, transport="websockets")
    c.ws_set_options(path=path)
    if ca:
        c.tls_set(ca_certs=ca)

    def on_connect(cl, _u, _f, rc):
        box["rc"] = rc
        cl.subscribe(topic, 1)

    c.on_connect = on_connect
    c.on_subscribe = lambda cl, u, mid, q: cl.publish(topic, payload, 1)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.connect("localhost" if ca else "127.0.0.1", port, 30)
    c.loop_start()
    try:
        wait_until(lambda: got, timeout, what=f"paho websocket round trip on {port}{path}")
    finally:
        c.disconnect()
        c.loop_stop()
    return box.get("rc"), got
