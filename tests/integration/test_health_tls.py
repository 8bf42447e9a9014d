"""Health checks over TLS (issue 6) against Debian's mosquitto with a TLS
listener: the checker verifies the broker like a device would (CA, name),
and a TLS failure is a failed check with reason "tls". Driven through
tests/health_probe (a health::Monitor on real sockets) to isolate the checker;
test_lb_tls.py covers backend TLS checks inside mqttlb."""
import os

import harness
from tls_certs import make_certs


class HealthTls(harness.TestCase):
    def test_tls_checks(self):
        pki = make_certs(self.tmpdir())
        _, tport = self.start_mosquitto(extra_conf=(
            f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"))
        addr = f"127.0.0.1:{tport}"
        probe = self.spawn([
            harness.binary(os.path.join("tests", "health_probe")),
            "--interval", "300", "--timeout", "300", "--rise", "2", "--fall", "2",
            f"ok={addr},ca={pki['ca.crt']}",
            f"byname={addr},ca={pki['ca.crt']},sni=localhost",
            f"noverify={addr},ca={pki['other-ca.crt']},noverify",
            f"wrongca={addr},ca={pki['other-ca.crt']}",
            f"wrongname={addr},ca={pki['ca.crt']},sni=not-this-broker.example",
            f"plain={addr}",
        ], name="health_probe")
        probe.wait_for_line(r"^ready$", 15)
        for name in ("ok", "byname", "noverify"):
            probe.wait_for_line(rf"health: backend {name} down -> up: first check passed", 5)
        for name in ("wrongca", "wrongname"):
            probe.wait_for_line(rf"health: backend {name} check failed \(tls\): TLS: .+", 5)
        probe.wait_for_line(r"health: backend plain check failed \((closed|protocol|"
                            r"connack_timeout)\)", 5)
        # The passing ones keep passing over their kept TLS sessions: no flapping.
        probe.wait_for_line(r"^stats ok up passes=([6-9]|\d\d+) fails=0$", 15)
        for name in ("ok", "byname", "noverify"):
            self.assertNotIn(f"backend {name} up -> down", probe.output())
        for name in ("wrongca", "wrongname", "plain"):
            self.assertNotIn(f"backend {name} down -> up", probe.output())
        self.assertEqual(probe.stop(), 0)


if __name__ == "__main__":
    harness.main()
