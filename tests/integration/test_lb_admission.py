"""Storm admission before the expensive part: connect-rate token buckets at
accept (global, per source prefix), the flapping-client penalty box, TLS
handshake pacing. Refused clients get the right CONNACK where the CONNECT is
cheap to read (plain listeners: 3.x 0x03, 5.0 0x9F), are closed before any
handshake on TLS listeners, and every refusal is counted once."""
import json
import socket
import ssl
import subprocess
import threading
import time

import harness
from harness import binary, free_port, port_open, wait_until
from lb_helpers import metric, mqtt_connect, start_mqttlb
from tls_certs import make_certs


def bench(*args, timeout=120):
    return subprocess.Popen([binary("mqttlb-bench"), *map(str, args), "--json", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def result(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    return json.loads(out)


def rejected(mport, reason):
    return metric(mport, f'mqttlb_connections_rejected_total{{reason="{reason}"}}')


class Admission(harness.TestCase):
    def test_storm_from_many_addresses(self):
        _, bport = self.start_mosquitto(extra_conf="max_queued_messages 100000\n")
        _, port, mport, _ = start_mqttlb(
            self, [("b1", bport)],
            limits={"connect_rate": {"global_per_s": 1000, "per_ip_per_s": 40, "burst": 300},
                    "max_connections": 100000},
            health={"interval_ms": 1000, "timeout_ms": 500})
        pubsub = ["pubsub", "-h", "127.0.0.1", "-p", port, "-c", 2, "-S", 2, "-q", 1, "-r", 100]
        before = result(bench(*pubsub, "-d", 4, "-i", "before"))
        self.assertEqual(before["messages"]["lost"], 0)
        # Established sessions for the storm's duration: connected before it.
        during_p = bench(*pubsub, "-d", 8, "-i", "during")
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 4, 10,
                   what="the established sessions")
        addrs = [",".join(f"127.0.{k}.{i}" for i in range(2, 52)) for k in (1, 2)]
        storms = [bench("conn", "-h", "127.0.0.1", "-p", port, "-c", 10000, "--max-pending", 2000,
                        "--connect-timeout", 30, "--hold", 1, "--source-addresses", a,
                        "-i", f"storm{k}") for k, a in enumerate(addrs)]
        runs = [result(s, 180) for s in storms]
        during = result(during_p)
        self.assertEqual(during["messages"]["lost"], 0, "established sessions lost messages")
        self.assertEqual(during["connections"]["lost"], 0, "an established session was dropped")
        p99_before = before["ack_latency_ms"]["p99"]
        p99_during = during["ack_latency_ms"]["p99"]
        print(f"QoS 1 ack p99: {p99_before:.2f} ms before, {p99_during:.2f} ms during the storm",
              flush=True)
        # Reported, and bounded loosely: the storm's load generators share the
        # machine's two cores, so latency figures belong to bench/compare; what
        # is asserted is that established sessions are never starved or dropped.
        self.assertLess(p99_during, 1000.0, "established sessions were starved")
        connected = sum(r["connections"]["connected"] for r in runs)
        refused = sum(r["failures"].get("CONNACK refused: code 0x03", 0) for r in runs)
        other = {k: v for r in runs for k, v in r["failures"].items()
                 if k != "CONNACK refused: code 0x03"}
        self.assertEqual(other, {}, "storm clients saw something else than a CONNACK refusal")
        self.assertEqual(connected + refused, 20000)
        self.assertGreater(refused, 0, "the storm was not over the limit")
        self.assertGreater(connected, 300, "nothing was admitted")
        counted = rejected(mport, "connect_rate_global") + rejected(mport, "connect_rate_per_ip")
        self.assertEqual(counted, refused, "every refusal counted exactly once")
        # An MQTT 5 client over the limit is told why: 0x9F connection rate exceeded.
        codes = set()
        for i in range(400):
            s, code = mqtt_connect(port, f"v5-{i}", level=5, expect_ok=False)
            codes.add(code)
            s.close()
            if 0x9F in codes:
                break
        self.assertIn(0x9F, codes)

    def test_tls_over_the_rate_is_closed_before_the_handshake(self):
        pki = make_certs(self.tmpdir())
        _, bport = self.start_mosquitto()
        tport = free_port()
        listeners = [{"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"},
                     {"name": "mqtts", "bind": f"127.0.0.1:{tport}",
                      "tls": {"cert": pki["server.crt"], "key": pki["server.key"]}}]
        _, _, mport, _ = start_mqttlb(self, [("b1", bport)], listeners=listeners,
                                      limits={"connect_rate": {"per_ip_per_s": 1, "burst": 5}})
        wait_until(lambda: port_open(tport), 10, what="TLS listener")
        base = rejected(mport, "connect_rate_per_ip")  # port_open's probe may have taken one
        ctx = ssl.create_default_context(cafile=pki["ca.crt"])
        ok = failed = 0
        for _ in range(20):
            try:
                with socket.create_connection(("127.0.0.1", tport), timeout=5) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost"):
                        ok += 1
            except (ssl.SSLError, OSError):
                failed += 1
        self.assertLessEqual(ok, 5)
        self.assertGreaterEqual(failed, 15)
        self.assertEqual(rejected(mport, "connect_rate_per_ip") - base, failed)
        full = metric(mport, 'mqttlb_tls_handshakes_total{listener="mqtts",resumed="false"}')
        self.assertEqual(full, ok, "a refused connection got a TLS handshake")

    def test_flapping_client_goes_to_the_penalty_box(self):
        _, bport = self.start_mosquitto()
        lb, port, mport, _ = start_mqttlb(
            self, [("b1", bport)],
            limits={"flap": {"max_connects": 5, "window_s": 60, "penalty_s": 30}})
        for i in range(5):
            s, code = mqtt_connect(port, "flappy")
            s.close()
        s, code = mqtt_connect(port, "flappy", expect_ok=False)
        self.assertEqual(code, 0x03)
        s.close()
        s, code = mqtt_connect(port, "flappy", level=5, expect_ok=False)
        self.assertEqual(code, 0x9F)
        s.close()
        s, code = mqtt_connect(port, "steady")  # another id is not affected
        self.assertEqual(code, 0)
        s.close()
        self.assertEqual(rejected(mport, "flapping"), 2)
        lines = [l for l in lb.lines if "reconnects too often" in l]
        self.assertEqual(len(lines), 1, "logged once, when it went to the box")
        self.assertIn('"flappy"', lines[0])

    def test_tls_handshake_rate_paces_without_refusing(self):
        pki = make_certs(self.tmpdir())
        _, bport = self.start_mosquitto()
        tport = free_port()
        listeners = [{"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"},
                     {"name": "mqtts", "bind": f"127.0.0.1:{tport}",
                      "tls": {"cert": pki["server.crt"], "key": pki["server.key"]}}]
        _, _, mport, _ = start_mqttlb(self, [("b1", bport)], listeners=listeners, workers=1,
                                      limits={"tls_handshake_rate": 20})
        wait_until(lambda: port_open(tport), 10, what="TLS listener")
        ctx = ssl.create_default_context(cafile=pki["ca.crt"])
        errors = []

        def one():
            try:
                with socket.create_connection(("127.0.0.1", tport), timeout=20) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost"):
                        pass
            except (ssl.SSLError, OSError) as e:
                errors.append(e)

        t0 = time.monotonic()
        threads = [threading.Thread(target=one) for _ in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        took = time.monotonic() - t0
        self.assertEqual(errors, [], "paced, not refused")
        self.assertGreater(took, 1.5, f"60 handshakes at 20/s took only {took:.2f} s")
        self.assertGreater(metric(mport, "mqttlb_tls_accepts_paced_total"), 0)


if __name__ == "__main__":
    harness.main()
