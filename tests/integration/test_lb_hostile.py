"""Hostile clients and hostile brokers against the placement stage: a stranger
using a connected device's client id with a wrong password, a broker frozen by
SIGSTOP (the kernel still accepts its TCP connections), a broker that refuses
every client. Real Mosquitto brokers; mqttlb as a real process."""
import os
import signal
import subprocess
import time

import harness
from harness import wait_until
from lb_helpers import (PINGREQ, Closed, is_closed, metric, mqtt_connect, read_packet,
                        start_mqttlb)


def ping_ok(sock, timeout=5.0):
    """The session is alive end to end: PINGREQ through mqttlb, PINGRESP back."""
    sock.sendall(PINGREQ)
    first, _ = read_packet(sock, timeout)
    return first == 0xD0


class Hostile(harness.TestCase):
    def password_broker(self, user, password):
        d = self.tmpdir()
        os.chmod(d, 0o755)  # mosquitto reads it after dropping root for user mosquitto
        pw = os.path.join(d, "passwd")
        subprocess.run(["mosquitto_passwd", "-c", "-b", pw, user, password], check=True,
                       timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(pw, 0o644)
        return self.start_mosquitto(extra_conf=f"allow_anonymous false\npassword_file {pw}\n")

    def test_wrong_password_does_not_kick_the_device(self):
        """Round-robin, no affinity: the stranger lands on the other broker, which
        refuses it (0x05). The device must stay connected, nothing is taken over."""
        b1, p1 = self.password_broker("dev", "secret")
        b2, p2 = self.password_broker("dev", "secret")
        _, port, mport, _ = start_mqttlb(
            self, [("b1", p1), ("b2", p2)],
            balance={"algorithm": "round-robin", "affinity": "none"},
            health={"enabled": False})
        device, code = mqtt_connect(port, "device-42", username="dev", password="secret")
        self.assertEqual(code, 0)
        for attempt in range(4):  # both brokers, twice
            s, code = mqtt_connect(port, "device-42", username="dev", password="wrong",
                                   expect_ok=False)
            self.assertEqual(code, 0x05, "the broker's refusal reaches the client unchanged")
            self.assertTrue(is_closed(s, 5), "the refused stranger is closed by the broker")
            s.close()
        self.assertTrue(ping_ok(device), "the device was disconnected by a stranger")
        self.assertEqual(metric(mport, 'mqttlb_takeovers_total{cause="same_replica"}'), 0)
        refused = sum(metric(mport, f'mqttlb_backend_connacks_total{{backend="{b}",code="0x05"}}')
                      for b in ("b1", "b2"))
        self.assertEqual(refused, 4, "every broker refusal is counted by backend and code")
        device.close()

    def test_wrong_password_with_affinity_does_not_move_the_device(self):
        """With client-id affinity, a refused CONNECT must not rewrite the
        device's affinity entry: its next reconnect goes back to its broker."""
        b1, p1 = self.password_broker("dev", "secret")
        b2, p2 = self.password_broker("dev", "secret")
        _, port, mport, _ = start_mqttlb(self, [("b1", p1), ("b2", p2)],
                                         health={"enabled": False})
        device, _ = mqtt_connect(port, "device-7", username="dev", password="secret")
        on_b1 = metric(mport, 'mqttlb_backend_sessions_active{backend="b1"}') == 1
        home = "b1" if on_b1 else "b2"
        s, code = mqtt_connect(port, "device-7", username="dev", password="wrong",
                               expect_ok=False)
        self.assertEqual(code, 0x05)
        s.close()
        self.assertTrue(ping_ok(device))
        device.close()
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 0, 10,
                   what="device closed")
        again, _ = mqtt_connect(port, "device-7", username="dev", password="secret")
        self.assertEqual(metric(mport, f'mqttlb_backend_sessions_active{{backend="{home}"}}'), 1,
                         "affinity was rewritten by a refused CONNECT")
        again.close()

    def test_frozen_broker_does_not_swallow_clients(self):
        """A SIGSTOPped broker still completes TCP handshakes. Health checks are
        too slow to notice (60 s interval): every client must still get a
        CONNACK, from the other broker, within the CONNACK timeout."""
        b1, p1 = self.start_mosquitto()
        b2, p2 = self.start_mosquitto()
        _, port, mport, _ = start_mqttlb(
            self, [("b1", p1), ("b2", p2)],
            health={"interval_ms": 60000, "timeout_ms": 1000},
            limits={"backend_connack_timeout_ms": 800})
        b1.signal(signal.SIGSTOP)
        self.addCleanup(b1.signal, signal.SIGCONT)
        socks = []
        for i in range(10):
            t0 = time.monotonic()
            s, code = mqtt_connect(port, f"frozen-{i}", timeout=5.0)
            took = time.monotonic() - t0
            self.assertEqual(code, 0)
            self.assertLess(took, 0.8 + 2.0, f"client {i} waited {took:.1f}s for its CONNACK")
            socks.append(s)
        self.assertEqual(metric(mport, 'mqttlb_backend_sessions_active{backend="b2"}'), 10)
        self.assertGreaterEqual(
            metric(mport, 'mqttlb_backend_connect_failures_total{backend="b1"}'), 1)
        for s in socks:
            self.assertTrue(ping_ok(s))
            s.close()

    def test_frozen_only_broker_answers_server_unavailable(self):
        """The only broker is frozen: after the CONNACK timeout (and its retries)
        the client gets CONNACK 0x03 (5.0: 0x88), not a silent wait."""
        b1, p1 = self.start_mosquitto()
        _, port, mport, _ = start_mqttlb(
            self, [("b1", p1)], health={"interval_ms": 60000, "timeout_ms": 1000},
            balance={"retries": 1}, limits={"backend_connack_timeout_ms": 500})
        b1.signal(signal.SIGSTOP)
        self.addCleanup(b1.signal, signal.SIGCONT)
        for level, want in ((4, 0x03), (5, 0x88)):
            t0 = time.monotonic()
            s, code = mqtt_connect(port, f"alone-{level}", level=level, timeout=10.0,
                                   expect_ok=False)
            self.assertEqual(code, want)
            self.assertLess(time.monotonic() - t0, 2 * 0.5 + 3.0)
            s.close()

    def test_refusing_broker_reply_passes_through(self):
        """A broker that refuses (0x05 for everyone): the refusal is not retried
        elsewhere (the broker answered) and reaches the client unchanged."""
        b1, p1 = self.password_broker("dev", "secret")
        _, port, mport, _ = start_mqttlb(self, [("b1", p1)], health={"enabled": False})
        s, code = mqtt_connect(port, "nobody", expect_ok=False)
        self.assertEqual(code, 0x05)
        try:
            read_packet(s, 3)
            self.fail("expected the broker to close after its refusal")
        except Closed:
            pass
        self.assertEqual(metric(mport, 'mqttlb_backend_connacks_total{backend="b1",code="0x05"}'), 1)


if __name__ == "__main__":
    harness.main()
