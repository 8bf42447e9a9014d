"""Malformed and illegal packets: a 5.0 client gets DISCONNECT with the right
reason code (and a Reason String), then the connection closes; a 3.1.1 client
is closed; nothing crashes and other clients keep working. Where Debian's
mosquitto also closes the connection, it is run as the oracle for "closed"."""
import os
import random
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import main  # noqa: E402
from broker_helpers import (V31, V311, V5, BrokerTest, DISCONNECT, Raw, connect, props,  # noqa: E402
                            publish, raw_connect, subscribe)

# name: (bytes after CONNECT, our DISCONNECT reason, mosquitto closes too)
CASES = {
    "PUBLISH QoS 3": (b"\x36\x05\x00\x01a\x00\x00", 0x81, True),
    "SUBSCRIBE flags 0000": (b"\x80\x07\x00\x01\x00\x00\x01a\x00", 0x81, True),
    "topic not UTF-8": (b"\x30\x05\x00\x02\xff\xfe\x00", 0x81, True),
    "remaining length > 4 bytes": (b"\x30\xff\xff\xff\xff\x01", 0x81, True),
    "second CONNECT": (connect("x2", V5), 0x82, True),
    "PUBREL flags 0000": (b"\x60\x02\x00\x01", 0x81, True),
    "Topic Alias 0": (publish("t", b"x", version=V5, properties=props((0x23, b"\x00\x00"))), 0x82,
                      True),
    "empty topic, no alias": (publish("", b"x", version=V5), 0x82, True),
    "unknown Topic Alias": (publish("", b"x", version=V5, properties=props((0x23, b"\x00\x05"))),
                            0x82, True),
    "AUTH without method": (b"\xf0\x00", 0x82, True),
    "reserved type 0": (b"\x00\x00", 0x81, True),
    "CONNACK from client": (b"\x20\x03\x00\x00\x00", 0x82, True),
    "SUBSCRIBE without filters": (b"\x82\x03\x00\x01\x00", 0x82, True),
    "wildcard in topic": (publish("a/#", b"x", version=V5), 0x90, True),
    "invalid filter": (b"\x82\x09\x00\x01\x00\x00\x03a#b\x00", 0x8F, True),
    "Subscription Identifier in PUBLISH": (
        publish("t", b"x", version=V5, properties=props((0x0B, b"\x01"))), 0x82, False),
    "DUP on QoS 0": (b"\x38\x04\x00\x01a\x00", 0x81, False),
    "PINGREQ with a body": (b"\xc0\x01\x00", 0x81, False),
    "Session Expiry set on DISCONNECT": (b"\xe0\x07\x00\x05\x11\x00\x00\x00\x0a", 0x82, True),
    "UNSUBSCRIBE flags 0000": (b"\xa0\x05\x00\x01\x00\x01a", 0x81, True),
}


class Malformed(BrokerTest):
    def setUp(self):
        super().setUp()
        # A bystander that must keep working through all of this.
        self.watch = self.client(self.port, "bystander")
        self.watch.sub("alive/#", 1)
        self.talker = self.client(self.port, "talker")

    def assert_alive(self, tag):
        self.talker.pub(f"alive/{tag}", tag, 1)
        m = self.watch.get(5)
        self.assertIsNotNone(m, f"bystander lost after {tag}")
        self.assertEqual(m.payload, tag.encode())

    def test_v5_disconnect_reasons(self):
        mport = self.mosquitto_port()
        for i, (name, (data, reason, mosq_closes)) in enumerate(CASES.items()):
            with self.subTest(name):
                r, _ = raw_connect(self.port, f"mal{i}", V5)
                r.send(data)
                got = r.expect_closed()
                r.close()
                self.assertEqual(len(got), 1, got)
                fb, body = got[0]
                self.assertEqual(fb, 0xE0)
                self.assertEqual(body[0], reason, f"{name}: {body!r}")
                self.assertIn(b"\x1f", body[1:3])  # a Reason String property
                self.assert_alive(f"v5-{i}")
                if mosq_closes:
                    m, _ = raw_connect(mport, f"mal{i}", V5)
                    m.send(data)
                    m.expect_closed()  # the oracle also refuses it
                    m.close()

    def test_v311_is_closed_without_disconnect(self):
        v3 = dict((k, CASES[k][0]) for k in (
            "PUBLISH QoS 3", "SUBSCRIBE flags 0000", "topic not UTF-8", "remaining length > 4 bytes",
            "PUBREL flags 0000", "reserved type 0", "CONNACK from client",
            "SUBSCRIBE without filters", "invalid filter", "DUP on QoS 0", "PINGREQ with a body",
            "UNSUBSCRIBE flags 0000"))
        v3["second CONNECT"] = connect("x2", V311)
        v3["wildcard in topic"] = publish("a/#", b"x")
        v3["empty topic"] = publish("", b"x")
        v3["AUTH (reserved in 3.1.1)"] = b"\xf0\x00"
        for i, (name, data) in enumerate(v3.items()):
            with self.subTest(name):
                r, _ = raw_connect(self.port, f"mal3-{i}", V311)
                r.send(data)
                self.assertEqual(r.expect_closed(), [])
                r.close()
        self.assert_alive("v311")

    def test_packet_larger_than_maximum_before_connect(self):
        r = Raw(self.port)
        r.send(b"\x10\xff\xff\xff\x7f")  # CONNECT announcing 256 MB
        self.assertEqual(r.expect_closed(), [])
        r.close()
        self.assert_alive("big")

    def test_random_garbage_does_not_hurt(self):
        rng = random.Random(4)  # fixed seed: reproducible
        for i in range(150):
            r, _ = raw_connect(self.port, f"fz{i}", rng.choice([V311, V5]))
            n = rng.randint(1, 300)
            data = bytes(rng.getrandbits(8) for _ in range(n))
            try:
                r.send(data)
                r.sock.shutdown(1)
                r.expect_closed(5)
            except OSError:
                pass
            r.close()
        # Garbage before CONNECT as well.
        for i in range(50):
            r = Raw(self.port)
            try:
                r.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 100))))
                r.sock.shutdown(1)
                r.expect_closed(5)
            except OSError:
                pass
            r.close()
        self.assertTrue(self.ours.alive(), self.ours.output())
        self.assert_alive("fuzz")

    def test_session_churn(self):
        """16 threads x 40 connections over 6 shared client ids: takeovers, clean
        and persistent sessions, wills with delays, keep-alives, QoS 0/1/2 and
        retained publishes, abrupt closes. Seeded, so a failure reproduces."""
        port = self.port

        def worker(seed):
            r = random.Random(seed)
            for i in range(40):
                v = r.choice([V31, V311, V5])
                kw = {}
                if v == V5:
                    expiry = r.choice([0, 1, 30, 0xFFFFFFFF]).to_bytes(4, "big")
                    kw["properties"] = props((0x11, expiry), (0x21, r.randint(1, 5).to_bytes(2, "big")))
                    if r.random() < 0.5:
                        kw["will_properties"] = props((0x18, r.randint(0, 2).to_bytes(4, "big")))
                if r.random() < 0.5:
                    kw["will"] = ("churn/will", b"w", r.randint(0, 2), r.random() < 0.3)
                try:
                    c = Raw(port)
                    c.send(connect(f"churn{r.randint(0, 5)}", version=v, clean=r.random() < 0.5,
                                   keepalive=r.choice([0, 1, 60]), **kw))
                    c.send(subscribe([("churn/#", r.randint(0, 2))], version=v))
                    for j in range(r.randint(0, 20)):
                        c.send(publish(f"churn/{j % 3}", b"p" * r.randint(0, 300),
                                       qos=r.randint(0, 2), pid=j + 2, retain=r.random() < 0.1,
                                       version=v))
                    if r.random() < 0.3:
                        c.send(DISCONNECT)
                    c.close()
                except OSError:
                    pass

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads))
        self.assert_alive("churn")


if __name__ == "__main__":
    main()
