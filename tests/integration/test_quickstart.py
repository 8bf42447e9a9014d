"""The README's run command (deploy/quickstart.sh) brings up a working cluster:
three reference brokers behind mqttlb, plain and TLS listeners, metrics; and
Ctrl-C stops everything it started. Runs the script on free loopback ports
with the binaries already built (MQTTLB_SKIP_BUILD=1)."""
import os
import signal
import urllib.request

import harness
from lb_helpers import paho_round_trip

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))


class Quickstart(harness.TestCase):
    def test_cluster_serves_plain_tls_and_metrics_then_stops(self):
        harness.binary("mqttlb")
        harness.binary("mqttlb-broker")
        ports = {k: harness.free_port() for k in ("lb", "tls", "metrics", "b1", "b2", "b3")}
        env = dict(os.environ,
                   MQTTLB_SKIP_BUILD="1", MQTTLB_BUILD=harness.BUILD_DIR,
                   MQTTLB_LISTEN_HOST="127.0.0.1",
                   MQTTLB_PORT=str(ports["lb"]), MQTTLB_TLS_PORT=str(ports["tls"]),
                   MQTTLB_METRICS_PORT=str(ports["metrics"]),
                   MQTTLB_BROKER_PORTS=f'{ports["b1"]} {ports["b2"]} {ports["b3"]}')
        qs = self.spawn(["bash", os.path.join(ROOT, "deploy", "quickstart.sh")],
                        name="quickstart", env=env, cwd=ROOT)
        qs.wait_for_line(r"mqttlb is running", timeout=60)
        ca = qs.wait_for_line(r"--cafile (\S+)").group(1)

        # Health checks bring the brokers up within one check round.
        metrics_url = f'http://127.0.0.1:{ports["metrics"]}/metrics'

        def backends_up():
            text = urllib.request.urlopen(metrics_url, timeout=2).read().decode()
            ups = [l for l in text.splitlines() if l.startswith("mqttlb_backend_up{")]
            return len(ups) == 3 and all(l.endswith(" 1") for l in ups)
        harness.wait_until(backends_up, 15, what="three backends up in /metrics")

        rc, got = paho_round_trip(ports["lb"], "qs-plain", "qs/plain", b"hello plain")
        self.assertEqual((rc, got[0]), (0, b"hello plain"))
        rc, got = paho_round_trip(ports["tls"], "qs-tls", "qs/tls", b"hello tls", ca=ca)
        self.assertEqual((rc, got[0]), (0, b"hello tls"))

        # Ctrl-C stops everything; an impatient second signal must not cut the
        # cleanup short and leave brokers behind.
        qs.signal(signal.SIGINT)
        qs.signal(signal.SIGTERM)
        qs.p.wait(timeout=20)
        self.assertEqual(qs.stop(), 0, qs.output())
        self.assertIn("quickstart: stopped", qs.output())
        for name in ("lb", "tls", "b1", "b2", "b3"):
            self.assertFalse(harness.port_open(ports[name]), f"{name} port still open after Ctrl-C")


if __name__ == "__main__":
    harness.main()
