"""The README's run command (deploy/quickstart.sh) brings up a working cluster:
three reference brokers, clustered, behind mqttlb, plain and TLS listeners,
metrics; the demo commands it prints work (the printed mosquitto_sub receives
what the printed mosquitto_pub sends, over 1883 and 8883, and keeps receiving
after the broker it was on is killed); and Ctrl-C stops everything it
started. Runs the script on free loopback ports with the binaries already
built (MQTTLB_SKIP_BUILD=1)."""
import os
import re
import shlex
import signal
import time
import urllib.request

import harness
from lb_helpers import paho_round_trip

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))


class Quickstart(harness.TestCase):
    def test_cluster_serves_plain_tls_and_metrics_then_stops(self):
        harness.binary("mqttlb")
        harness.binary("mqttlb-broker")
        ports = {k: harness.free_port()
                 for k in ("lb", "tls", "metrics", "b1", "b2", "b3", "c1", "c2", "c3")}
        env = dict(os.environ,
                   MQTTLB_SKIP_BUILD="1", MQTTLB_BUILD=harness.BUILD_DIR,
                   MQTTLB_LISTEN_HOST="127.0.0.1",
                   MQTTLB_PORT=str(ports["lb"]), MQTTLB_TLS_PORT=str(ports["tls"]),
                   MQTTLB_METRICS_PORT=str(ports["metrics"]),
                   MQTTLB_BROKER_PORTS=f'{ports["b1"]} {ports["b2"]} {ports["b3"]}',
                   MQTTLB_CLUSTER_PORTS=f'{ports["c1"]} {ports["c2"]} {ports["c3"]}')
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

        self.printed_demo_works(qs, metrics_url)

        # Ctrl-C stops everything; an impatient second signal must not cut the
        # cleanup short and leave brokers behind.
        qs.signal(signal.SIGINT)
        qs.signal(signal.SIGTERM)
        qs.p.wait(timeout=20)
        self.assertEqual(qs.stop(), 0, qs.output())
        self.assertIn("quickstart: stopped", qs.output())
        for name in ("lb", "tls", "b1", "b2", "b3"):
            self.assertFalse(harness.port_open(ports[name]), f"{name} port still open after Ctrl-C")

    def printed_demo_works(self, qs, metrics_url):
        out = qs.output()
        cmds = [shlex.split(m) for m in re.findall(r"^\s+(mosquitto_(?:sub|pub) .*)$", out, re.M)]
        subs = [c for c in cmds if c[0] == "mosquitto_sub"]
        pubs = [c for c in cmds if c[0] == "mosquitto_pub"]
        self.assertEqual((len(subs), len(pubs)), (2, 2), out)  # plain and TLS
        pids = {m.group(1): int(m.group(2)) for m in re.finditer(r"(b\d) \S+ \(pid (\d+)\)", out)}
        self.assertEqual(sorted(pids), ["b1", "b2", "b3"], out)

        def run_sub(cmd):
            return self.spawn(["/usr/bin/" + cmd[0]] + cmd[1:], name="demo-sub")

        def send_until_seen(sub, pub_cmd, message, timeout=20):
            # The subscriber prints "demo/hello MESSAGE"; publish until it did
            # (it may still be connecting or subscribing).
            cmd = list(pub_cmd)
            cmd[cmd.index("-m") + 1] = message
            start = len(sub.lines)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                subprocess_run(["/usr/bin/" + cmd[0]] + cmd[1:])
                try:
                    return sub.wait_for_line(rf"^demo/hello {re.escape(message)}$", timeout=0.5,
                                             start=start)
                except AssertionError:
                    continue
            self.fail(f"the printed mosquitto_sub never received {message!r}:\n{sub.output()}")

        # Over 1883, then over 8883 (TLS), each with its printed publisher, and
        # across the two listeners.
        plain = run_sub(subs[0])
        send_until_seen(plain, pubs[0], "hi")
        plain.stop()
        tls = run_sub(subs[1])
        send_until_seen(tls, pubs[1], "hi")
        send_until_seen(tls, pubs[0], "plain to tls")

        # Kill the broker the subscriber is on: it reconnects through mqttlb to
        # another one and keeps receiving, whatever broker the publisher lands on.
        def sessions():
            text = urllib.request.urlopen(metrics_url, timeout=2).read().decode()
            return {m.group(1): float(m.group(2)) for m in re.finditer(
                r'^mqttlb_backend_sessions_active\{[^}]*backend="(b\d)"[^}]*\} (\S+)$', text, re.M)}
        on = harness.wait_until(
            lambda: [b for b, v in sessions().items() if v == 1] if sum(sessions().values()) == 1
            else None, 15, what="one session (the subscriber's) in /metrics")[0]
        os.kill(pids[on], signal.SIGKILL)
        for i in range(3):
            send_until_seen(tls, pubs[i % 2], f"after {on} died {i}", timeout=30)
        tls.stop()


def subprocess_run(cmd):
    import subprocess
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)


if __name__ == "__main__":
    harness.main()
