"""A reconnect storm: 5,000 devices connect at the same moment through mqttlb
to one Mosquitto, whose listen backlog is 100. HAProxy serves all of them;
mqttlb must too (per-backend cap on connects in flight, a bounded wait queue,
retries on the same backend when it is the only one). Every client must get
CONNACK 0, and the counts must return to zero afterwards."""
import json
import subprocess

import harness
from harness import binary, wait_until
from lb_helpers import metric, start_mqttlb

N = 5000
# Under ThreadSanitizer mqttlb runs about ten times slower: 5,000 at once
# overflow the connect queue (balance.backend_queue 4096 + 64 in flight) and
# its retries, spaced by retry_backoff_ms, can all meet a queue still full,
# which ends in CONNACK 0x03 by design. 2,000 stay within the queue: the
# gate, the queue and the counts are still what runs there.
TSAN_N = 2000


class Storm(harness.TestCase):
    def test_storm_through_one_mosquitto(self):
        n = TSAN_N if harness.sanitizer() == "tsan" else N
        _, bport = self.start_mosquitto()
        _, port, mport, _ = start_mqttlb(self, [("b1", bport)],
                                         health={"interval_ms": 1000, "timeout_ms": 500})
        r = subprocess.run(
            [binary("mqttlb-bench"), "conn", "-h", "127.0.0.1", "-p", str(port), "-c", str(n),
             "--max-pending", str(n), "--connect-timeout", "60", "--hold", "1", "--json",
             "--quiet", "-i", "storm"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=240)
        rec = json.loads(r.stdout)
        conns = rec["connections"]
        self.assertEqual(conns["connected"], n,
                         f"{conns['failed']} of {n} failed: {rec.get('failures')}")
        self.assertEqual(conns["failed"], 0)
        self.assertEqual(metric(mport, 'mqttlb_backend_connacks_total{backend="b1",code="0x00"}'),
                         n)
        # Counts taken and dropped exactly once.
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 0, 30,
                   what="all sessions released")
        wait_until(lambda: metric(mport, 'mqttlb_backend_active_connections{backend="b1"}') == 0,
                   30, what="backend count released")
        self.assertEqual(metric(mport, 'mqttlb_backend_queue_length{backend="b1"}'), 0)


if __name__ == "__main__":
    harness.main()
