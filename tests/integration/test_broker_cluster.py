"""mqttlb-broker clustering (issue 10), with real 3-node clusters on loopback:
publications reach subscribers on every node exactly once per subscription,
with QoS = min and per-publisher order; only needed traffic crosses (routes);
nothing is forwarded twice (no loops); retained messages are replicated and a
returning node gets the current set; shared groups deliver once cluster-wide;
wills fire once; links are authenticated (wrong secret, garbage and forged
frames are refused); the CLI checks its cluster flags."""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proc, TestCase, binary, free_port, main, wait_until  # noqa: E402
from broker_helpers import V5, raw_connect  # noqa: E402
from cluster_helpers import SECRET, Cluster, FakePeer, frame, s16  # noqa: E402


class Forwarding(TestCase):
    def setUp(self):
        self.cl = Cluster(self).start_all()

    def test_every_node_gets_it_once_per_subscription_qos_min_in_order(self):
        cl = self.cl
        s2 = cl.client(1, "s2")
        s3 = cl.client(2, "s3", version=V5)
        s2.sub("t/#", 1)
        s3.sub("t/+", 2)
        s3.sub("t/#", 0, sub_id=7)  # overlapping, 5.0: still one delivery
        s3.sub("sync-more/#", 0)
        pub = cl.client(0, "p1")
        n = 200
        for i in range(n):
            pub.pub("t/x", f"{i}", qos=(i % 3), timeout=10)
        for c, qos_cap in ((s2, 1), (s3, 2)):
            got = c.take(n)
            self.assertIsNone(c.get(0.3), "a duplicate")
            # Each exactly once, at min(published, granted) QoS...
            self.assertEqual(sorted((int(m.payload), m.qos) for m in got),
                             [(i, min(i % 3, qos_cap)) for i in range(n)])
            # ...and in publishing order for each QoS [MQTT-4.6.0-6] (paho hands
            # over a QoS 2 message at PUBREL, after later QoS 0/1 ones).
            for q in range(3):
                seq = [int(m.payload) for m in got if m.qos == q]
                self.assertEqual(seq, sorted(seq), f"QoS {q} out of order")
        # n1 sent each message once to each peer; n2 and n3 forwarded none.
        outs = [cl.stop(i) for i in range(3)]
        c1, c2, c3 = (cl.counters(o, nm) for o, nm in zip(outs, cl.names))
        self.assertEqual((c1["forwarded"], c2["forwarded"], c3["forwarded"]), (2 * n, 0, 0))
        self.assertEqual((c2["received"], c3["received"]), (n, n))
        self.assertEqual(c1["dropped"], 0)

    def test_a_subscription_is_live_everywhere_when_its_suback_arrives(self):
        # SUBACK waits until every node has the new route, so a publication on
        # another node right after it is delivered (no probing, no sleeping).
        cl = self.cl
        pubs = [cl.client(0, "pa"), cl.client(2, "pc")]
        for i in range(20):
            s = cl.client(1, f"live-{i}")
            s.sub(f"live/{i}/#", 1)
            pubs[i % 2].pub(f"live/{i}/x", "first", 1)
            m = s.get(5)
            self.assertEqual((m.topic, m.payload), (f"live/{i}/x", b"first"))
            s.stop()

    def test_only_needed_traffic_crosses_and_forwarded_is_never_forwarded_again(self):
        cl = self.cl
        s2 = cl.client(1, "s2")
        s2.sub("only/n2", 1)
        pub = cl.client(0, "p1")
        for i in range(50):
            pub.pub("only/n2", f"{i}", 1)
            pub.pub("nobody/here", f"{i}", 1)
        self.assertEqual(len(s2.take(50)), 50)
        outs = {nm: cl.counters(cl.stop(i), nm) for i, nm in enumerate(cl.names)}
        # n3 has no subscriber: nothing was sent to it. n1 sent only/n2 to n2,
        # never nobody/here; n2 forwards nothing it got.
        self.assertEqual([outs[k]["received"] for k in ("n1", "n2", "n3")], [0, 50, 0])
        self.assertEqual([outs[k]["forwarded"] for k in ("n1", "n2", "n3")], [50, 0, 0])

    def test_retained_replicated_cleared_and_given_to_a_returning_node(self):
        cl = self.cl
        p1 = cl.client(0, "p1")
        p1.pub("r/a", "from n1", 1, retain=True)
        p1.pub("r/b", "to clear", 1, retain=True)
        cl.client(1, "p2").pub("r/b", "", 1, retain=True)  # cleared on another node

        def retained_at(i, want):
            c = cl.client(i, f"rs{i}-{time.monotonic_ns()}")
            c.sub("r/#", 1)
            got = sorted((m.topic, m.payload) for m in c.take(len(want) + 1, 1.0))
            c.stop()
            return got == want
        want = [("r/a", b"from n1")]
        for i in range(3):
            wait_until(lambda: retained_at(i, want), 10, what=f"retained set on n{i + 1}")
        # A node that was away gets the current set (and not what was deleted).
        cl.kill(2)
        p1.pub("r/c", "while n3 was away", 1, retain=True)
        p1.pub("r/a", "", 1, retain=True)
        cl.start(2)
        cl.wait_mesh()
        want = [("r/c", b"while n3 was away")]
        wait_until(lambda: retained_at(2, want), 10, what="the returning node's retained set")

    def test_shared_group_gets_each_message_once_across_the_cluster(self):
        cl = self.cl
        members = [cl.client(1, "g2", version=V5), cl.client(2, "g3", version=V5),
                   cl.client(2, "g3b", version=V5)]
        for c, node in zip(members, (1, 2, 2)):
            c.sub("$share/grp/jobs/#", 1)
        plain = cl.client(1, "plain")
        plain.sub("jobs/#", 1)
        pub = cl.client(0, "p1")
        n = 60
        for i in range(n):
            pub.pub("jobs/x", f"{i}", 1)
        self.assertEqual(len(plain.take(n)), n)  # non-shared: all of them
        got = []
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            for c in members:
                m = c.get(0.05)
                if m:
                    got.append((c, m.payload))
        for c in members:
            self.assertIsNone(c.get(0.3))
        self.assertEqual(sorted(int(p) for _, p in got), list(range(n)))  # each exactly once
        per = [sum(1 for c, _ in got if c is m) for m in members]
        self.assertTrue(all(k > 0 for k in per), per)  # shared out over both nodes

    def test_will_fires_once_cluster_wide(self):
        cl = self.cl
        watchers = [cl.client(i, f"w{i}") for i in range(3)]
        for i, w in enumerate(watchers):
            w.sub("will/#", 1)
        r, _ = raw_connect(cl.ports[0], "dying", will=("will/dying", b"gone", 1, False))
        r.close()  # no DISCONNECT
        for w in watchers:
            m = w.get(5)
            self.assertEqual((m.topic, m.payload), ("will/dying", b"gone"))
            self.assertIsNone(w.get(0.5), "the will came twice")


class Authentication(TestCase):
    def test_wrong_secret_cannot_join_and_is_logged(self):
        cl = Cluster(self, n=2)
        cl.start(0)
        bad = os.path.join(self.tmpdir(), "bad")
        with open(bad, "w") as f:
            f.write("a different secret, long enough\n")
        os.chmod(bad, 0o600)
        args = cl.args(1)
        args[args.index("--cluster-secret") + 1] = bad
        p = Proc(args, name="n2-bad")
        self.addCleanup(p.stop)
        cl.procs[0].wait_for_line(r"authentication failed", timeout=10)
        p.wait_for_line(r"authentication failed", timeout=10)
        self.assertNotIn("up", " ".join(l for l in cl.procs[0].lines if "link to" in l))

    def test_fake_peers_garbage_and_forged_frames_are_refused(self):
        cl = Cluster(self, n=1)
        cl.start(0)
        port = cl.cports[0]
        # Garbage, and an MQTT CONNECT, on the peer port: closed at once.
        for junk in (b"\xff" * 64, b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(junk)
            t0 = time.monotonic()
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            self.assertLess(time.monotonic() - t0, 4)
            s.close()
        # A wrong proof: refused.
        fp = FakePeer(port, "intruder", secret=b"not the secret at all, no")
        self.assertFalse(fp.handshake())
        self.assertTrue(fp.closed_within(5))
        fp.close()
        # Frames other than Hello/Auth before authentication: closed.
        fp = FakePeer(port, "eager")
        fp.send(frame(10, s16("#")))
        self.assertTrue(fp.closed_within(5))
        fp.close()
        # Authenticated, then a route with an invalid filter: closed.
        fp = FakePeer(port, "sloppy")
        self.assertTrue(fp.handshake())
        fp.send(frame(10, s16("a/#/b")))
        self.assertTrue(fp.closed_within(5))
        fp.close()
        # The node itself is fine.
        r, ack = raw_connect(cl.ports[0], "still-here")
        self.assertEqual(ack, b"\x00\x00")
        r.close()
        self.assertIn("authentication failed", cl.stop(0))


class Cli(TestCase):
    def run_broker(self, *args, secret_text=None):
        d = self.tmpdir()
        sec = os.path.join(d, "s")
        with open(sec, "w") as f:
            f.write(secret_text if secret_text is not None else SECRET.decode())
        os.chmod(sec, 0o600)
        a = [binary("mqttlb-broker"), "--port", str(free_port())] + [
            x.replace("SECRET", sec) for x in args]
        return subprocess.run(a, capture_output=True, text=True, timeout=10)

    def test_cluster_flags_are_checked(self):
        cb = f"127.0.0.1:{free_port()}"
        r = self.run_broker("--peers", "127.0.0.1:1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--cluster-bind, --peers and --cluster-secret", r.stderr)
        r = self.run_broker("--cluster-bind", cb, "--peers", "127.0.0.1:1", "--cluster-secret",
                            "SECRET", secret_text="short\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("at least 16 bytes", r.stderr)
        r = self.run_broker("--cluster-bind", "nowhere", "--peers", "127.0.0.1:1",
                            "--cluster-secret", "SECRET")
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad --cluster-bind", r.stderr)
        r = self.run_broker("--cluster-bind", cb, "--peers", "x:y", "--cluster-secret", "SECRET")
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad --peers", r.stderr)
        r = subprocess.run([binary("mqttlb-broker"), "--help"], capture_output=True, text=True,
                           timeout=10)
        for opt in ("--cluster-bind", "--peers", "--cluster-secret", "--stats", "--acl",
                    "--max-keepalive"):
            self.assertIn(opt, r.stdout)

    def test_stats_line_shows_links(self):
        cl = Cluster(self, n=2, extra=["--stats", "1"]).start_all()
        cl.procs[0].wait_for_line(r"^stats n1: .*cluster: n2 up; peers up 1/1", timeout=10)
        cl.kill(1)
        cl.procs[0].wait_for_line(r"link to n2 .* down", timeout=10)
        cl.procs[0].wait_for_line(r"^stats n1: .*cluster: n2 down \(1 downs\); peers up 0/1",
                                  timeout=10)


if __name__ == "__main__":
    main()
