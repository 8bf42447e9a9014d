"""Signals from the first moment: a SIGHUP or SIGTERM that arrives while
mqttlb is still starting (here: its first health round waits on a broker that
accepts TCP but never answers) must not kill it by the signal's default
action. SIGHUP is applied once it runs; SIGTERM stops it cleanly, at once."""
import json
import os
import signal
import time

import harness
from harness import binary, free_port, port_open, wait_until
from stream_peers import ScriptedBroker


class StartupSignals(harness.TestCase):
    def start(self):
        hung = ScriptedBroker(self, connack=None)  # accepts, reads, never answers
        port = free_port()
        cfg = {"listeners": [{"name": "mqtt", "bind": f"127.0.0.1:{port}"}],
               "backends": [{"name": "hung", "address": f"127.0.0.1:{hung.port}"}],
               # The first round may take 2 x 3 s + 0.5 s: signals land inside it.
               "health": {"interval_ms": 5000, "timeout_ms": 3000},
               "limits": {"shutdown_grace_ms": 500}}
        path = os.path.join(self.tmpdir(), "mqttlb.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        p = self.spawn([binary("mqttlb"), "-c", path], name="mqttlb")
        p.wait_for_line(r"starting \(pid \d+\)", 10)
        return p, port

    def test_sighup_during_the_first_health_round(self):
        p, port = self.start()
        self.assertFalse(p.output().count("listening:"), "test premise: still starting")
        p.signal(signal.SIGHUP)
        p.wait_for_line(r"listening: mqtt on", 15)  # it survived, and started
        p.wait_for_line(r"reloaded", 5)             # and the SIGHUP was applied
        wait_until(lambda: port_open(port), 5, what="listener")
        self.assertEqual(p.stop(), 0)

    def test_sigterm_during_startup_exits_at_once(self):
        p, _ = self.start()
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        rc = p.wait_exit(5, "exit after SIGTERM during startup")
        self.assertLess(time.monotonic() - t0, 3.0, "waited for the health round first")
        self.assertEqual(rc, 0)
        self.assertNotIn("listening:", p.output())


if __name__ == "__main__":
    harness.main()
