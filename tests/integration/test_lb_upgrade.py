"""Binary upgrade without refusing a connection (SIGUSR2): the running mqttlb
starts the installed binary, hands over its listening sockets and affinity
table, and only once the new generation is ready stops accepting and moves
its sessions off at upgrade.evict_rate_per_s (MQTT 5: DISCONNECT 0x8B).

Under a continuous connect loop (about 200 connects/s) and 2,000 held MQTT 5
sessions: no connect fails at any moment; the held sessions are moved at the
configured rate (±20 %); devices come back to the broker they had; a second
upgrade while the old generation drains is refused; the new generation serves
metrics on the same port."""
import os
import selectors
import signal
import threading
import time

import harness
from harness import wait_until
from lb_helpers import (DISCONNECT, Probes, metric, mqtt_connect, read_packet,
                        start_mqttlb)

HELD = 2000
RATE = 500  # upgrade.evict_rate_per_s
SAMPLE = 100  # held clients whose broker is checked before and after


class ConnectLoop(threading.Thread):
    """Connects, gets CONNACK 0, disconnects, about `rate` times a second;
    counts every attempt that did not get CONNACK 0."""

    def __init__(self, port, rate=200):
        super().__init__(daemon=True)
        self.port, self.gap = port, 1.0 / rate
        self.ok = 0
        self.failures = []
        self.stop = threading.Event()

    def run(self):
        i = 0
        nxt = time.monotonic()
        while not self.stop.is_set():
            i += 1
            try:
                s, code = mqtt_connect(self.port, f"loop-{i}", timeout=5, expect_ok=False)
                if code != 0:
                    self.failures.append(f"CONNACK {code:#x}")
                else:
                    s.sendall(DISCONNECT)
                    self.ok += 1
                s.close()
            except Exception as e:  # refused, reset, timeout: all failures
                self.failures.append(repr(e))
            nxt += self.gap
            time.sleep(max(0.0, nxt - time.monotonic()))


class Upgrade(harness.TestCase):
    def test_upgrade_under_load(self):
        backends = []
        for i in range(2):
            p, bport = self.start_mosquitto()
            backends.append((f"b{i + 1}", bport, p))
        lb, port, mport, _ = start_mqttlb(
            self, backends, upgrade={"evict_rate_per_s": RATE, "deadline_s": 30},
            health={"interval_ms": 500, "timeout_ms": 400})
        new_pid = {}

        def stop_new():
            pid = new_pid.get("pid")
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    return
                wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                           open(f"/proc/{pid}/stat").read().split()[2] == "Z", 20,
                           what="new generation stopped")

        self.addCleanup(stop_new)
        probes = Probes(backends)
        self.addCleanup(probes.close)

        held = []
        for i in range(HELD):
            s, code = mqtt_connect(port, f"held-{i}", level=5, keepalive=120)
            held.append(s)
        home = {i: probes.which(held[i], f"before-{i}", level=5) for i in range(SAMPLE)}

        loop = ConnectLoop(port)
        loop.start()
        self.addCleanup(loop.stop.set)
        time.sleep(0.5)  # a baseline of connects before the upgrade starts
        lb.signal(signal.SIGUSR2)
        m = lb.wait_for_line(r"new generation pid (\d+) is ready", 60)
        new_pid["pid"] = int(m.group(1))

        # A second upgrade while the old generation drains is refused.
        os.kill(new_pid["pid"], signal.SIGUSR2)
        lb.wait_for_line(r"previous generation is still draining|upgrade.*refused", 10)

        # The held sessions get DISCONNECT 0x8B, paced; each device reconnects.
        sel = selectors.DefaultSelector()
        for i, s in enumerate(held):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        seen = {}
        again = {}
        deadline = time.monotonic() + 60
        while len(seen) < HELD and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                i = key.data
                s = held[i]
                try:
                    s.settimeout(2)
                    first, body = read_packet(s, 2)
                except Exception:
                    first, body = None, b""
                sel.unregister(s)
                s.close()
                if first == 0xE0:
                    seen[i] = (time.monotonic(), body[0] if body else 0)
                else:
                    seen[i] = (time.monotonic(), None)
                c, code = mqtt_connect(port, f"held-{i}", level=5, keepalive=120)
                self.assertEqual(code, 0, f"held-{i} could not reconnect")
                again[i] = c
        self.assertEqual(len(seen), HELD, "not every held session was moved")
        reasons = {r for _, r in seen.values()}
        self.assertEqual(reasons, {0x8B}, f"DISCONNECT reasons seen: {reasons}")
        times = sorted(t for t, _ in seen.values())
        spread = times[-1] - times[0]
        rate = (HELD - 1) / spread if spread > 0 else float("inf")
        self.assertGreater(rate, RATE * 0.8, f"moved at {rate:.0f}/s, configured {RATE}/s")
        self.assertLess(rate, RATE * 1.2, f"moved at {rate:.0f}/s, configured {RATE}/s")

        # The old generation exits once its sessions are gone.
        wait_until(lambda: not lb.alive(), 30, what="old generation exit")
        self.assertEqual(lb.p.returncode, 0)
        loop.stop.set()
        loop.join(10)
        self.assertEqual(loop.failures, [], f"{len(loop.failures)} connects failed")
        self.assertGreater(loop.ok, 200, "the connect loop did not run through the upgrade")

        # Devices are back on the broker they had (the affinity table moved).
        for i in range(SAMPLE):
            self.assertEqual(probes.which(again[i], f"after-{i}", level=5), home[i],
                             f"held-{i} moved to another broker")
        # The new generation serves metrics on the same port, and clients.
        wait_until(lambda: metric(mport, "mqttlb_connections_active") >= HELD, 15,
                   what="the new generation's metrics")
        for c in again.values():
            c.close()


if __name__ == "__main__":
    harness.main()
