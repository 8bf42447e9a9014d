"""mqttlb-broker with real clients (paho-mqtt, raw sockets): QoS 1/2 flows,
persistent sessions, re-delivery with DUP, retained messages, wills, keep-alive,
takeover, wildcards and $-topics. Each scenario runs against our broker and
against Debian's mosquitto, and both must give the same observable result."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import main  # noqa: E402
from broker_helpers import (V31, V311, V5, BrokerTest, Paho, DISCONNECT, PINGREQ,  # noqa: E402
                            publish, raw_connect, subscribe)
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402


def expiry_props(seconds):
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = seconds
    return p


def msgs(client, n, timeout=5.0):
    """Exactly n messages as (topic, payload, qos, retain) in arrival order."""
    out = []
    for _ in range(n):
        m = client.get(timeout)
        if m is None:
            break
        out.append((m.topic, m.payload, m.qos, m.retain))
    return out


class Flows(BrokerTest):
    def test_qos_downgrade_and_upgrade_all_versions(self):
        """Delivered QoS is min(published, granted), for every version pair."""
        def fn(port):
            res = []
            for v in (V31, V311, V5):
                sub = self.client(port, f"q-sub-{v}", version=v)
                pub = self.client(port, f"q-pub-{v}", version=v)
                res.append(sub.sub(f"q{v}/hi", 2) + sub.sub(f"q{v}/lo", 1))
                for q in (0, 1, 2):
                    pub.pub(f"q{v}/hi", f"h{q}", q)
                    pub.pub(f"q{v}/lo", f"l{q}", q)
                got = sorted(msgs(sub, 6))
                res.append(got)
                sub.stop()
                pub.stop()
            return res
        r = self.both(fn)
        self.assertEqual(r[0], [2, 1])
        self.assertEqual(r[1], sorted([
            ("q3/hi", b"h0", 0, False), ("q3/hi", b"h1", 1, False), ("q3/hi", b"h2", 2, False),
            ("q3/lo", b"l0", 0, False), ("q3/lo", b"l1", 1, False), ("q3/lo", b"l2", 1, False)]))

    def test_qos2_exactly_once_with_resent_publish(self):
        """A QoS 2 PUBLISH sent again (DUP) before PUBREL is delivered once."""
        def fn(port):
            sub = self.client(port, "eo-sub")
            sub.sub("eo/t", 2)
            r, _ = raw_connect(port, "eo-pub")
            r.send(publish("eo/t", b"once", qos=2, pid=7))
            rec1 = r.recv()
            r.send(publish("eo/t", b"once", qos=2, pid=7, dup=True))
            rec2 = r.recv()
            r.send(bytes([0x62, 0x02, 0x00, 0x07]))  # PUBREL 7
            comp = r.recv()
            r.send(publish("eo/t", b"marker", qos=0))
            got = sorted(m[1] for m in msgs(sub, 2))  # QoS 0 and 2 may overtake each other
            r.close()
            return rec1, rec2, comp, got
        rec1, rec2, comp, got = self.both(fn)
        self.assertEqual(rec1, (0x50, b"\x00\x07"))
        self.assertEqual(rec2, (0x50, b"\x00\x07"))
        self.assertEqual(comp, (0x70, b"\x00\x07"))
        self.assertEqual(got, [b"marker", b"once"])

    def test_outgoing_qos2_flow_raw(self):
        """Server -> client QoS 2: PUBLISH, PUBREC -> PUBREL, PUBCOMP."""
        def fn(port):
            r, _ = raw_connect(port, "o2")
            r.send(subscribe([("o2/t", 2)]))
            suback = r.recv()
            p = self.client(port, "o2-pub")
            p.pub("o2/t", b"two", 2)
            fb, body = r.recv()
            pid = body[6:8]
            r.send(b"\x50\x02" + pid)
            rel = r.recv()
            r.send(b"\x70\x02" + pid)
            r.send(PINGREQ)
            return suback, fb, body[8:], rel[0], rel[1] == pid, r.recv()
        self.assertEqual(self.both(fn), ((0x90, b"\x00\x01\x02"), 0x34, b"two", 0x62, True,
                                         (0xD0, b"")))


class Sessions(BrokerTest):
    def test_persistent_session_queues_qos12_not_qos0(self):
        def fn(port):
            res = []
            for v in (V311, V5):
                cid = f"persist-{v}"
                kw = {"connect_props": expiry_props(300)} if v == V5 else {}
                s = self.client(port, cid, version=v, clean=False, **kw)
                s.sub(f"ps{v}/#", 2)
                s.stop()
                p = self.client(port, f"ps-pub-{v}", version=v)
                for q in (0, 1, 2, 1):
                    p.pub(f"ps{v}/x", f"m{q}", q)
                s2 = Paho(port, cid, version=v, clean=False, auto_connect=False, **kw)
                self._clients.append(s2)
                present, rc, _ = s2.connect()
                res.append((present, rc, sorted(msgs(s2, 3))))  # order kept per QoS only
                # Nothing else (the QoS 0 message was not kept).
                p.pub(f"ps{v}/x", "after", 0)
                res.append(msgs(s2, 1))
            return res
        r = self.both(fn)
        want = [("ps4/x", b"m1", 1, False), ("ps4/x", b"m1", 1, False), ("ps4/x", b"m2", 2, False)]
        self.assertEqual(r[0], (True, 0, want))
        self.assertEqual(r[1], [("ps4/x", b"after", 0, False)])

    def test_unacked_redelivered_with_dup(self):
        def fn(port):
            r, ack = raw_connect(port, "dup", clean=False)
            r.send(subscribe([("dup/t", 1)]))
            r.recv()
            p = self.client(port, "dup-pub")
            p.pub("dup/t", b"ack me", 1)
            first = r.recv()
            r.close()  # no PUBACK
            r2, ack2 = raw_connect(port, "dup", clean=False)
            again = r2.recv()
            r2.send(b"\x40\x02" + again[1][7:9])  # PUBACK
            r2.send(DISCONNECT)
            r3, ack3 = raw_connect(port, "dup", clean=False)
            r3.send(PINGREQ)
            after = r3.recv()  # PINGRESP, no third copy
            r3.close()
            return ack, first, ack2, again, ack3, after
        ack, first, ack2, again, ack3, after = self.both(fn)
        self.assertEqual(first[0], 0x32)
        self.assertEqual(ack2, b"\x01\x00")
        self.assertEqual(again, (0x3A, first[1]))  # DUP set, same id and payload
        self.assertEqual(after, (0xD0, b""))

    def test_clean_session_discards(self):
        def fn(port):
            s = self.client(port, "cs", clean=False)
            s.sub("cs/t", 1)
            s.stop()
            s2 = Paho(port, "cs", clean=True, auto_connect=False)
            self._clients.append(s2)
            present, _, _ = s2.connect()
            p = self.client(port, "cs-pub")
            p.pub("cs/t", "gone", 1)
            p.pub("cs/u", "x", 1)
            s2.sub("cs/u", 1)
            p.pub("cs/u", "only this", 1)
            return present, msgs(s2, 1)
        self.assertEqual(self.both(fn), (False, [("cs/u", b"only this", 1, False)]))


class Retained(BrokerTest):
    def test_retained_set_replace_delete(self):
        def fn(port):
            p = self.client(port, "rp", version=V5)
            live = self.client(port, "rl")
            live.sub("ret/#", 1)
            p.pub("ret/a", "one", 1, retain=True)
            p.pub("ret/a", "two", 1, retain=True)
            p.pub("ret/b", "bee", 0, retain=True)
            got_live = msgs(live, 3)  # forwarded with RETAIN 0
            late = self.client(port, "rlate")
            late.sub("ret/#", 1)
            got_late = sorted(msgs(late, 2))
            p.pub("ret/a", "", 1, retain=True)  # delete
            later = self.client(port, "rlater")
            later.sub("ret/#", 2)
            p.pub("ret/z", "marker", 0)
            return got_live, got_late, msgs(later, 1)
        live, late, later = self.both(fn)
        self.assertEqual([m[3] for m in live], [False, False, False])
        self.assertEqual(late, [("ret/a", b"two", 1, True), ("ret/b", b"bee", 0, True)])
        self.assertEqual(later, [("ret/b", b"bee", 0, True)])


class Wills(BrokerTest):
    def test_will_on_abnormal_close_not_on_disconnect(self):
        def fn(port):
            w = self.client(port, "will-watch")
            w.sub("will/#", 1)
            for v in (V311, V5):
                r, _ = raw_connect(port, f"dies-{v}", version=v, will=(f"will/{v}", b"gone", 1, False))
                r.close()  # no DISCONNECT
                r2, _ = raw_connect(port, f"polite-{v}", version=v,
                                    will=(f"will/p{v}", b"should not", 1, False))
                r2.send(DISCONNECT if v != V5 else b"\xe0\x01\x00")
                r2.expect_closed()
            p = self.client(port, "will-marker")
            p.pub("will/marker", "m", 1)
            return sorted(msgs(w, 3))
        self.assertEqual(self.both(fn), [("will/4", b"gone", 1, False), ("will/5", b"gone", 1, False),
                                         ("will/marker", b"m", 1, False)])

    def test_will_on_keepalive_expiry(self):
        def fn(port):
            w = self.client(port, "ka-watch")
            w.sub("ka/will", 0)
            r, _ = raw_connect(port, "ka", keepalive=1, will=("ka/will", b"timed out", 0, True))
            closed = r.expect_closed(8)  # 1.5 x 1 s of silence
            return closed, msgs(w, 1, timeout=8)
        self.assertEqual(self.both(fn), ([], [("ka/will", b"timed out", 0, False)]))

    def test_pings_keep_alive(self):
        r, _ = raw_connect(self.port, "pinger", keepalive=1)
        for _ in range(4):  # 4 x 0.5 s of pings spans well past 1.5 x keep-alive
            r.send(PINGREQ)
            self.assertEqual(r.recv(), (0xD0, b""))
            try:
                r.recv(0.5)
                self.fail("unexpected packet")
            except AssertionError as e:
                self.assertIn("no packet", str(e))
        r.close()


class Takeover(BrokerTest):
    def test_takeover(self):
        """A second connection with the same id closes the first; the session
        (subscriptions) carries over to the new connection."""
        def fn(port):
            res = []
            for v in (V311, V5):
                a, _ = raw_connect(port, f"tk-{v}", version=v, clean=False,
                                   properties=b"\x05\x11\x00\x00\x00\x3c")  # expiry 60 s
                a.send(subscribe([(f"tk{v}/t", 1)], version=v))
                a.recv()
                b, ack = raw_connect(port, f"tk-{v}", version=v, clean=False,
                                     properties=b"\x05\x11\x00\x00\x00\x3c")
                # Mosquitto may or may not get its DISCONNECT 0x8E out before
                # closing; only "closed" is compared here (see test_takeover_v5_reason).
                a.expect_closed()
                self.client(port, f"tkp-{v}", version=v).pub(f"tk{v}/t", "to b", 1)
                fb, body = b.recv()
                res.append((ack[0], fb & 0xF6, body.endswith(b"to b")))
                a.close()
                b.close()
            return res
        self.assertEqual(self.both(fn), [(1, 0x32, True), (1, 0x32, True)])

    def test_takeover_v5_reason(self):
        a = self.client(self.port, "tk5", version=V5)
        self.client(self.port, "tk5", version=V5)
        rc = a.disconnects.get(timeout=5)
        self.assertEqual(getattr(rc, "value", rc), 0x8E)  # Session taken over


class Topics(BrokerTest):
    def test_wildcards_and_dollar_topics(self):
        filters = ["#", "+/b", "a/#", "a/+", "a/b", "+/+", "$x/#", "+/y", "a/+/c/#"]
        topics = ["a", "a/b", "c/b", "a/b/c", "a/b/c/d", "a/", "$x/y", "/b"]

        def fn(port):
            subs = {}
            for i, f in enumerate(filters):
                c = self.client(port, f"wc{i}")
                c.sub(f, 0)
                subs[f] = c
            p = self.client(port, "wc-pub")
            for t in topics:
                p.pub(t, t, 1)
            p.pub("end", "end", 1)
            subs["+/b"].unsub("+/b")  # unsubscribed: gets nothing after this
            marker = self.client(port, "wc-m")
            marker.sub("a/b", 0)
            p.pub("a/b", "after unsub", 1)
            marker.get(5)
            got = {}
            for f, c in subs.items():
                got[f] = sorted(m.topic for m in c.drain(0.3) if m.topic != "end")
            return got
        got = self.both(fn)
        self.assertEqual(got["#"], sorted([t for t in topics if not t.startswith("$")] + ["a/b"]))
        self.assertEqual(got["$x/#"], ["$x/y"])
        self.assertEqual(got["+/y"], [])  # "$x/y" is not matched by a leading wildcard
        self.assertEqual(got["a/+"], ["a/", "a/b", "a/b"])
        self.assertEqual(got["a/#"], ["a", "a/", "a/b", "a/b", "a/b/c", "a/b/c/d"])
        self.assertEqual(got["+/b"], ["/b", "a/b", "c/b"])

    def test_shared_subscriptions_round_robin(self):
        """$share/GROUP/FILTER: each message goes to one member of the group, in
        turn (as mosquitto does), while ordinary subscribers get every one."""
        def fn(port):
            res = []
            for v in (V311, V5):
                a = self.client(port, f"sa{v}", version=v)
                b = self.client(port, f"sb{v}", version=v)
                n = self.client(port, f"sn{v}", version=v)
                codes = a.sub(f"$share/g/sh{v}/#", 1) + b.sub(f"$share/g/sh{v}/#", 1)
                n.sub(f"sh{v}/#", 1)
                p = self.client(port, f"sp{v}", version=v)
                for i in range(6):
                    p.pub(f"sh{v}/t", f"m{i}", 1)
                got = [[m[1] for m in msgs(c, 3)] for c in (a, b)]
                extra = len(a.drain(0.2)) + len(b.drain(0.2))
                res.append((codes, sorted(got), extra, len(msgs(n, 6))))
            return res
        want = ([1, 1], [[b"m0", b"m2", b"m4"], [b"m1", b"m3", b"m5"]], 0, 6)
        self.assertEqual(self.both(fn), [want, want])

    def test_shared_subscription_gets_no_retained(self):
        # MQTT 5 section 4.8.2 (mosquitto 2.0.11 sends them; we follow the spec).
        p = self.client(self.port, "shr-p", version=V5)
        p.pub("shr/t", "kept", 1, retain=True)
        c = self.client(self.port, "shr-c", version=V5)
        c.sub("$share/g/shr/#", 1)
        c.sub("shr/#", 1)
        self.assertEqual([m.payload for m in c.drain(0.5)], [b"kept"])  # once, not twice

    def test_invalid_filter_and_topic_close_the_connection(self):
        def fn(port):
            r, _ = raw_connect(port, "bad-filter")
            r.send(subscribe([("a/#/b", 0)]))
            closed1 = r.expect_closed()
            r, _ = raw_connect(port, "bad-topic")
            r.send(publish("a/+", b"x"))
            return closed1, r.expect_closed()
        self.assertEqual(self.both(fn), ([], []))


if __name__ == "__main__":
    main()
