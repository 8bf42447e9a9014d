"""Evacuation through the admin API (POST /api/v1/backends/{name}/evacuate),
with real brokers and 200 raw MQTT sessions: MQTT 5 clients get DISCONNECT
0x9C with the Server Reference — at a packet boundary of a busy
broker->client stream — 3.1.1 clients are closed, the pace holds the rate
(+-20 %), every client reconnects to the other backend (and its affinity
follows), nothing is left on the backend at the deadline; and a deadline
shorter than the pace closes the rest at once."""
import select
import socket
import struct
import threading
import time

import harness
from harness import wait_until
from lb_helpers import Closed, mqtt_connect, publish_packet, read_packet, subscribe_packet
from admin_helpers import client_path, parse_disconnect, start_lb_admin

REF = "other.example:1883"
TOPIC = "evac/stream"
PAYLOAD = bytes(range(256)) * 94  # 24064 bytes: MQTT packets straddle the 64 KiB reads


class Client:
    def __init__(self, cid, level, sock):
        self.cid, self.level, self.sock = cid, level, sock
        self.disconnect = None  # (reason, properties) of a DISCONNECT
        self.ended = None       # monotonic time of the DISCONNECT (5.0) or close (3.x)
        self.publishes = 0
        self.bad = []           # anything but whole PUBLISHes of TOPIC, then a DISCONNECT


def check_publish(c, first, body):
    tlen = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tlen]
    rest = body[2 + tlen:]
    if c.level == 5:
        rest = rest[1:]  # empty property block (the broker adds none here)
    if topic != TOPIC.encode() or rest != PAYLOAD:
        c.bad.append(f"publish {topic!r} of {len(rest)} bytes")
    c.publishes += 1


def pump(clients, until, stop_when):
    """Reads every client's packets until stop_when() or `until` (monotonic)."""
    by_fd = {c.sock.fileno(): c for c in clients if c.ended is None}
    while by_fd and not stop_when() and time.monotonic() < until:
        ready, _, _ = select.select(list(by_fd), [], [], 0.2)
        for fd in ready:
            c = by_fd[fd]
            try:
                while True:
                    first, body = read_packet(c.sock, 0.001)
                    if first == 0xE0 and c.disconnect is None:
                        c.disconnect = parse_disconnect(body)
                        c.ended = time.monotonic()
                    elif first >> 4 == 3 and c.disconnect is None:
                        check_publish(c, first, body)
                    else:
                        c.bad.append(f"packet {first:#x} after the DISCONNECT"
                                     if c.disconnect else f"packet {first:#x}")
            except socket.timeout:
                pass
            except Closed:
                if c.ended is None:
                    c.ended = time.monotonic()
                c.sock.close()
                del by_fd[fd]


class Evacuation(harness.TestCase):
    def setUp(self):
        _, self.b1 = self.start_our_broker(name="b1")
        _, self.b2 = self.start_mosquitto()

    def lb(self, workers):
        self.lbp, self.port, self.a, _, _ = start_lb_admin(
            self, [("b1", self.b1), ("b2", self.b2)], health={"interval_ms": 500},
            workers=workers)

    def place_on_b1(self, ids):
        """Connects (cid, level) through mqttlb, all onto b1 (b2 drained meanwhile)."""
        a = self.a
        self.assertEqual(a.post("/api/v1/backends/b2", {"state": "drain"}).status, 200)
        clients = [Client(cid, lvl, mqtt_connect(self.port, cid, level=lvl)[0]) for cid, lvl in ids]
        self.addCleanup(lambda: [c.sock.close() for c in clients])
        self.assertEqual(a.post("/api/v1/backends/b2", {"state": "ready"}).status, 200)
        wait_until(lambda: a.backend("b1")["sessions"] == len(ids), 10, what="sessions on b1")
        return clients

    def reconnect_all(self, clients):
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for c in clients:
            socks.append(mqtt_connect(self.port, c.cid, level=c.level)[0])
        return socks

    def test_200_sessions_at_50_per_second(self):
        # 8 workers: the sessions spread unevenly over them, the total rate must hold.
        self.lb(workers=8)
        a = self.a
        ids = [(f"evac-{i:03d}", 5 if i % 5 else 4) for i in range(200)]  # 160 x 5.0, 40 x 3.1.1
        clients = self.place_on_b1(ids)
        # A busy broker->client stream on 10 of the 5.0 sessions: 24 KiB PUBLISHes.
        subs = [c for c in clients if c.level == 5][:10]
        for c in subs:
            c.sock.sendall(subscribe_packet(1, TOPIC, level=5))
            first, _ = read_packet(c.sock)
            self.assertEqual(first, 0x90)
        pub, _ = mqtt_connect(self.b1, "evac-publisher")
        self.addCleanup(pub.close)
        stop = threading.Event()

        def publish():
            while not stop.is_set():
                pub.sendall(publish_packet(TOPIC, PAYLOAD))
                stop.wait(0.03)

        t = threading.Thread(target=publish, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        self.addCleanup(stop.set)
        pump(subs, time.monotonic() + 10, lambda: all(c.publishes for c in subs))
        self.assertTrue(all(c.publishes for c in subs), "the stream does not flow")

        t0 = time.monotonic()
        r = a.post("/api/v1/backends/b1/evacuate",
                   {"rate_per_s": 50, "deadline_s": 30, "server_reference": REF})
        self.assertEqual(r.status, 202, r)
        pump(clients, t0 + 10, lambda: all(c.ended for c in clients))
        stop.set()
        left = [c.cid for c in clients if c.ended is None]
        self.assertEqual(left, [], "sessions not ended by the evacuation")
        for c in clients:
            self.assertEqual(c.bad, [], c.cid)
            if c.level == 5:
                self.assertEqual(c.disconnect, (0x9C, {0x1C: REF}), c.cid)
            else:
                self.assertIsNone(c.disconnect, f"{c.cid}: a 3.1.1 client got a DISCONNECT")
        # The pace: 200 at 50/s take about 4 s; +-20 %, and no burst above it.
        ts = sorted(c.ended for c in clients)
        rate = (len(ts) - 1) / (ts[-1] - ts[0])
        self.assertTrue(40 <= rate <= 60, f"evacuated at {rate:.1f}/s, not 50/s +-20 %")
        busiest = max(sum(1 for u in ts if s <= u < s + 1.0) for s in ts)
        self.assertLessEqual(busiest, 60, f"{busiest} sessions ended within one second")
        self.assertLess(ts[0] - t0, 0.5, "the first client left late")

        # Every client comes back through mqttlb, onto the other backend.
        socks = self.reconnect_all(clients)
        for c in clients:
            wait_until(lambda: a.get(client_path(c.cid)).json.get("backend"), 5,
                       what=f"{c.cid} placed")
            self.assertEqual(a.get(client_path(c.cid)).json["backend"], "b2", c.cid)
        # Nothing left: the evacuation is done and counted once its last
        # session is off (the paced part, about 4 s, plus the finishing grace),
        # not at its 30 s deadline.
        wait_until(lambda: a.backend("b1")["evacuation"]["state"] == "done",
                   t0 + 10 - time.monotonic(), what="evacuation done once nothing is left")
        b = a.backend("b1")
        self.assertEqual((b["sessions"], b["evacuation"]["sessions"], b["evacuation"]["moved"],
                          b["evacuation"]["remaining"]), (0, 200, 200, 0))
        # The affinity followed: back in rotation and empty, b1 still does not get them.
        self.assertEqual(a.post("/api/v1/backends/b1", {"state": "ready"}).status, 200)
        for s, c in list(zip(socks, clients))[:10]:
            s.close()
            wait_until(lambda: a.get(client_path(c.cid)).status == 404, 5, what="closed")
            again = mqtt_connect(self.port, c.cid, level=c.level)[0]
            socks.append(again)
            self.assertEqual(a.get(client_path(c.cid)).json["backend"], "b2", c.cid)

    def test_a_short_deadline_closes_the_rest_at_once(self):
        self.lb(workers=2)
        a = self.a
        clients = self.place_on_b1([(f"short-{i:02d}", 5) for i in range(30)])
        t0 = time.monotonic()
        r = a.post("/api/v1/backends/b1/evacuate",
                   {"rate_per_s": 10, "deadline_s": 1, "reason": "server-shutting-down"})
        self.assertEqual(r.status, 202, r)
        pump(clients, t0 + 4, lambda: all(c.ended for c in clients))
        self.assertEqual([c.cid for c in clients if c.ended is None], [])
        self.assertTrue(all(c.disconnect == (0x8B, {}) for c in clients),
                        [c.disconnect for c in clients])
        paced = [c for c in clients if c.ended < t0 + 0.95]
        at_deadline = [c for c in clients if t0 + 0.95 <= c.ended < t0 + 1.6]
        self.assertTrue(5 <= len(paced) <= 15, f"{len(paced)} left before the deadline (10/s)")
        self.assertEqual(len(paced) + len(at_deadline), 30, "stragglers after the deadline")
        wait_until(lambda: a.backend("b1")["evacuation"]["state"] == "done", 3, what="done")
        self.assertEqual(a.backend("b1")["sessions"], 0)
        self.reconnect_all(clients)
        self.assertEqual(a.get(client_path("short-07")).json["backend"], "b2")


if __name__ == "__main__":
    harness.main()
