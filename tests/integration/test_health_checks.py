"""Active MQTT health checks seen from outside (issue 6): mqttlb in front of
real brokers (our mqttlb-broker and Debian's mosquitto), brokers killed,
frozen, restarted, refusing the checker, behind the PROXY protocol.
State is observed the way an operator would: /metrics and the log."""
import datetime
import json
import os
import signal
import time

import harness
from harness import wait_until
from lb_helpers import grep_lines, metric, mqtt_connect, start_backends, start_mqttlb

HC = {"interval_ms": 300, "timeout_ms": 300, "rise": 2, "fall": 2}
# The detection bound: fall x interval + timeout.
BOUND_S = (HC["fall"] * HC["interval_ms"] + HC["timeout_ms"]) / 1000.0
# Scheduling noise allowed on top of it (sanitizer builds, a busy CI machine).
SLACK_S = 1.5


def up(mport, name):
    return metric(mport, f'mqttlb_backend_up{{backend="{name}"}}')


def wait_state(mport, name, value, timeout=10.0):
    wait_until(lambda: up(mport, name) == value, timeout, interval=0.05,
               what=f"mqttlb_backend_up{{backend={name}}} == {value}")


def log_time(line):
    """Wall-clock time of an mqttlb log line ("2026-01-01T00:00:00.000Z LEVEL ...")."""
    stamp = line.split(" ", 1)[0].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def transition_line(lb, name, frm, to, timeout=10.0, start=0):
    """Waits for the log line of a state change; returns (message, whole line)."""
    m = lb.wait_for_line(rf"health: backend {name} {frm} -> {to}: .*", timeout, start=start)
    return m.group(0), m.string


class HealthChecks(harness.TestCase):
    def lb(self, backends, **health):
        hc = dict(HC)
        hc.update(health)
        p, port, mport, path = start_mqttlb(self, backends, health=hc)
        return p, port, mport

    def test_kill9_marked_down_in_bound_and_never_routed_to(self):
        backends = start_backends(self, 2)  # b1 ours, b2 mosquitto
        lb, port, mport = self.lb(backends)
        # A fresh mqttlb serves at once: the first round ran before "listening".
        self.assertEqual(up(mport, "b1"), 1)
        self.assertEqual(up(mport, "b2"), 1)
        n = len(lb.lines)
        killed_at = time.time()
        backends[1][2].signal(signal.SIGKILL)
        _, line = transition_line(lb, "b2", "up", "down", start=n)
        took = log_time(line) - killed_at
        print(f"kill -9 -> down in {took:.3f}s (bound {BOUND_S}s)")
        self.assertLessEqual(took, BOUND_S + SLACK_S, line)
        wait_state(mport, "b2", 0)
        fails_before = metric(mport, 'mqttlb_backend_connect_failures_total{backend="b2"}')
        placed_before = metric(mport, 'mqttlb_backend_sessions_total{backend="b2"}')
        socks = []
        for i in range(12):
            s, code = mqtt_connect(port, f"after-kill-{i}")
            self.assertEqual(code, 0)
            socks.append(s)
        for s in socks:
            s.close()
        # Not even tried: the balancer skips a backend marked down.
        self.assertEqual(metric(mport, 'mqttlb_backend_connect_failures_total{backend="b2"}'),
                         fails_before)
        self.assertEqual(metric(mport, 'mqttlb_backend_sessions_total{backend="b2"}'),
                         placed_before)
        self.assertEqual(metric(mport, 'mqttlb_backend_state{backend="b2",state="down"}'), 1)
        self.assertEqual(metric(mport, 'mqttlb_health_transitions_total{backend="b2",to="down"}'), 1)

    def test_sigstop_down_then_sigcont_up_after_rise(self):
        for kind in ("mosquitto", "ours"):
            with self.subTest(broker=kind):
                if kind == "ours":
                    broker, bport = self.start_our_broker(name="frozen")
                else:
                    broker, bport = self.start_mosquitto()
                self.addCleanup(broker.signal, signal.SIGCONT)  # so stop() can end it
                lb, port, mport = self.lb([("frozen", bport)])
                self.assertEqual(up(mport, "frozen"), 1)
                n = len(lb.lines)
                stopped_at = time.time()
                broker.signal(signal.SIGSTOP)  # the kernel still accepts TCP connections
                _, line = transition_line(lb, "frozen", "up", "down", start=n)
                took = log_time(line) - stopped_at
                print(f"SIGSTOP ({kind}) -> down in {took:.3f}s (bound {BOUND_S}s): {line}")
                self.assertLessEqual(took, BOUND_S + SLACK_S, line)
                self.assertRegex(line, r"timeout: no (PINGRESP|CONNACK) within 300 ms")
                self.assertGreaterEqual(
                    metric(mport, 'mqttlb_health_check_failures_total'
                                  '{backend="frozen",reason="pingresp_timeout"}') +
                    metric(mport, 'mqttlb_health_check_failures_total'
                                  '{backend="frozen",reason="connack_timeout"}'), 2)
                n = len(lb.lines)
                broker.signal(signal.SIGCONT)
                _, line = transition_line(lb, "frozen", "down", "up", start=n)
                self.assertIn("check passed 2/2 times", line)  # rise, not the first-pass grace
                wait_state(mport, "frozen", 1)
                s, code = mqtt_connect(port, f"after-cont-{kind}")
                self.assertEqual(code, 0)
                s.close()

    def test_broker_restarted_on_same_port_comes_back(self):
        broker, bport = self.start_our_broker(name="r1")
        lb, port, mport = self.lb([("r1", bport)])
        broker.stop()
        wait_state(mport, "r1", 0)
        s, code = mqtt_connect(port, "while-down", expect_ok=False)
        self.assertEqual(code, 0x03)  # no healthy backend: server unavailable
        s.close()
        self.start_our_broker(port=bport, name="r1-again")
        wait_state(mport, "r1", 1)
        s, code = mqtt_connect(port, "after-restart")
        self.assertEqual(code, 0)
        s.close()
        self.assertEqual(metric(mport, 'mqttlb_health_transitions_total{backend="r1",to="up"}'), 2)

    def test_admin_drain_and_maint_from_the_config_on_reload(self):
        backends = start_backends(self, 2)
        lb, port, mport, path = start_mqttlb(self, backends, health=HC)
        old = [mqtt_connect(port, f"before-drain-{i}")[0] for i in range(4)]
        self.assertEqual(metric(mport, 'mqttlb_backend_sessions_active{backend="b2"}'), 2)

        def reload(admin):
            with open(path) as f:
                cfg = json.load(f)
            cfg["backends"][1]["admin"] = admin
            with open(path, "w") as f:
                json.dump(cfg, f)
            lb.signal(signal.SIGHUP)

        def state_is(name, state):
            return metric(mport, f'mqttlb_backend_state{{backend="{name}",state="{state}"}}') == 1

        reload("drain")
        wait_until(lambda: state_is("b2", "drain"), 10, interval=0.05, what="b2 drain")
        placed = metric(mport, 'mqttlb_backend_sessions_total{backend="b2"}')
        new = [mqtt_connect(port, f"while-drain-{i}")[0] for i in range(4)]
        # No new clients on b2; its existing sessions stay.
        self.assertEqual(metric(mport, 'mqttlb_backend_sessions_total{backend="b2"}'), placed)
        self.assertEqual(metric(mport, 'mqttlb_backend_sessions_active{backend="b2"}'), 2)
        self.assertEqual(metric(mport, 'mqttlb_backend_sessions_active{backend="b1"}'), 6)

        reload("maint")
        wait_until(lambda: state_is("b2", "maint"), 10, interval=0.05, what="b2 maint")
        self.assertTrue(grep_lines(lb, r"health: backend b2 drain -> maint: admin maint"))
        reload("ready")
        wait_until(lambda: state_is("b2", "up"), 10, interval=0.05, what="b2 up again")
        # Leastconn now fills the emptier b2 first.
        s, _ = mqtt_connect(port, "after-ready")
        self.assertEqual(metric(mport, 'mqttlb_backend_sessions_total{backend="b2"}'), placed + 1)
        for x in old + new + [s]:
            x.close()

    def mosquitto_with_password(self):
        d = self.tmpdir()
        os.chmod(d, 0o755)  # mosquitto, started as root, drops to its own user
        pw = os.path.join(d, "passwd")
        harness.subprocess.run(["mosquitto_passwd", "-b", "-c", pw, "hc", "s3cret"], check=True,
                               stdout=harness.subprocess.DEVNULL,
                               stderr=harness.subprocess.DEVNULL, timeout=30)
        os.chmod(pw, 0o644)
        return self.start_mosquitto(extra_conf=f"allow_anonymous false\npassword_file {pw}\n")

    def test_connack_not_authorized_is_down_unless_accept_refusal(self):
        _, bport = self.mosquitto_with_password()
        for level, code in ((4, r"0x05 not authorized"), (5, r"0x8[67] ")):
            lb, port, mport = self.lb([("auth", bport)], protocol_level=level)
            m = lb.wait_for_line(r"health: backend auth check failed \(refused\): .*", 10)
            self.assertRegex(m.group(0), code)
            self.assertIn("accept_refusal", m.group(0))  # the log says how to fix it
            self.assertEqual(up(mport, "auth"), 0)
            self.assertFalse(grep_lines(lb, r"health: backend auth down -> up"))
            lb.stop()
        # The broker is alive; accept_refusal counts the refusal as a pass.
        lb, port, mport = self.lb([("auth", bport)], accept_refusal=True)
        self.assertEqual(up(mport, "auth"), 1)
        lb.stop()
        # With the right credentials the check is a plain pass.
        lb, port, mport = self.lb([("auth", bport)], username="hc", password="s3cret")
        self.assertEqual(up(mport, "auth"), 1)
        self.assertEqual(
            metric(mport, 'mqttlb_health_check_failures_total{backend="auth",reason="refused"}'), 0)

    def test_proxy_protocol_backends(self):
        _, pport = self.start_our_broker(name="pp", extra=["--proxy-protocol"])
        backends = [
            {"name": "pp-v2", "address": f"127.0.0.1:{pport}", "proxy_protocol": "v2"},
            {"name": "pp-v1", "address": f"127.0.0.1:{pport}", "proxy_protocol": "v1"},
            {"name": "pp-missing", "address": f"127.0.0.1:{pport}"},
        ]
        lb, port, mport = self.lb(backends)
        self.assertEqual(up(mport, "pp-v2"), 1)
        self.assertEqual(up(mport, "pp-v1"), 1)
        # Without the header the broker drops the check connection.
        self.assertEqual(up(mport, "pp-missing"), 0)
        lb.wait_for_line(r"health: backend pp-missing check failed \((closed|protocol)\)", 10)


if __name__ == "__main__":
    harness.main()
