"""MQTT 5 features of mqttlb-broker with paho-mqtt and raw sockets, compared
with Debian's mosquitto where both implement the feature the same way:
assigned client id, topic alias, No Local, Retain As Published, Retain
Handling, Subscription Identifiers, Message Expiry, Session Expiry, Will Delay,
Receive Maximum and Maximum Packet Size."""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import main  # noqa: E402
from broker_helpers import (V5, BrokerTest, Paho, props, publish,  # noqa: E402
                            raw_connect, subscribe)
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402


def cprops(**kw):
    p = Properties(PacketTypes.CONNECT)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def pprops(**kw):
    p = Properties(PacketTypes.PUBLISH)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def wait_seconds(s):
    """Lets protocol time pass (expiry intervals are the behaviour under test)."""
    deadline = time.monotonic() + s
    while time.monotonic() < deadline:
        time.sleep(0.05)


class V5Features(BrokerTest):
    def v5(self, port, cid="", **kw):
        return self.client(port, cid, version=V5, **kw)

    def test_assigned_client_identifier(self):
        def fn(port):
            c = Paho(port, "", version=V5, auto_connect=False)
            self._clients.append(c)
            present, rc, p = c.connect()
            ids = getattr(p, "AssignedClientIdentifier", "")
            return present, rc, len(ids) > 0
        self.assertEqual(self.both(fn), (False, 0, True))
        # Two clients get different ids.
        got = set()
        for _ in range(2):
            c = Paho(self.port, "", version=V5, auto_connect=False)
            self._clients.append(c)
            got.add(c.connect()[2].AssignedClientIdentifier)
        self.assertEqual(len(got), 2)

    def test_topic_alias_client_to_server(self):
        def fn(port):
            sub = self.v5(port, "al-sub")
            sub.sub("al/#", 0)
            r, _ = raw_connect(port, "al-pub", V5)
            r.send(publish("al/long/topic", b"one", version=V5, properties=props((0x23, u16(3)))))
            r.send(publish("", b"two", version=V5, properties=props((0x23, u16(3)))))
            r.send(publish("al/other", b"three", version=V5, properties=props((0x23, u16(3)))))
            r.send(publish("", b"four", version=V5, properties=props((0x23, u16(3)))))
            got = [(m.topic, m.payload) for m in [sub.get(5) for _ in range(4)] if m]
            r.send(publish("al/x", b"bad", version=V5, properties=props((0x23, u16(11)))))
            bad = r.expect_closed()
            return got, [b[0] for b in bad], [b[1][:1] for b in bad]
        got, types, reasons = self.both(fn)
        self.assertEqual(got, [("al/long/topic", b"one"), ("al/long/topic", b"two"),
                               ("al/other", b"three"), ("al/other", b"four")])
        self.assertEqual(types, [0xE0])
        self.assertEqual(reasons, [b"\x94"])  # Topic Alias invalid (above the maximum of 10)

    def test_no_local_and_retain_as_published(self):
        def fn(port):
            a = self.v5(port, "nl-a")
            a.sub("nl/t", 1, no_local=True)
            a.sub("rap/t", 1, retain_as_published=True)
            b = self.v5(port, "nl-b")
            b.sub("rap/t", 1)
            a.pub("nl/t", "own", 1)
            b.pub("nl/t", "other", 1)
            b.pub("rap/t", "kept flag", 1, retain=True)
            ga = sorted((m.topic, m.payload, m.retain) for m in [a.get(5), a.get(5)] if m)
            gb = [(m.topic, m.payload, m.retain) for m in [b.get(5)] if m]
            b.pub("rap/t", "", 1, retain=True)
            return ga, gb, a.get(0.3) is not None
        ga, gb, _ = self.both(fn)
        self.assertEqual(ga, [("nl/t", b"other", 0), ("rap/t", b"kept flag", 1)])
        self.assertEqual(gb, [("rap/t", b"kept flag", 0)])

    def test_retain_handling(self):
        def fn(port):
            p = self.v5(port, "rh-p")
            p.pub("rh/t", "stored", 1, retain=True)
            res = []
            for rh in (0, 1, 2):
                c = self.v5(port, f"rh-{rh}")
                c.sub("rh/t", 1, retain_handling=rh)
                c.sub("rh/t", 1, retain_handling=rh)  # same filter again
                p.pub("rh/marker", "m", 1)
                c.sub("rh/marker", 1)
                p.pub("rh/marker", "m", 1)
                got = []
                for _ in range(4):
                    m = c.get(5)
                    if m is None or m.topic == "rh/marker":
                        break
                    got.append(m.payload)
                res.append(got)
            p.pub("rh/t", "", 1, retain=True)
            return res
        self.assertEqual(self.both(fn), [[b"stored", b"stored"], [b"stored"], []])

    def test_subscription_identifiers(self):
        """Each matching subscription's identifier reaches the client. Overlapping
        subscriptions give one PUBLISH carrying every matching identifier
        [MQTT-3.3.4-3, -5] (mosquitto sends one copy per subscription instead, so
        this one is not compared with it)."""
        c = self.v5(self.port, "si")
        c.sub("si/#", 1, sub_id=5)
        c.sub("si/+", 1, sub_id=7)
        c.sub("si/none", 1)
        p = self.v5(self.port, "si-p")
        p.pub("si/x", "both", 1)
        p.pub("si/a/b", "one", 1)
        p.pub("si/none", "three", 1)
        out = []
        for _ in range(3):
            m = c.get(5)
            self.assertIsNotNone(m, out)
            out.append((m.payload, sorted(getattr(m.properties, "SubscriptionIdentifier", []))))
        self.assertEqual(sorted(out), [(b"both", [5, 7]), (b"one", [5]), (b"three", [5, 7])])
        self.assertIsNone(c.get(0.3), "one copy per message")

    def test_message_expiry(self):
        def fn(port):
            s = self.v5(port, "me", clean=False, connect_props=cprops(SessionExpiryInterval=60))
            s.sub("me/t", 1)
            s.stop()
            p = self.v5(port, "me-p")
            p.pub("me/t", "short", 1, properties=pprops(MessageExpiryInterval=1))
            p.pub("me/t", "long", 1, properties=pprops(MessageExpiryInterval=100))
            p.pub("me/r", "short retained", 1, retain=True, properties=pprops(MessageExpiryInterval=1))
            wait_seconds(2.2)
            s2 = Paho(port, "me", version=V5, clean=False, auto_connect=False,
                      connect_props=cprops(SessionExpiryInterval=60))
            self._clients.append(s2)
            s2.connect()
            m = s2.get(5)
            left = m.properties.MessageExpiryInterval
            s2.sub("me/r", 1)
            p.pub("me/t", "marker", 0)
            m2 = s2.get(5)
            return m.payload, 90 <= left <= 100, m2.payload
        self.assertEqual(self.both(fn), (b"long", True, b"marker"))

    def test_session_expiry(self):
        def fn(port):
            res = []
            for expiry in (1, 60):
                cid = f"se-{expiry}"
                c = self.v5(port, cid, clean=False, connect_props=cprops(SessionExpiryInterval=expiry))
                c.sub("se/t", 1)
                c.stop()
            wait_seconds(2.5)
            for expiry in (1, 60):
                c = Paho(port, f"se-{expiry}", version=V5, clean=False, auto_connect=False,
                         connect_props=cprops(SessionExpiryInterval=expiry))
                self._clients.append(c)
                res.append(c.connect()[0])
            return res
        self.assertEqual(self.both(fn), [False, True])

    def test_will_delay(self):
        def fn(port):
            w = self.v5(port, "wd-watch")
            w.sub("wd/#", 1)
            wprops = props((0x18, u32(2)))  # Will Delay Interval 2 s
            cp = props((0x11, u32(30)))     # Session Expiry 30 s
            # Reconnects within the delay: no will.
            r, _ = raw_connect(port, "wd-back", V5, clean=False, properties=cp,
                               will=("wd/back", b"should not", 1, False), will_properties=wprops)
            r.close()
            r2, ack = raw_connect(port, "wd-back", V5, clean=False, properties=cp)
            # Stays away: the will comes after the delay, not at once.
            t0 = time.monotonic()
            r3, _ = raw_connect(port, "wd-gone", V5, clean=False, properties=cp,
                                will=("wd/gone", b"late will", 1, False), will_properties=wprops)
            r3.close()
            m = w.get(8)
            waited = time.monotonic() - t0
            r2.close()
            return ack[0], (m.topic, m.payload) if m else None, waited >= 1.5
        self.assertEqual(self.both(fn), (1, ("wd/gone", b"late will"), True))

    def test_receive_maximum_limits_inflight(self):
        def fn(port):
            r, _ = raw_connect(port, "rm", V5, properties=props((0x21, u16(2))))
            r.send(subscribe([("rm/t", 1)], version=V5))
            r.recv()
            p = self.v5(port, "rm-p")
            for i in range(5):
                p.pub("rm/t", f"m{i}", 1)
            first = [r.recv() for _ in range(2)]
            try:
                r.recv(0.7)
                extra = True
            except AssertionError:
                extra = False
            pid = first[0][1][6:8]
            r.send(b"\x40\x02" + pid)  # PUBACK one: exactly one more may come
            third = r.recv()
            return [f[1].endswith(b"m0") for f in first[:1]], extra, third[1].endswith(b"m2")
        self.assertEqual(self.both(fn), ([True], False, True))

    def test_maximum_packet_size_client_side(self):
        def fn(port):
            c = self.v5(port, "mps", connect_props=cprops(MaximumPacketSize=100))
            c.sub("mps/t", 0)
            p = self.v5(port, "mps-p")
            p.pub("mps/t", "x" * 200, 1)
            p.pub("mps/t", "small", 1)
            m = c.get(5)
            return m.payload
        self.assertEqual(self.both(fn), b"small")


class ServerMaximumPacketSize(BrokerTest):
    our_extra = ("--max-packet-size", "1024")

    def test_too_large_is_0x95(self):
        def fn(port):
            r, ack = raw_connect(port, "big", V5)
            r.send(publish("big/t", b"x" * 2000, version=V5))
            got = r.expect_closed()
            return [(fb, body[:1]) for fb, body in got]
        # Mosquitto with the same limit.
        ours = fn(self.port)
        _, mport = self.start_mosquitto(extra_conf="max_packet_size 1024")
        self.assertEqual(ours, fn(mport))
        self.assertEqual(ours, [(0xE0, b"\x95")])
        r, ack = raw_connect(self.port, "big2", V5)
        self.assertIn(b"\x27\x00\x00\x04\x00", ack)  # CONNACK Maximum Packet Size 1024


if __name__ == "__main__":
    main()
