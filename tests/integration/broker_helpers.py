"""Helpers for the mqttlb-broker integration tests (test_broker_*.py).

Raw: an MQTT client on a plain socket that sends exact bytes and reads whole
packets, for CONNACK codes, malformed input and timing-free protocol checks.
Paho: a thin wrapper over Debian's paho-mqtt 1.6 that turns callbacks into
waitable queues. BothBrokers: runs one scenario against our broker and against
Debian's mosquitto (the oracle) so a test can assert the same observable result.
Every wait has a deadline; nothing sleeps and hopes.
"""
import queue
import socket
import struct
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import harness
from harness import TestCase

V31, V311, V5 = 3, 4, 5


# ---------------------------------------------------------------- raw packets
varint = harness.varint
s16 = harness.lp_bytes


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def props(*items):
    """Property block from raw (id, bytes) pairs."""
    body = b"".join(bytes([i]) + v for i, v in items)
    return varint(len(body)) + body


def connect(client_id="", version=V311, clean=True, keepalive=60, will=None, properties=None,
            will_properties=b"\x00"):
    """CONNECT bytes. will = (topic, payload, qos, retain)."""
    name = b"MQIsdp" if version == V31 else b"MQTT"
    flags = 0x02 if clean else 0
    payload = s16(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += (will_properties if version == V5 else b"") + s16(topic) + s16(msg)
    var = s16(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        var += properties if properties is not None else b"\x00"
    return packet(0x10, var + payload)


def publish(topic, payload=b"", qos=0, pid=1, retain=False, dup=False, version=V311,
            properties=b"\x00"):
    if isinstance(payload, str):
        payload = payload.encode()
    fb = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = s16(topic) + (struct.pack("!H", pid) if qos else b"")
    if version == V5:
        body += properties
    return packet(fb, body + payload)


def subscribe(filters, pid=1, version=V311, properties=b"\x00"):
    """filters: list of (filter, options byte)."""
    body = struct.pack("!H", pid) + (properties if version == V5 else b"")
    for f, o in filters:
        body += s16(f) + bytes([o])
    return packet(0x82, body)


DISCONNECT = b"\xe0\x00"
PINGREQ = b"\xc0\x00"


class Raw:
    """A plain TCP MQTT client that reads whole packets."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)
        return self

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError()
        self.buf += chunk

    def recv(self, timeout=5.0):
        """Next packet as (first_byte, body); None if the server closed first.
        Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                if len(self.buf) >= 2:
                    n, mult, i = 0, 1, 1
                    while i < len(self.buf) and i <= 4:
                        b = self.buf[i]
                        n += (b & 0x7F) * mult
                        mult *= 128
                        i += 1
                        if not b & 0x80:
                            if len(self.buf) >= i + n:
                                fb, body = self.buf[0], self.buf[i:i + n]
                                self.buf = self.buf[i + n:]
                                return fb, body
                            break
                self._fill(deadline)
        except EOFError:
            return None
        except ConnectionResetError:
            return None
        except socket.timeout:
            raise AssertionError(f"no packet within {timeout}s")

    def expect_closed(self, timeout=5.0):
        """Reads until EOF; returns the packets received before it."""
        got = []
        while True:
            p = self.recv(timeout)
            if p is None:
                return got
            got.append(p)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_connect(port, client_id="raw", version=V311, **kw):
    """Connects and returns (Raw, connack_body)."""
    r = Raw(port)
    r.send(connect(client_id, version=version, **kw))
    p = r.recv()
    assert p is not None and p[0] == 0x20, f"expected CONNACK, got {p!r}"
    return r, p[1]


# ---------------------------------------------------------------- paho
class Paho:
    """paho-mqtt client with waitable events. Messages arrive in self.msgs."""

    def __init__(self, port, client_id="", version=V311, clean=True, keepalive=60,
                 will=None, connect_props=None, auto_connect=True):
        proto = {V31: mqtt.MQTTv31, V311: mqtt.MQTTv311, V5: mqtt.MQTTv5}[version]
        kw = {} if version == V5 else {"clean_session": clean}
        self.c = mqtt.Client(client_id=client_id, protocol=proto, **kw)
        self.version, self.port, self.clean, self.keepalive = version, port, clean, keepalive
        self.connect_props = connect_props
        self.msgs = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = {}
        self.disconnects = queue.Queue()
        self._cv = threading.Condition()
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        if version == V5:
            self.c.on_connect = lambda c, u, f, rc, p: self.connack.put((f, rc, p))
            self.c.on_subscribe = self._on_sub5
            self.c.on_disconnect = lambda c, u, rc, p=None: self.disconnects.put(rc)
        else:
            self.c.on_connect = lambda c, u, f, rc: self.connack.put((f, rc, None))
            self.c.on_subscribe = lambda c, u, mid, q: self._suback(mid, list(q))
            self.c.on_disconnect = lambda c, u, rc: self.disconnects.put(rc)
        if will:
            topic, payload, qos, retain = will[:4]
            self.c.will_set(topic, payload, qos, retain,
                            properties=will[4] if len(will) > 4 else None)
        self.c.reconnect_delay_set(60, 120)  # never reconnect behind the test's back
        if auto_connect:
            self.connect()

    def _on_sub5(self, c, u, mid, rcs, p):
        self._suback(mid, [rc.value for rc in rcs])

    def _suback(self, mid, codes):
        with self._cv:
            self.subacks[mid] = codes
            self._cv.notify_all()

    def connect(self, timeout=10):
        """Connects; returns (session_present, reason code, properties)."""
        kw = {}
        if self.version == V5:
            kw = {"clean_start": self.clean, "properties": self.connect_props}
        self.c.connect("127.0.0.1", self.port, self.keepalive, **kw)
        self.c.loop_start()
        try:
            flags, rc, p = self.connack.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no CONNACK")
        rc = rc.value if hasattr(rc, "value") else rc
        return bool(flags.get("session present")), rc, p

    def sub(self, topic, qos=0, timeout=10, **opts):
        """Subscribes; returns the SUBACK codes. opts (5.0): no_local,
        retain_as_published, retain_handling, sub_id."""
        if self.version == V5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            o = SubscribeOptions(qos=qos, noLocal=opts.get("no_local", False),
                                 retainAsPublished=opts.get("retain_as_published", False),
                                 retainHandling=opts.get("retain_handling", 0))
            p = None
            if opts.get("sub_id"):
                p = Properties(PacketTypes.SUBSCRIBE)
                p.SubscriptionIdentifier = opts["sub_id"]
            rc, mid = self.c.subscribe(topic, options=o, properties=p)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        with self._cv:
            ok = self._cv.wait_for(lambda: mid in self.subacks, timeout)
            assert ok, f"no SUBACK for {topic}"
            return self.subacks[mid]

    def unsub(self, topic):
        self.c.unsubscribe(topic)

    def pub(self, topic, payload, qos=0, retain=False, properties=None, timeout=10):
        info = self.c.publish(topic, payload, qos, retain, properties=properties)
        if qos:
            info.wait_for_publish(timeout)
            assert info.is_published(), f"publish to {topic} not acknowledged"
        return info

    def get(self, timeout=5.0):
        """Next message, or None after `timeout` seconds."""
        try:
            return self.msgs.get(timeout=timeout)
        except queue.Empty:
            return None

    def take(self, n, timeout=5.0):
        """Up to n messages, each within `timeout` seconds of the previous one."""
        out = []
        for _ in range(n):
            m = self.get(timeout)
            if m is None:
                break
            out.append(m)
        return out

    def drain(self, quiet=0.3):
        """All messages until none arrives for `quiet` seconds (bounded by count)."""
        out = []
        for _ in range(10000):
            m = self.get(quiet)
            if m is None:
                break
            out.append(m)
        return out

    def stop(self, disconnect=True):
        if disconnect:
            try:
                self.c.disconnect()
            except Exception:
                pass
        self.c.loop_stop()


# ---------------------------------------------------------------- oracle
class BrokerTest(TestCase):
    """Starts our broker and mosquitto once per test; `both(fn)` runs fn(port)
    against each and returns {"ours": result, "mosquitto": result}."""

    our_extra = ()

    def setUp(self):
        self.ours, self.port = self.start_our_broker(name="ours", extra=self.our_extra)
        self._clients = []

    def tearDown(self):
        for c in self._clients:
            c.stop()
        # Our broker must survive the test and exit cleanly on SIGTERM (under
        # ASan/UBSan this also catches leaks and memory errors).
        rc = self.ours.stop()  # a crash shows as a non-zero (or negative) code
        self.assertEqual(rc, 0, self.ours.output())
        self.assertNotIn("Sanitizer", self.ours.output())

    def client(self, port, *a, **kw):
        c = Paho(port, *a, **kw)
        self._clients.append(c)
        return c

    def mosquitto_port(self):
        if not hasattr(self, "_mport"):
            _, self._mport = self.start_mosquitto()
        return self._mport

    def both(self, fn):
        res = {"ours": fn(self.port), "mosquitto": fn(self.mosquitto_port())}
        self.assertEqual(res["ours"], res["mosquitto"], "our broker differs from mosquitto")
        return res["ours"]
