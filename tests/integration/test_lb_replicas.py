"""Replicas that act as one (docs/scale-out.md): two mqttlb processes with
leastconn sharing one real Redis (Debian's redis-server on a loopback port).
- 100 client ids, each connected through replica A and again through replica
  B, land on the same broker every time (B's own load would choose otherwise:
  it already holds other clients and sees the ids in another order);
- a device that reconnects through B to another broker makes A close its
  half-open session, counted on both sides;
- Redis killed mid-run (SIGKILL, by PID): no client refused or delayed, the
  degradation counted and logged once; Redis back: the shared table is used
  again."""
import json
import random
import signal
import time
import unittest

import harness
from harness import wait_until
from lb_helpers import PINGREQ, Probes, grep_lines, is_closed, metric, mqtt_connect, \
    read_packet, start_backends, start_mqttlb
import scale_helpers
from scale_helpers import redis_cmd, start_redis

RECEIVED = 'mqttlb_affinity_store_messages_total{direction="received"}'
UP = "mqttlb_affinity_store_up"


@unittest.skipUnless(scale_helpers.have(scale_helpers.REDIS), "redis-server not installed")
class ReplicasTest(harness.TestCase):
    def replica(self, backends, redis_port, **kw):
        store = {"redis": f"redis://127.0.0.1:{redis_port}/0", "timeout_ms": 300,
                 "reconnect_max_ms": 400}
        p, port, mport, _ = start_mqttlb(self, backends, balance={"algorithm": "leastconn"},
                                         affinity_store=store, **kw)
        wait_until(lambda: metric(mport, UP) == 1, 10, what="store connected")
        return p, port, mport

    @staticmethod
    def settled(mport):
        """Waits until nothing more arrives from the store: the received count
        is the same on two scrapes 100 ms apart (bounded)."""
        last = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = metric(mport, RECEIVED)
            if now == last and metric(mport, "mqttlb_affinity_store_queue_length") == 0:
                return now
            last = now
            time.sleep(0.1)
        raise AssertionError("store traffic did not settle")

    def same_broker_through_both(self, a, b, probes, ids, tag):
        """Connects every id through A (held), then through B in another order
        while B holds clients of its own; returns the ids B placed elsewhere."""
        (_, aport, _), (_, bport, bmport) = a, b
        first, held = {}, []
        received0 = self.settled(bmport)
        for cid in ids:
            s, _ = mqtt_connect(aport, cid)
            first[cid] = probes.which(s, f"{tag}-a-{cid}")
            held.append(s)
        # B learns each placement from A's message (not at CONNECT time).
        wait_until(lambda: metric(bmport, RECEIVED) >= received0 + len(ids), 10,
                   what="B received A's placements")
        fillers = [mqtt_connect(bport, f"{tag}-filler-{i}")[0] for i in range(5)]
        moved = []
        order = list(ids)
        random.Random(7).shuffle(order)
        for cid in order:
            s, _ = mqtt_connect(bport, cid)
            if probes.which(s, f"{tag}-b-{cid}") != first[cid]:
                moved.append(cid)
            held.append(s)
        for s in held + fillers:
            s.close()
        return moved

    def test_a_client_lands_on_the_same_broker_through_either_replica(self):
        backends = start_backends(self, 3)
        _, rport = start_redis(self)
        a = self.replica(backends, rport)
        b = self.replica(backends, rport)
        probes = Probes(backends)
        self.addCleanup(probes.close)
        ids = [f"dev-{i:03d}" for i in range(100)]
        moved = self.same_broker_through_both(a, b, probes, ids, "same")
        self.assertEqual(moved, [], "placed on another broker through replica B")
        # Same brokers: the brokers took the sessions over themselves.
        self.assertEqual(metric(a[2], 'mqttlb_takeovers_total{cause="cross_replica"}'), 0)

    def test_reconnect_through_another_replica_closes_the_half_open_session(self):
        backends = start_backends(self, 2)
        _, rport = start_redis(self)
        (b1, p1, _), (b2, p2, _) = backends
        # A sends new clients to b1 only, B to b2 only (the other one drained),
        # so the device's second CONNACK comes from another broker.
        a = self.replica([{"name": b1, "address": f"127.0.0.1:{p1}"},
                          {"name": b2, "address": f"127.0.0.1:{p2}", "admin": "drain"}], rport)
        b = self.replica([{"name": b1, "address": f"127.0.0.1:{p1}", "admin": "drain"},
                          {"name": b2, "address": f"127.0.0.1:{p2}"}], rport)
        old, _ = mqtt_connect(a[1], "device-7")  # then silent: half-open from A's side
        new, _ = mqtt_connect(b[1], "device-7")
        self.assertTrue(is_closed(old, 5), "A kept the stale session")
        old.close()
        wait_until(lambda: metric(a[2], 'mqttlb_takeovers_total{cause="cross_replica"}') == 1, 5,
                   what="counted on A")
        wait_until(lambda: metric(b[2], "mqttlb_remote_takeovers_total") == 1, 5,
                   what="counted on B")
        new.sendall(PINGREQ)
        self.assertEqual(read_packet(new)[0], 0xD0, "the new session is untouched")
        new.close()

    def test_a_reload_applies_new_store_settings(self):
        backends = start_backends(self, 1)
        _, rport = start_redis(self)
        store = {"redis": f"redis://127.0.0.1:{rport}/0", "timeout_ms": 300}
        p, port, mport, path = start_mqttlb(self, backends, affinity_store=store)
        wait_until(lambda: metric(mport, UP) == 1, 10, what="store connected")
        with open(path) as f:
            cfg = json.load(f)
        cfg["affinity_store"]["key_prefix"] = "fleet2:"
        with open(path, "w") as f:
            json.dump(cfg, f)
        start = len(p.lines)
        p.signal(signal.SIGHUP)
        p.wait_for_line(r"affinity store: restarted with the new settings", timeout=10, start=start)
        wait_until(lambda: metric(mport, UP) == 1, 10, what="store reconnected")
        s, _ = mqtt_connect(port, "reloaded-1")
        s.close()
        wait_until(lambda: b"fleet2:a:" in redis_cmd(rport, "KEYS", "*"), 5,
                   what="written under the new prefix")
        self.assertNotIn(b"mqttlb:a:", redis_cmd(rport, "KEYS", "*"))

    def test_a_password_protected_redis(self):
        backends = start_backends(self, 1)
        _, rport = start_redis(self, extra=["--requirepass", "s3cret"])
        p, port, mport, _ = start_mqttlb(
            self, backends, affinity_store={"redis": f"redis://:s3cret@127.0.0.1:{rport}/2"})
        wait_until(lambda: metric(mport, UP) == 1, 10, what="authenticated")
        s, _ = mqtt_connect(port, "authed-1")
        s.close()
        wait_until(lambda: redis_cmd(rport, "DBSIZE", password="s3cret").strip() == b":0", 1)
        wait_until(lambda: b"mqttlb:a:" in redis_cmd(rport, "EVAL",
                                                    "redis.call('SELECT', 2) "
                                                    "return redis.call('KEYS', '*')", 0,
                                                    password="s3cret"), 5,
                   what="written in database 2")
        # A wrong password: counted, never a refused client.
        q, qport, qmport, _ = start_mqttlb(
            self, backends, affinity_store={"redis": f"redis://:wrong@127.0.0.1:{rport}/0"})
        wait_until(lambda: metric(qmport, 'mqttlb_affinity_store_errors_total{kind="error_reply"}')
                   >= 1, 10, what="AUTH refusal counted")
        self.assertEqual(metric(qmport, UP), 0)
        wait_until(lambda: metric(qmport, 'mqttlb_affinity_store_errors_total{kind="error_reply"}')
                   >= 3, 10, what="retried")
        self.assertEqual(len(grep_lines(q, r"affinity store: .* unavailable .*WRONGPASS")), 1)
        s, _ = mqtt_connect(qport, "authed-2")
        s.close()

    def test_a_frozen_redis_is_detected_by_its_silence(self):
        backends = start_backends(self, 1)
        rproc, rport = start_redis(self)
        a = self.replica(backends, rport)
        # SIGSTOP: Redis still accepts TCP, but answers nothing.
        rproc.signal(signal.SIGSTOP)
        self.addCleanup(lambda: rproc.signal(signal.SIGCONT))
        for i in range(10):
            t0 = time.monotonic()
            s, _ = mqtt_connect(a[1], f"frozen-{i}")
            self.assertLess(time.monotonic() - t0, 1.0, "a CONNECT waited on Redis")
            s.close()
        wait_until(lambda: metric(a[2], UP) == 0, 5, what="frozen Redis detected")
        self.assertGreaterEqual(
            metric(a[2], 'mqttlb_affinity_store_errors_total{kind="timeout"}'), 1)
        rproc.signal(signal.SIGCONT)
        wait_until(lambda: metric(a[2], UP) == 1, 10, what="store back")
        # The placements made meanwhile are written once it answers again.
        wait_until(lambda: redis_cmd(rport, "DBSIZE").strip() == b":10", 5,
                   what="outage placements written")

    def test_redis_killed_mid_run_refuses_no_client_and_comes_back(self):
        backends = start_backends(self, 3)
        rproc, rport = start_redis(self)
        a = self.replica(backends, rport)
        b = self.replica(backends, rport)
        probes = Probes(backends)
        self.addCleanup(probes.close)
        worst = 0.0
        for i in range(60):
            if i == 20:
                rproc.stop(signal.SIGKILL)  # by PID
            t0 = time.monotonic()
            s, code = mqtt_connect((a if i % 2 else b)[1], f"outage-{i}", expect_ok=False)
            worst = max(worst, time.monotonic() - t0)
            self.assertEqual(code, 0, f"client {i} refused")
            s.close()
        self.assertLess(worst, 1.0, "a CONNECT waited on Redis")
        for p, _, mport in (a, b):
            wait_until(lambda: metric(mport, UP) == 0, 5, what="degradation seen")
            errors = sum(metric(mport, f'mqttlb_affinity_store_errors_total{{kind="{k}"}}')
                         for k in ("connect", "connection_lost", "timeout", "error_reply"))
            self.assertGreater(errors, 0)
        # Several reconnect attempts fail meanwhile; the outage is logged once.
        wait_until(lambda: metric(a[2], 'mqttlb_affinity_store_errors_total{kind="connect"}') >= 2,
                   10, what="reconnect attempts")
        for p, _, _ in (a, b):
            self.assertEqual(len(grep_lines(p, r"affinity store: .* unavailable")), 1)
        # Redis back on the same port: both reconnect, and sharing works again.
        start_redis(self, rport)
        for p, _, mport in (a, b):
            wait_until(lambda: metric(mport, UP) == 1, 10, what="store back")
            m = p.wait_for_line(r"affinity store: back on redis", timeout=5)
            p.wait_for_line(r"affinity store: resynchronised", timeout=10,
                            start=p.lines.index(m.string))
        ids = [f"after-{i:02d}" for i in range(30)]
        self.assertEqual(self.same_broker_through_both(a, b, probes, ids, "back"), [])


if __name__ == "__main__":
    harness.main()
