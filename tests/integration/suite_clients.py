"""Clients for test_broker_paho311.py and test_broker_paho5.py, our own
re-implementation of the scenarios of the Eclipse Paho interoperability suites
(paho.mqtt.testing, interoperability/client_test.py and client_test5.py).

SuiteClient plays the suites' `aclient` / `bclient`: one client id used across
many connections, whose received messages, SUBACKs and server DISCONNECTs
accumulate in lists (the suites' Callbacks) until clear(). It is built on
Debian's paho-mqtt (a fresh paho Client per connection, so nothing leaks from
one connection to the next). Where the suites rely on a client that sends no
PINGREQ, stops acknowledging, or drops its socket, the tests use
broker_helpers.Raw instead. Every wait has a deadline.
"""
import os
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from broker_helpers import (V311, V5, BrokerTest, Raw, packet, publish, raw_connect, s16,
                            subscribe)


class Refused(Exception):
    """CONNECT refused or the connection closed before CONNACK."""


def properties(kind, **kw):
    """paho Properties of packet type `kind` ("CONNECT", "PUBLISH", ...);
    UserProperty may be a list of pairs."""
    p = Properties(getattr(PacketTypes, kind))
    for k, v in kw.items():
        if k == "UserProperty":
            for pair in v:
                p.UserProperty = pair
        else:
            setattr(p, k, v)
    return p


class Message:
    def __init__(self, m):
        self.topic, self.payload, self.qos, self.retain = m.topic, m.payload, m.qos, bool(m.retain)
        self.properties = getattr(m, "properties", None)

    def __repr__(self):
        return f"Message({self.topic!r}, {self.payload!r}, qos={self.qos}, retain={self.retain})"


class SuiteClient:
    def __init__(self, port, client_id, version=V311):
        self.port, self.client_id, self.version = port, client_id, version
        self._cv = threading.Condition()
        self.c = None
        self.clear()

    def clear(self):
        with self._cv:
            self.messages, self.subscribeds, self.unsubscribeds, self.disconnects = [], [], [], []

    # -- waiting
    def wait(self, cond, timeout, what):
        """Waits until cond() holds (under the lock); fails after timeout."""
        with self._cv:
            if not self._cv.wait_for(cond, timeout):
                raise AssertionError(f"{self.client_id}: timed out after {timeout}s waiting for "
                                     f"{what}; messages={self.messages}")

    def wait_messages(self, n, timeout=10.0):
        self.wait(lambda: len(self.messages) >= n, timeout, f"{n} messages")
        return list(self.messages)

    def _notify(self, fn):
        with self._cv:
            fn()
            self._cv.notify_all()

    # -- connection
    def connect(self, clean=True, keepalive=60, will=None, props=None, timeout=10.0):
        """Connects; returns (session_present, reason code, CONNACK properties).
        will = (topic, payload, qos, retain[, properties]). Raises Refused."""
        self.close()
        kw = {} if self.version == V5 else {"clean_session": clean}
        proto = mqtt.MQTTv5 if self.version == V5 else mqtt.MQTTv311
        c = mqtt.Client(client_id=self.client_id, protocol=proto, **kw)
        c.reconnect_delay_set(60, 120)  # never reconnect behind the test's back
        box = {}
        done = threading.Event()

        def on_connect(cl, u, flags, rc, p=None):
            box["ack"] = (bool(flags.get("session present")), getattr(rc, "value", rc), p)
            done.set()

        def on_disconnect(cl, u, rc, p=None):
            if "ack" in box:  # a DISCONNECT from the server, or the socket closing
                self._notify(lambda: self.disconnects.append(getattr(rc, "value", rc)))
            done.set()

        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.on_message = lambda cl, u, m: self._notify(lambda: self.messages.append(Message(m)))
        if self.version == V5:
            c.on_subscribe = lambda cl, u, mid, rcs, p: self._notify(
                lambda: self.subscribeds.append((mid, [r.value for r in rcs])))
        else:
            c.on_subscribe = lambda cl, u, mid, q: self._notify(
                lambda: self.subscribeds.append((mid, list(q))))
        c.on_unsubscribe = lambda cl, u, mid, *a: self._notify(
            lambda: self.unsubscribeds.append(mid))
        if will:
            c.will_set(will[0], will[1], will[2], will[3],
                       properties=will[4] if len(will) > 4 else None)
        ckw = {"clean_start": clean, "properties": props} if self.version == V5 else {}
        try:
            c.connect("127.0.0.1", self.port, keepalive, **ckw)
        except OSError as e:
            raise Refused(str(e))
        c.loop_start()
        self.c = c
        if not done.wait(timeout) or "ack" not in box:
            self.close()
            raise Refused("no CONNACK")
        if box["ack"][1] != 0:
            self.close()
            raise Refused(f"CONNACK {box['ack'][1]:#x}")
        return box["ack"]

    def close(self):
        """Stops the paho loop of the current connection (after disconnect())."""
        if self.c is not None:
            self.c.loop_stop()
            self.c = None

    def disconnect(self, props=None, timeout=10.0):
        if self.c is None:
            return
        gone = threading.Event()
        prev = self.c.on_disconnect
        self.c.on_disconnect = lambda *a: (prev(*a), gone.set())
        if self.version == V5:
            self.c.disconnect(properties=props)
        else:
            self.c.disconnect()
        gone.wait(timeout)
        self.close()

    def terminate(self):
        """Drops the TCP connection without DISCONNECT (the will applies)."""
        if self.c is not None:
            sock = self.c.socket()
            self.c.on_disconnect = None
            if sock:
                sock.shutdown(socket.SHUT_RDWR)
            self.close()

    # -- packets
    def subscribe(self, filters, qoss, props=None, timeout=10.0):
        """SUBSCRIBE with (filter, qos or (qos, options dict)) pairs; waits for
        the SUBACK and returns its codes."""
        if self.version == V5:
            opts = []
            for q in qoss:
                q, o = (q, {}) if isinstance(q, int) else q
                opts.append(SubscribeOptions(qos=q, **o))
            rc, mid = self.c.subscribe(list(zip(filters, opts)), properties=props)
        else:
            rc, mid = self.c.subscribe(list(zip(filters, qoss)))
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        self.wait(lambda: any(m == mid for m, _ in self.subscribeds), timeout, "SUBACK")
        return next(codes for m, codes in self.subscribeds if m == mid)

    def unsubscribe(self, filters, timeout=10.0):
        rc, mid = self.c.unsubscribe(filters)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        self.wait(lambda: mid in self.unsubscribeds, timeout, "UNSUBACK")

    def publish(self, topic, payload, qos=0, retain=False, props=None, timeout=10.0):
        """Publishes; for QoS 1/2 waits until the flow is complete."""
        info = self.c.publish(topic, payload, qos, retain, properties=props)
        if qos:
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline:
                info.wait_for_publish(0.1)
            assert info.is_published(), f"publish to {topic} not acknowledged"
        return info


def quiet(seconds=0.5):
    """Lets `seconds` pass for a check that something does NOT arrive."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


# What the suite expects of the server's configuration, as an ACL: one filter
# refused, the rest open (the $-topic case publishes to $TopicA/B and
# $client_test5/TopicA/B: allowed, so that case tests $-matching, not the ACL).
SUITE_ACL = """topic readwrite #
topic readwrite $TopicA/#
topic readwrite $client_test5/#
topic deny test/nosubscribe
"""


def suite_acl(tc):
    path = os.path.join(tc.tmpdir(), "suite.acl")
    with open(path, "w") as f:
        f.write(SUITE_ACL)
    return path


def pid_of(body):
    """Packet id of a PUBLISH body (QoS > 0)."""
    n = int.from_bytes(body[:2], "big")
    return body[2 + n:4 + n]


class SuiteBase(BrokerTest):
    """One suite's test case: a fresh broker with the suite's ACL, aclient and bclient."""
    version = V311

    def setUp(self):
        self.our_extra = ("--acl", suite_acl(self))
        super().setUp()
        self.aclient = self.suite_client("myclientid")
        self.bclient = self.suite_client("myclientid2")

    def tearDown(self):
        for c in (self.aclient, self.bclient):
            c.disconnect()
        super().tearDown()

    def ports(self):
        """Ports the scenario's clients connect to, in turn (a, b, others)."""
        return [self.port]

    def port_for(self, i):
        p = self.ports()
        return p[i % len(p)]

    def suite_client(self, cid, i=None):
        i = {"myclientid": 0, "myclientid2": 1}.get(cid, 2) if i is None else i
        return SuiteClient(self.port_for(i), cid, self.version)

    def raw(self, i, client_id, **kw):
        """A raw connection that sends no PINGREQ and acknowledges nothing by itself."""
        r, ack = raw_connect(self.port_for(i), client_id, self.version, **kw)
        self.addCleanup(r.close)
        return r, ack

    def redelivery_scenario(self, connect_props=None):
        """bclient subscribes, stops acknowledging, publishes QoS 1 and 2 to
        itself, disconnects; on reconnect both are sent again."""
        kw = {"properties": connect_props} if connect_props is not None else {}
        r, _ = self.raw(1, "myclientid2", clean=False, **kw)
        v = self.version
        r.send(subscribe([(self.WILDTOPICS[6], 2)], version=v))
        self.assertEqual(r.recv()[0], 0x90)
        r.send(publish(self.TOPICS[1], b"", qos=1, pid=1, version=v))
        r.send(publish(self.TOPICS[3], b"", qos=2, pid=2, version=v))
        incoming, acked = [], set()
        for _ in range(10):  # PUBACK, PUBREC (answered with PUBREL), PUBCOMP, 2 PUBLISH
            if len(incoming) == 2 and acked == {0x40, 0x70}:
                break
            fb, body = r.recv()
            if fb == 0x50:
                r.send(b"\x62\x02" + body[:2])
            elif fb & 0xF0 == 0x30:
                incoming.append(fb)  # not acknowledged: the client is "paused"
            else:
                acked.add(fb)
        r.send(b"\xe0\x00")
        r.close()
        self.assertEqual(len(incoming), 2)
        r2, ack = self.raw(1, "myclientid2", clean=False, **kw)
        redelivered = []
        for _ in range(2):
            fb, body = r2.recv()
            self.assertEqual(fb & 0xF8, 0x38)  # PUBLISH with DUP [MQTT-4.4.0-1]
            redelivered.append((fb >> 1) & 3)
            r2.send((b"\x40\x02" if (fb >> 1) & 3 == 1 else b"\x50\x02") + pid_of(body))
        self.assertEqual(sorted(redelivered), [1, 2])
        r2.send(b"\xe0\x00")

    def wrong_protocol_name_is_refused(self):
        # A wrong protocol name is refused [MQTT-3.1.2-1]: closed, no CONNACK.
        bad = Raw(self.port_for(0))
        self.addCleanup(bad.close)
        props = b"\x00" if self.version == 5 else b""
        bad.send(packet(0x10, s16("hj") + bytes([self.version, 0x02, 0, 60]) + props +
                        s16("myclientid")))
        self.assertEqual(bad.expect_closed(), [])

    # ---- scenarios both suites have, with each suite's topics
    def offline_queueing_scenario(self, **first_connect):
        """aclient subscribes and leaves; bclient publishes QoS 0/1/2; aclient
        comes back: returns (Session Present, payloads received)."""
        a, b, T, W = self.aclient, self.bclient, self.TOPICS, self.WILDTOPICS
        a.connect(**first_connect)
        a.subscribe([W[5]], [2])
        a.disconnect()
        present, _, _ = b.connect(clean=True)
        self.assertFalse(present)
        b.publish(T[1], b"qos 0", 0)
        b.publish(T[2], b"qos 1", 1)
        b.publish(T[3], b"qos 2", 2)
        b.disconnect()
        present, _, _ = a.connect(clean=False)
        a.wait_messages(2)
        quiet()
        a.disconnect()
        return present, sorted(m.payload for m in a.messages)

    def overlapping_scenario(self):
        """Two overlapping subscriptions (QoS 2 and 1); returns the QoS of each copy."""
        a, T, W = self.aclient, self.TOPICS, self.WILDTOPICS
        a.connect()
        a.subscribe([W[6], W[0]], [2, 1])
        a.publish(T[3], b"overlapping topic filters", 2)
        a.wait_messages(1)
        quiet()
        a.disconnect()
        return sorted(m.qos for m in a.messages)

    def keepalive_scenario(self):
        """aclient sends nothing (the suites' client has no PINGREQ): after
        1.5 x 5 s its will reaches bclient."""
        T = self.TOPICS
        self.raw(0, "myclientid", clean=True, keepalive=5,
                 will=(T[4], b"keepalive expiry", 0, False))
        b = self.bclient
        b.connect(clean=True, keepalive=0)
        b.subscribe([T[4]], [2])
        b.wait_messages(1, timeout=15)
        b.disconnect()
        self.assertEqual([m.payload for m in b.messages], [b"keepalive expiry"])

    def dollar_topics_scenario(self):
        """"+/+" does not match a $-topic [MQTT-4.7.2-1] (a marker after it)."""
        b, T, W = self.bclient, self.TOPICS, self.WILDTOPICS
        b.connect(clean=True, keepalive=0)
        b.subscribe([W[5]], [2])
        b.publish("$" + T[1], b"", 1)
        b.publish(T[1], b"marker", 1)
        got = b.wait_messages(1)
        self.assertEqual([m.topic for m in got], [T[1]])
        b.disconnect()
