"""mqttlb-broker cluster: one client id, one session, cluster-wide, and what
happens when nodes and links fail. Takeover across nodes (5.0 DISCONNECT
0x8E), persistent sessions moving with their subscriptions, queued and
unacknowledged messages, Clean Start, Will Delay; racing connects; a node
that dies and returns; a link cut and restored (no duplicates afterwards); a
peer that stops reading (bounded memory, drops counted)."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TestCase, main, rss_kib, wait_until  # noqa: E402
from broker_helpers import (V5, V311, DISCONNECT, Raw, connect, props, publish,  # noqa: E402
                            raw_connect, subscribe)
from cluster_helpers import Cluster, FakePeer, Relay, frame, s16  # noqa: E402


def u32(n):
    return struct.pack("!I", n)


def publish_body(body):
    """(topic, packet id, payload) of a 3.1.1 QoS > 0 PUBLISH body."""
    tl = struct.unpack("!H", body[:2])[0]
    return body[2:2 + tl].decode(), body[2 + tl:4 + tl], body[4 + tl:]


class Sessions(TestCase):
    def setUp(self):
        self.cl = Cluster(self).start_all()

    def test_takeover_on_another_node_closes_the_first_connection(self):
        cl = self.cl
        old5, _ = raw_connect(cl.ports[0], "dup5", V5)
        old3, _ = raw_connect(cl.ports[0], "dup3", V311)
        new5, ack5 = raw_connect(cl.ports[1], "dup5", V5)
        new3, ack3 = raw_connect(cl.ports[2], "dup3", V311)
        self.assertEqual((ack5[:2], ack3), (b"\x00\x00", b"\x00\x00"))
        self.assertEqual([(fb, b[:1]) for fb, b in old5.expect_closed()], [(0xE0, b"\x8e")])
        self.assertEqual(old3.expect_closed(), [])  # 3.x: just closed
        new5.send(b"\xc0\x00")  # the new ones are fine
        self.assertEqual(new5.recv(), (0xD0, b""))
        for r in (old5, old3, new5, new3):
            r.close()

    def test_persistent_session_moves_with_subscriptions_and_queued_messages(self):
        cl = self.cl
        cp = props((0x11, u32(300)))
        c = cl.client(0, "mover", version=V5, clean=False,
                      connect_props=self.cprops(SessionExpiryInterval=300))
        c.sub("mv/#", 1)
        c.stop()  # offline at n1
        pub = cl.client(2, "mv-pub")
        for i in range(5):
            pub.pub("mv/q", f"queued {i}", 1)
        pub.pub("mv/q", "qos0 is not kept", 0)
        # Back on n2: the session came over with its subscription and queue.
        r, ack = raw_connect(cl.ports[1], "mover", V5, clean=False, properties=cp)
        self.assertEqual(ack[:2], b"\x01\x00")  # Session Present
        got = []
        for _ in range(5):
            fb, body = r.recv()
            tl = struct.unpack("!H", body[:2])[0]
            got.append(body[2 + tl + 2 + 1:])  # after pid and an empty property block
            r.send(b"\x40\x02" + body[2 + tl:4 + tl])
        self.assertEqual(got, [f"queued {i}".encode() for i in range(5)])
        # New publications reach it on n2, once.
        pub.pub("mv/live", "live", 1)
        fb, body = r.recv()
        self.assertTrue(body.endswith(b"live"))
        r.send(b"\x40\x02" + body[2 + struct.unpack("!H", body[:2])[0]:][:2])
        with self.assertRaises(AssertionError):
            r.recv(0.5)
        r.send(DISCONNECT)
        r.close()
        # ...and it moves back to n1 the same way.
        r2, ack2 = raw_connect(cl.ports[0], "mover", V5, clean=False, properties=cp)
        self.assertEqual(ack2[:2], b"\x01\x00")
        r2.close()

    def cprops(self, **kw):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        p = Properties(PacketTypes.CONNECT)
        for k, v in kw.items():
            setattr(p, k, v)
        return p

    def test_unacknowledged_messages_are_sent_again_after_a_move(self):
        cl = self.cl
        r, _ = raw_connect(cl.ports[0], "unacked", V311, clean=False)
        r.send(subscribe([("ua/1", 1), ("ua/2", 2)]))
        self.assertEqual(r.recv()[0], 0x90)
        pub = cl.client(1, "ua-pub")
        pub.pub("ua/1", "one", 1)
        pub.pub("ua/2", "two", 2)
        first = {}
        for _ in range(2):
            fb, body = r.recv()
            topic, pid, payload = publish_body(body)
            first[topic] = (pid, payload)
        r.send(b"\x50\x02" + first["ua/2"][0])  # PUBREC for the QoS 2 one...
        self.assertEqual(r.recv()[0], 0x62)     # ...PUBREL, never completed
        r.close()  # QoS 1 unacknowledged, QoS 2 waiting for PUBCOMP
        r2, ack = raw_connect(cl.ports[2], "unacked", V311, clean=False)
        self.assertEqual(ack, b"\x01\x00")
        fb, body = r2.recv()
        topic, pid, payload = publish_body(body)
        self.assertEqual((fb, topic, pid, payload), (0x3A, "ua/1", first["ua/1"][0], b"one"))
        self.assertEqual(r2.recv(), (0x62, first["ua/2"][0]))  # PUBREL again [MQTT-4.4.0-1]
        r2.close()

    def test_clean_start_elsewhere_drops_the_session_everywhere(self):
        cl = self.cl
        r, _ = raw_connect(cl.ports[0], "cleaner", V311, clean=False)
        r.send(subscribe([("cs/#", 1)]))
        self.assertEqual(r.recv()[0], 0x90)
        r.send(DISCONNECT)
        r.close()
        r2, ack = raw_connect(cl.ports[1], "cleaner", V311, clean=True)
        self.assertEqual(ack, b"\x00\x00")  # no Session Present
        r2.send(DISCONNECT)
        r2.close()
        r3, ack = raw_connect(cl.ports[0], "cleaner", V311, clean=False)
        self.assertEqual(ack, b"\x00\x00")  # gone from n1 too
        r3.close()

    def test_wills_on_takeover_once_and_will_delay_cancelled_by_a_return(self):
        cl = self.cl
        w = cl.client(2, "will-watch")
        w.sub("wl/#", 1)
        # Takeover from another node: the old connection's will, once.
        r, _ = raw_connect(cl.ports[0], "wl-a", will=("wl/a", b"taken over", 1, False))
        r2, _ = raw_connect(cl.ports[1], "wl-a")
        m = w.get(5)
        self.assertEqual((m.topic, m.payload), ("wl/a", b"taken over"))
        # 5.0 Will Delay 2 s; the client comes back on another node in time: no will.
        cp = props((0x11, u32(60)))
        r3, _ = raw_connect(cl.ports[0], "wl-b", V5, clean=False, properties=cp,
                            will=("wl/b", b"should not", 1, False),
                            will_properties=props((0x18, u32(2))))
        r3.close()
        r4, ack = raw_connect(cl.ports[1], "wl-b", V5, clean=False, properties=cp)
        self.assertEqual(ack[:1], b"\x01")
        deadline = time.monotonic() + 3.5  # past the delay
        while time.monotonic() < deadline:
            m = w.get(0.2)
            self.assertIsNone(m, "a will fired")
        for x in (r, r2, r4):
            x.close()

    def test_racing_connects_of_one_id_leave_one_connection(self):
        cl = self.cl
        for round_ in range(5):
            cid = f"race-{round_}"
            conns = [Raw(cl.ports[k]) for k in (0, 1)]
            start = threading.Barrier(2)

            def go(r):
                start.wait(5)
                r.send(connect(cid, version=V5))

            ts = [threading.Thread(target=go, args=(r,)) for r in conns]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(self.settled_open(conns), 1, f"round {round_}")
            for r in conns:
                r.close()

    def settled_open(self, conns):
        # A connection may be answered (CONNACK, PINGRESP) and be taken over a
        # moment later, when the other node's claim arrives: ask until the
        # count holds for a while (bounded: 20 rounds).
        alive = list(conns)
        last, stable = None, 0
        for _ in range(20):
            alive = [r for r in alive if self.still_open(r)]
            stable = stable + 1 if len(alive) == last else 0
            last = len(alive)
            if stable >= 2:
                break
            time.sleep(0.1)
        return len(alive)

    @staticmethod
    def still_open(r):
        """PINGREQ answered (after a CONNACK) rather than the connection closing."""
        try:
            r.send(b"\xc0\x00")
            for _ in range(5):
                p = r.recv(5)
                if p is None:
                    return False
                if p[0] == 0xD0:
                    return True
        except OSError:
            return False
        return False


class Failures(TestCase):
    def test_a_dead_node_does_not_stop_the_others_and_comes_back(self):
        cl = Cluster(self).start_all()
        s2 = cl.client(1, "s2")
        s2.sub("d/#", 1)
        cl.kill(2)
        for i in (0, 1):
            cl.procs[i].wait_for_line(r"link to n3 .* down", timeout=10)
        pub = cl.client(0, "p1")
        pub.pub("d/x", "n3 is dead", 1)
        self.assertEqual(s2.get(5).payload, b"n3 is dead")
        cl.start(2)
        cl.wait_mesh()
        s3 = cl.client(2, "s3")
        s3.sub("d/#", 1)
        pub.pub("d/y", "n3 is back", 1)
        self.assertEqual(s3.get(5).payload, b"n3 is back")
        self.assertEqual(s2.get(5).payload, b"n3 is back")

    def test_a_cut_link_returns_without_duplicates(self):
        relays = {}

        def via(i, j):
            # n1 <-> n3 go through relays the test can cut; the rest is direct.
            if {i, j} == {0, 2}:
                return relays[(i, j)].port
            return cl.cports[j]

        cl = Cluster(self, peers_via=via)
        relays[(0, 2)] = Relay(self, cl.cports[2])
        relays[(2, 0)] = Relay(self, cl.cports[0])
        cl.start_all()
        s2 = cl.client(1, "keep2", clean=False)
        s3 = cl.client(2, "keep3", clean=False)
        s2.sub("cut/#", 1)
        s3.sub("cut/#", 1)
        pub = cl.client(0, "cut-pub")
        pub.pub("cut/x", "before", 1)
        self.assertEqual([m.payload for m in s3.take(1)], [b"before"])
        for r in relays.values():
            r.cut()
        cl.procs[0].wait_for_line(r"link to n3 .* down", timeout=10)
        cl.procs[2].wait_for_line(r"link to n1 .* down", timeout=10)
        for i in range(10):
            pub.pub("cut/x", f"during {i}", 1)  # n3 cannot get these
        for r in relays.values():
            r.restore()
        start = len(cl.procs[0].lines)
        cl.procs[0].wait_for_line(r"link to n3 .* up", timeout=15, start=start)
        cl.wait_mesh()
        # "Up" on both ends is not yet n3's subscriptions at n1: n3 sends its
        # routes over the new link after it came up, through the relay, and
        # a publication n1 takes before they arrive is not for n3 (as during
        # the cut). Probes (told apart by topic) until one reaches n3 (seen
        # once under ASan); more of them may still arrive after the first.
        got3 = []
        for i in range(50):
            pub.pub("cut/probe", f"probe {i}", 1)
            m = s3.get(0.2)
            if m:
                got3.append(m)
                break
        self.assertTrue(got3, "n1 never forwarded to n3 again")
        pub.pub("cut/x", "after", 1)
        deadline = time.monotonic() + 10
        while b"after" not in [m.payload for m in got3] and time.monotonic() < deadline:
            m = s3.get(0.2)
            if m:
                got3.append(m)
        got3 += s3.drain(0.5)  # anything twice or late
        self.assertEqual([m.payload for m in got3 if m.topic != "cut/probe"], [b"after"])
        got2 = [m.payload for m in s2.drain(0.5) if m.topic != "cut/probe"]
        self.assertEqual(got2, [b"before"] + [f"during {i}".encode() for i in range(10)] +
                         [b"after"])

    def test_a_peer_that_stops_reading_is_bounded_and_counted(self):
        cl = Cluster(self, n=1, extra=["--cluster-queue", "65536"])
        # Under ASan, freed memory sits in a quarantine (256 MB by default)
        # that would look like growth here.
        os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                      ":quarantine_size_mb=4").lstrip(":")
        cl.start(0)
        # Clients first: a CONNECT waits for every peer's answer to its claim
        # (up to 3 s), and this peer answers nothing.
        sub = cl.client(0, "local")
        sub.sub("flood/#", 1)
        r, _ = raw_connect(cl.ports[0], "flooder")
        self.addCleanup(r.close)
        slow = FakePeer(cl.cports[0], "slow")
        self.assertTrue(slow.handshake())
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.send(frame(10, s16("#")))  # needs everything... and reads nothing more
        alive = threading.Event()

        def pings():  # stays alive (Ping frames) without reading
            while not alive.wait(1.0):
                try:
                    slow.send(frame(3))
                except OSError:
                    return
        threading.Thread(target=pings, daemon=True).start()
        self.addCleanup(alive.set)
        cl.procs[0].wait_for_line(r"link to slow .* up", timeout=5)
        rss0 = rss_kib(cl.procs[0].pid)
        # 40 MB of QoS 0 publications, straight from a socket.
        pkt = publish("flood/x", b"x" * 1000)
        for _ in range(40):
            r.send(pkt * 1000)
        r.send(publish("flood/end", b"end", qos=1, pid=1))
        self.assertEqual(r.recv(30)[0], 0x40)
        # The local subscriber is still served, memory stayed bounded.
        wait_until(lambda: rss_kib(cl.procs[0].pid) > 0, 1)
        grown = rss_kib(cl.procs[0].pid) - rss0
        self.assertLess(grown, 30 * 1024, f"RSS grew by {grown} KiB")
        end = None
        deadline = time.monotonic() + 30
        while end is None and time.monotonic() < deadline:
            m = sub.get(1)
            if m is not None and m.topic == "flood/end":
                end = m
        self.assertIsNotNone(end)
        self.assertTrue(cl.procs[0].alive())
        self.assertNotIn("link to slow (127.0.0.1", "".join(
            l for l in cl.procs[0].lines if "down" in l))  # drops, not a dead link
        alive.set()
        slow.close()
        out = cl.stop(0)
        c = cl.counters(out, "n1")
        self.assertGreater(c["dropped"], 30000)  # of the 40,000: the link took ~64 KiB + buffers
        self.assertGreater(c["forwarded"], 0)



if __name__ == "__main__":
    main()
