"""Routing rules: tenants on their own broker pools behind one mqttlb (client
id prefix, username, source address); the default pool takes the rest;
affinity works within a pool; a pool whose brokers are down refuses its
clients instead of spilling into another tenant's brokers."""
import signal

import harness
from harness import wait_until
from lb_helpers import Probes, metric, mqtt_connect, start_mqttlb


class Routes(harness.TestCase):
    def test_pools(self):
        bs = []
        for i in range(4):
            p, port = self.start_mosquitto()
            bs.append((f"b{i + 1}", port, p))
        _, port, mport, _ = start_mqttlb(
            self, [(n, port) for n, port, _ in bs],
            routes=[{"match": {"client_id_prefix": "fleetA-"}, "backends": ["b1", "b2"]},
                    {"match": {"source": "127.0.0.7/32"}, "backends": ["b3"]}],
            health={"interval_ms": 300, "timeout_ms": 200, "rise": 1, "fall": 1})
        probes = Probes(bs)
        self.addCleanup(probes.close)
        seen = {"A": set(), "rest": set()}
        for i in range(8):
            s, _ = mqtt_connect(port, f"fleetA-{i}")
            seen["A"].add(probes.which(s, f"a{i}"))
            s.close()
            s, _ = mqtt_connect(port, f"other-{i}")
            seen["rest"].add(probes.which(s, f"o{i}"))
            s.close()
        self.assertEqual(seen["A"], {"b1", "b2"}, "fleetA spreads over its own pool only")
        self.assertEqual(seen["rest"], {"b4"}, "unrouted clients go to the default pool")
        s, _ = mqtt_connect(port, "from-seven", source="127.0.0.7")
        self.assertEqual(probes.which(s, "seven"), "b3")
        s.close()
        # Affinity within the pool: fleetA-0 goes back where it was.
        s, _ = mqtt_connect(port, "fleetA-0")
        first = probes.which(s, "again-0")
        s.close()
        s, _ = mqtt_connect(port, "fleetA-0")
        self.assertEqual(probes.which(s, "again-1"), first)
        s.close()
        # The tenant's brokers down: its clients are refused, not sent to others.
        for name, _, p in bs[:2]:
            p.signal(signal.SIGSTOP)
            self.addCleanup(p.signal, signal.SIGCONT)
        wait_until(lambda: metric(mport, 'mqttlb_backend_up{backend="b1"}') == 0 and
                   metric(mport, 'mqttlb_backend_up{backend="b2"}') == 0, 10, what="pool A down")
        s, code = mqtt_connect(port, "fleetA-late", expect_ok=False, timeout=10)
        self.assertEqual(code, 0x03)
        s.close()
        s, code = mqtt_connect(port, "other-late")
        self.assertEqual(code, 0)
        s.close()


if __name__ == "__main__":
    harness.main()
