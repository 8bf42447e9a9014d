"""mqttlb-broker conformance additions (issue 10), one focused test per
behaviour: MQTT 5 Server Keep Alive (--max-keepalive), server -> client Topic
Aliases, one delivery with every Subscription Identifier for overlapping 5.0
subscriptions, inbound Receive Maximum (DISCONNECT 0x93), and the topic ACL
(--acl FILE). Raw sockets where the exact bytes matter, paho-mqtt elsewhere."""
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TestCase, binary, free_port, main  # noqa: E402
from broker_helpers import (V311, V5, BrokerTest, props, publish, raw_connect,  # noqa: E402
                            subscribe)

# MQTT 5 property id -> value type, for the properties these tests read.
PROP_TYPES = {0x01: "u8", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "var",
              0x11: "u32", 0x12: "str", 0x13: "u16", 0x1F: "str", 0x21: "u16", 0x22: "u16",
              0x23: "u16", 0x24: "u8", 0x25: "u8", 0x26: "pair", 0x27: "u32", 0x28: "u8",
              0x29: "u8", 0x2A: "u8"}


def read_varint(b, i):
    n, mult = 0, 1
    while True:
        c = b[i]
        i += 1
        n += (c & 0x7F) * mult
        mult *= 128
        if not c & 0x80:
            return n, i


def parse_props(b, i):
    """Property block at b[i:] -> ({id: value or [values]}, index after it)."""
    n, i = read_varint(b, i)
    end, out = i + n, {}
    while i < end:
        pid = b[i]
        i += 1
        t = PROP_TYPES[pid]
        if t == "u8":
            v, i = b[i], i + 1
        elif t == "u16":
            v, i = struct.unpack("!H", b[i:i + 2])[0], i + 2
        elif t == "u32":
            v, i = struct.unpack("!I", b[i:i + 4])[0], i + 4
        elif t == "var":
            v, i = read_varint(b, i)
        elif t in ("str", "bin"):
            ln = struct.unpack("!H", b[i:i + 2])[0]
            v, i = b[i + 2:i + 2 + ln], i + 2 + ln
        else:
            k = struct.unpack("!H", b[i:i + 2])[0]
            key = b[i + 2:i + 2 + k]
            i += 2 + k
            ln = struct.unpack("!H", b[i:i + 2])[0]
            v, i = (key, b[i + 2:i + 2 + ln]), i + 2 + ln
        if pid in (0x0B, 0x26):
            out.setdefault(pid, []).append(v)
        else:
            out[pid] = v
    return out, i


def connack_props(body):
    return parse_props(body, 2)[0]


def parse_publish5(fb, body):
    """(topic, qos, props, payload) of a 5.0 PUBLISH."""
    qos = (fb >> 1) & 3
    tl = struct.unpack("!H", body[:2])[0]
    topic, i = body[2:2 + tl].decode(), 2 + tl
    if qos:
        i += 2
    p, i = parse_props(body, i)
    return topic, qos, p, body[i:]


def u16(n):
    return struct.pack("!H", n)


class ServerKeepAlive(BrokerTest):
    our_extra = ("--max-keepalive", "2")

    def test_client_asking_more_is_told_the_maximum_and_held_to_it(self):
        r, ack = raw_connect(self.port, "ska-big", V5, keepalive=120)
        self.assertEqual(connack_props(ack).get(0x13), 2)  # Server Keep Alive [MQTT-3.2.2-21]
        t0 = time.monotonic()
        got = r.expect_closed(timeout=10)  # silent: closed after 1.5 x 2 s, not 1.5 x 120 s
        waited = time.monotonic() - t0
        self.assertEqual([(fb, body[:1]) for fb, body in got], [(0xE0, b"\x8d")])
        self.assertTrue(2.5 <= waited <= 6, waited)
        r.close()

    def test_zero_counts_as_more_and_smaller_is_kept(self):
        r0, ack0 = raw_connect(self.port, "ska-zero", V5, keepalive=0)
        self.assertEqual(connack_props(ack0).get(0x13), 2)
        r1, ack1 = raw_connect(self.port, "ska-small", V5, keepalive=1)
        self.assertNotIn(0x13, connack_props(ack1))  # within the limit: not sent
        # 3.1.1 has no way to say it: the client's own value stays.
        r3, ack3 = raw_connect(self.port, "ska-311", V311, keepalive=120)
        self.assertEqual(ack3, b"\x00\x00")
        for r in (r0, r1, r3):
            r.close()


class DefaultMaxKeepAlive(BrokerTest):
    def test_default_is_60(self):
        r, ack = raw_connect(self.port, "ska-default", V5, keepalive=61)
        self.assertEqual(connack_props(ack).get(0x13), 60)
        r2, ack2 = raw_connect(self.port, "ska-60", V5, keepalive=60)
        self.assertNotIn(0x13, connack_props(ack2))
        r.close()
        r2.close()


class TopicAliasOut(BrokerTest):
    def subscriber(self, cid, alias_max):
        p = props((0x22, u16(alias_max))) if alias_max else b"\x00"
        r, ack = raw_connect(self.port, cid, V5, properties=p)
        r.send(subscribe([("ta/#", 1)], version=V5))
        self.assertEqual(r.recv()[0], 0x90)
        return r

    def receive(self, r, n):
        out = []
        for _ in range(n):
            fb, body = r.recv()
            self.assertEqual(fb & 0xF0, 0x30)
            topic, qos, p, payload = parse_publish5(fb, body)
            if qos:
                r.send(b"\x40\x02" + body[2 + struct.unpack("!H", body[:2])[0]:][:2])
            out.append((topic, p.get(0x23), payload))
        return out

    def test_first_publish_sets_alias_then_alias_alone(self):
        r = self.subscriber("ta-sub", 2)
        pub, _ = raw_connect(self.port, "ta-pub", V5)
        for i, t in enumerate(["ta/one", "ta/one", "ta/two", "ta/two", "ta/three", "ta/three",
                               "ta/one"]):
            pub.send(publish(t, f"m{i}", qos=i % 2, pid=i + 1, version=V5))
        got = self.receive(r, 7)
        self.assertEqual(got, [
            ("ta/one", 1, b"m0"), ("", 1, b"m1"),          # alias 1 set, then used
            ("ta/two", 2, b"m2"), ("", 2, b"m3"),          # alias 2
            ("ta/three", None, b"m4"), ("ta/three", None, b"m5"),  # maximum 2 reached: full topic
            ("", 1, b"m6")])
        self.assertEqual([pub.recv()[0] for _ in range(3)], [0x40] * 3)
        r.close()
        # A new connection starts a new alias table [MQTT-3.3.2-7], and retained
        # messages sent on subscribe use aliases too.
        pub.send(publish("ta/kept", "r", qos=1, pid=100, retain=True, version=V5))
        self.assertEqual(pub.recv()[0], 0x40)
        r2 = self.subscriber("ta-sub", 2)
        pub.send(publish("ta/one", "again", version=V5))
        pub.send(publish("ta/kept", "live", version=V5))
        self.assertEqual(self.receive(r2, 3), [("ta/kept", 1, b"r"), ("ta/one", 2, b"again"),
                                               ("", 1, b"live")])
        pub.send(publish("ta/kept", "", retain=True, version=V5))
        for c in (r2, pub):
            c.close()

    def test_no_alias_without_topic_alias_maximum(self):
        r = self.subscriber("ta-none", 0)
        pub, _ = raw_connect(self.port, "ta-pub2", V5)
        for _ in range(2):
            pub.send(publish("ta/x", "m", version=V5))
        self.assertEqual(self.receive(r, 2), [("ta/x", None, b"m")] * 2)
        r.close()
        pub.close()


class OverlappingV5(BrokerTest):
    def test_one_delivery_with_every_identifier_and_the_highest_qos(self):
        c = self.client(self.port, "ov5", version=V5)
        c.sub("ov/#", 0, sub_id=1)
        c.sub("ov/+", 2, sub_id=2)
        c.sub("ov/t", 1)  # no identifier
        c.sub("$share/g/ov/t", 1, sub_id=9)  # shared: its own copy
        p = self.client(self.port, "ov5-p", version=V5)
        p.pub("ov/t", "x", 2)
        got = sorted((m.qos, sorted(m.properties.SubscriptionIdentifier))
                     for m in [c.get(5), c.get(5)])
        self.assertEqual(got, [(1, [9]), (2, [1, 2])])
        self.assertIsNone(c.get(0.3))

    def test_311_still_gets_one_copy_per_subscription(self):
        c = self.client(self.port, "ov3")
        c.sub("ov3/#", 0)
        c.sub("ov3/+", 1)
        self.client(self.port, "ov3-p").pub("ov3/t", "x", 1)
        self.assertEqual(sorted(m.qos for m in [c.get(5), c.get(5)]), [0, 1])


class InboundReceiveMaximum(BrokerTest):
    def test_more_unacknowledged_qos2_than_receive_maximum_is_0x93(self):
        r, ack = raw_connect(self.port, "rmx", V5)
        limit = connack_props(ack)[0x21]
        self.assertEqual(limit, 100)
        for i in range(1, limit + 1):
            r.send(publish("rmx/t", "m", qos=2, pid=i, version=V5))
        for i in range(1, limit + 1):
            fb, body = r.recv()
            self.assertEqual((fb, body[:2]), (0x50, u16(i)))  # PUBREC, no PUBREL sent yet
        # Releasing one makes room for exactly one more.
        r.send(b"\x62\x02" + u16(1))
        self.assertEqual(r.recv()[0], 0x70)  # PUBCOMP
        r.send(publish("rmx/t", "m", qos=2, pid=1000, version=V5))
        self.assertEqual(r.recv()[0], 0x50)
        r.send(publish("rmx/t", "m", qos=2, pid=1001, version=V5))
        got = r.expect_closed()
        self.assertEqual([(fb, body[:1]) for fb, body in got], [(0xE0, b"\x93")])
        r.close()


ACL = """# test ACL
topic readwrite acl/#
topic deny acl/secret/#
topic read acl-ro/#
topic write acl-wo/#
topic readwrite test/nosubscribe-not
"""


class TopicAcl(BrokerTest):
    def setUp(self):
        d = self.tmpdir()
        self.acl = os.path.join(d, "acl")
        with open(self.acl, "w") as f:
            f.write(ACL)
        self.our_extra = ("--acl", self.acl)
        super().setUp()

    def sub_codes(self, version, filters):
        r, _ = raw_connect(self.port, f"acl-s{version}", version)
        r.send(subscribe([(f, 1) for f in filters], version=version))
        fb, body = r.recv()
        r.close()
        return list(body[2:] if version != V5 else body[3:])

    def test_denied_subscription_is_0x80_or_0x87(self):
        filters = ["acl/a", "acl/#", "acl/secret/x", "acl-ro/a", "acl-wo/a", "other", "#",
                   "$share/g/acl/secret/x"]
        self.assertEqual(self.sub_codes(V311, filters), [1, 1, 0x80, 1, 0x80, 0x80, 0x80, 0x80])
        self.assertEqual(self.sub_codes(V5, filters), [1, 1, 0x87, 1, 0x87, 0x87, 0x87, 0x87])

    def test_denied_topics_are_not_delivered_through_a_wider_subscription(self):
        c = self.client(self.port, "acl-wide", version=V5)
        self.assertEqual(c.sub("acl/#", 1), [1])
        p = self.client(self.port, "acl-p", version=V5)
        p.pub("acl/secret/x", "hidden", 1)
        p.pub("acl/open", "seen", 1)
        m = c.get(5)
        self.assertEqual((m.topic, m.payload), ("acl/open", b"seen"))
        self.assertIsNone(c.get(0.3))

    def test_denied_publish_is_dropped_and_5_0_says_0x87(self):
        r3, _ = raw_connect(self.port, "acl-p3", V311)
        r5, _ = raw_connect(self.port, "acl-p5", V5)
        sub = self.client(self.port, "acl-ro-sub")
        sub.sub("acl-ro/#", 1)
        r3.send(publish("acl-ro/t", "no", qos=1, pid=3))
        self.assertEqual(r3.recv(), (0x40, u16(3)))  # 3.1.1: acknowledged, dropped
        r5.send(publish("acl-ro/t", "no", qos=1, pid=5, version=V5))
        self.assertEqual(r5.recv(), (0x40, u16(5) + b"\x87"))
        r5.send(publish("acl-ro/t", "no", qos=2, pid=6, version=V5))
        self.assertEqual(r5.recv(), (0x50, u16(6) + b"\x87"))  # PUBREC >= 0x80 ends the flow
        r5.send(publish("acl-ro/t", "kept?", qos=1, pid=7, retain=True, version=V5))
        self.assertEqual(r5.recv(), (0x40, u16(7) + b"\x87"))
        r5.send(publish("acl-wo/t", "ok", qos=1, pid=8, version=V5))
        self.assertEqual(r5.recv(), (0x40, u16(8) + b"\x10"))  # allowed; nobody subscribed
        self.assertIsNone(sub.get(0.5))
        # Nothing was retained either.
        late = self.client(self.port, "acl-late")
        late.sub("acl-ro/#", 1)
        self.assertIsNone(late.get(0.5))
        r3.close()
        r5.close()

    def test_will_to_a_denied_topic_is_not_published(self):
        w = self.client(self.port, "acl-will-watch")
        w.sub("acl-ro/#", 1)
        w.sub("acl/#", 1)
        r, _ = raw_connect(self.port, "acl-w1", will=("acl-ro/will", b"denied", 1, False))
        r2, _ = raw_connect(self.port, "acl-w2", will=("acl/will", b"allowed", 1, False))
        r.close()
        r2.close()
        m = w.get(5)
        self.assertEqual((m.topic, m.payload), ("acl/will", b"allowed"))
        self.assertIsNone(w.get(0.5))


class AclFileErrors(TestCase):
    def test_bad_file_is_refused_with_its_line(self):
        d = self.tmpdir()
        bad = os.path.join(d, "acl")
        with open(bad, "w") as f:
            f.write("topic read a/#\n\nuser bob\n")
        b = binary("mqttlb-broker")
        r = subprocess.run([b, "--port", str(free_port()), "--acl", bad], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("line 3", r.stderr)
        with open(bad, "w") as f:
            f.write("topic read a/#/b\n")
        r = subprocess.run([b, "--port", str(free_port()), "--acl", bad], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("line 1: invalid topic filter", r.stderr)
        r = subprocess.run([b, "--port", str(free_port()), "--acl", os.path.join(d, "missing")],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr)


if __name__ == "__main__":
    main()
