"""mqttlb in front of three real brokers: placement, affinity, protocol
versions, CONNECT segmentation and pipelining, failover, takeover."""
import signal
import socket
import time

import harness
from harness import wait_until
from lb_helpers import (DISCONNECT, PINGREQ, Probes, connect_packet, is_closed, metric,
                        mqtt_connect, publish_packet, read_packet, start_backends, start_mqttlb,
                        subscribe_packet, Sock)


class Routing(harness.TestCase):
    def setUp(self):
        self.backends = start_backends(self)
        self.probes = Probes(self.backends)
        self.addCleanup(self.probes.close)

    def lb(self, **kw):
        p, port, mport, _ = start_mqttlb(self, self.backends, **kw)
        return p, port, mport

    def test_same_client_id_same_broker_across_reconnects(self):
        _, port, mport = self.lb()
        # Other clients in between change the loads, so leastconn alone would move us.
        seen = set()
        held = []
        for i in range(10):
            s, _ = mqtt_connect(port, "sticky-device")
            seen.add(self.probes.which(s, f"sticky-{i}"))
            s.sendall(DISCONNECT)
            s.close()
            h, _ = mqtt_connect(port, f"filler-{i}")
            held.append(h)
        self.assertEqual(len(seen), 1, f"sticky-device landed on {seen}")
        for h in held:
            h.close()

    def test_sixty_held_connections_spread_evenly(self):
        _, port, mport = self.lb()
        socks = [mqtt_connect(port, f"spread-{i}")[0] for i in range(60)]
        counts = {}
        for i, s in enumerate(socks):
            b = self.probes.which(s, f"spread-{i}")
            counts[b] = counts.get(b, 0) + 1
        # leastconn over equal weights: each broker within 20 +- 2.
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)
        for b, n in counts.items():
            self.assertLessEqual(abs(n - 20), 2, counts)
        for b in ("b1", "b2", "b3"):
            self.assertEqual(metric(mport, f'mqttlb_backend_sessions_active{{backend="{b}"}}'),
                             counts[b])
        for s in socks:
            s.close()

    def test_mqtt_31_311_and_5_clients(self):
        _, port, _ = self.lb()
        for level in (3, 4, 5):
            s, code = mqtt_connect(port, f"lvl{level}", level=level)
            self.assertEqual(code, 0)
            # The session works end to end: PINGREQ answered, publish reaches a broker.
            s.sendall(PINGREQ)
            first, _ = read_packet(s)
            self.assertEqual(first, 0xD0)
            self.assertIn(self.probes.which(s, f"lvl{level}", level=level), ("b1", "b2", "b3"))
            s.close()

    def test_connect_split_byte_by_byte(self):
        _, port, _ = self.lb()
        s = Sock(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in connect_packet("bytewise", 4, 30):
            s.sendall(bytes([b]))
            time.sleep(0.005)  # let each byte travel as its own segment
        first, body = read_packet(s)
        self.assertEqual((first, body[1]), (0x20, 0))
        self.probes.which(s, "bytewise")
        s.close()

    def test_connect_pipelined_with_subscribe_and_publish(self):
        _, port, _ = self.lb()
        s = Sock(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", port))
        s.sendall(connect_packet("piped", 4) + subscribe_packet(7, "piped/echo") +
                  publish_packet("piped/echo", b"hello") + publish_packet("lbprobe/piped", b"x"))
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            got.append(read_packet(s))
        kinds = [f >> 4 for f, _ in got]
        self.assertEqual(kinds[0], 2)  # CONNACK
        self.assertIn(9, kinds)        # SUBACK for packet id 7
        pubs = [b for f, b in got if f >> 4 == 3]
        self.assertTrue(pubs and pubs[0].endswith(b"hello"), got)
        s.close()

    def test_broker_killed_mid_session_clients_reconnect_elsewhere(self):
        _, port, mport = self.lb()
        socks = {f"fo-{i}": mqtt_connect(port, f"fo-{i}")[0] for i in range(9)}
        where = {cid: self.probes.which(s, cid) for cid, s in socks.items()}
        victim = "b2"
        victims = [cid for cid, b in where.items() if b == victim]
        self.assertTrue(victims, where)
        proc = next(p for n, _, p in self.backends if n == victim)
        proc.stop(signal.SIGKILL)
        for cid in victims:
            self.assertTrue(is_closed(socks[cid], 10), f"{cid} not closed after its broker died")
        # Survivors on other brokers keep working.
        for cid, b in where.items():
            if b != victim:
                socks[cid].sendall(PINGREQ)
                self.assertEqual(read_packet(socks[cid])[0], 0xD0)
        # Reconnect with the same client ids: affinity points at the dead broker, the
        # connect fails, the next best backend is used; the client sees only a CONNACK.
        for cid in victims:
            s, code = mqtt_connect(port, cid)
            self.assertEqual(code, 0)
            self.assertNotEqual(self.probes.which(s, cid + "-again"), victim)
            s.close()
        self.assertGreaterEqual(
            metric(mport, f'mqttlb_backend_connect_failures_total{{backend="{victim}"}}'), 1)
        for s in socks.values():
            s.close()

    def test_takeover_across_brokers_closes_older_session(self):
        _, port, mport = self.lb(balance={"affinity": "none", "algorithm": "round-robin"})
        # Round-robin without affinity sends consecutive connects to different brokers.
        old, _ = mqtt_connect(port, "twin")
        b_old = self.probes.which(old, "twin-old")
        new, _ = mqtt_connect(port, "twin")
        b_new = self.probes.which(new, "twin-new")
        self.assertNotEqual(b_old, b_new)
        self.assertTrue(is_closed(old, 5), "older session not closed on takeover")
        old.close()
        new.sendall(PINGREQ)
        self.assertEqual(read_packet(new)[0], 0xD0)
        wait_until(lambda: metric(mport, 'mqttlb_takeovers_total{cause="same_replica"}') == 1, 5,
                   what="takeover counted")
        new.close()

    def test_round_robin_and_consistent_hash(self):
        _, port, _ = self.lb(balance={"algorithm": "round-robin", "affinity": "none"})
        socks = [mqtt_connect(port, f"rr-{i}")[0] for i in range(30)]
        counts = {}
        for i, s in enumerate(socks):
            b = self.probes.which(s, f"rr-{i}")
            counts[b] = counts.get(b, 0) + 1
        self.assertEqual(counts, {"b1": 10, "b2": 10, "b3": 10})
        for s in socks:
            s.close()
        # consistent-hash without affinity: the ring alone sends an id back to its broker,
        # even from a second mqttlb that never saw it (identical balancers agree).
        # (One session at a time, so the load bound never moves a key.)
        _, port1, m1 = self.lb(balance={"algorithm": "consistent-hash", "affinity": "none"})
        _, port2, m2 = self.lb(balance={"algorithm": "consistent-hash", "affinity": "none"})
        for i in range(6):
            cid = f"ring-{i}"
            places = set()
            for k, (p, m) in enumerate(((port1, m1), (port2, m2), (port1, m1))):
                s, _ = mqtt_connect(p, cid)
                places.add(self.probes.which(s, f"{cid}-{k}"))
                s.close()
                wait_until(lambda: metric(m, "mqttlb_connections_active") == 0, 5,
                           what="session released")
            self.assertEqual(len(places), 1, f"{cid} went to {places}")

    def test_idle_timeouts(self):
        _, port, mport = self.lb(limits={"idle_grace_ms": 500, "keepalive0_idle_cap_s": 1})
        # Keep-alive 0: brokers never time the session out; mqttlb's cap (1 s) does.
        s, _ = mqtt_connect(port, "idle-ka0", keepalive=0)
        t0 = time.monotonic()
        self.assertTrue(is_closed(s, 10), "keep-alive 0 session not closed at the cap")
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)
        s.close()
        wait_until(lambda: metric(mport, 'mqttlb_sessions_closed_total{reason="idle_timeout"}') == 1,
                   5, what="idle timeout counted")
        # Keep-alive 2 s (idle limit 1.5 x 2 + 0.5 = 3.5 s): a client that pings every
        # 0.5 s stays connected well past it.
        s, _ = mqtt_connect(port, "idle-busy", keepalive=2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            s.sendall(PINGREQ)
            self.assertEqual(read_packet(s)[0], 0xD0)
            time.sleep(0.5)
        s.close()

if __name__ == "__main__":
    harness.main()
