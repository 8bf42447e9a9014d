"""A reconnect storm: 5,000 devices connect at the same moment through mqttlb
to one Mosquitto, whose listen backlog is 100. HAProxy serves all of them;
mqttlb must too (per-backend cap on connects in flight, a bounded wait queue,
retries on the same backend when it is the only one). Every client must get
CONNACK 0, and the counts must return to zero afterwards — and the memory to
its baseline: what the storm's handshakes, peeks and placements allocated goes
back to the kernel once it is over (lb/worker.cpp, the heap trim)."""
import json
import subprocess
import time

import harness
from harness import binary, pss_kib, wait_until
from lb_helpers import metric, start_mqttlb

N = 5000
# Under ThreadSanitizer mqttlb runs about ten times slower: 5,000 at once
# overflow the connect queue (balance.backend_queue 4096 + 64 in flight) and
# its retries, spaced by retry_backoff_ms, can all meet a queue still full,
# which ends in CONNACK 0x03 by design. 2,000 stay within the queue: the
# gate, the queue and the counts are still what runs there.
TSAN_N = 2000
# Allowed above the idle baseline 10 s after the storm: what stays by design
# (an affinity entry per client id, the tables' grown indexes) and heap pages
# still pinned by a few live allocations among the storm's freed ones. At the
# 5,000 of this test that measured 2.1 MB; without the trim, 12.6 MB stayed.
PSS_SLACK_KIB = 4096


class Storm(harness.TestCase):
    def test_storm_through_one_mosquitto(self):
        n = TSAN_N if harness.sanitizer() == "tsan" else N
        _, bport = self.start_mosquitto()
        p, port, mport, _ = start_mqttlb(self, [("b1", bport)],
                                         health={"interval_ms": 1000, "timeout_ms": 500})
        pss0 = pss_kib(p.pid)
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
        if harness.sanitizer():
            return  # the sanitizer's allocator keeps freed memory in quarantine by design
        # Memory back to its baseline: not only freed, given back.
        deadline = time.monotonic() + 10
        while True:
            now = pss_kib(p.pid)
            if now <= pss0 + PSS_SLACK_KIB or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertLessEqual(now, pss0 + PSS_SLACK_KIB,
                             f"{pss0} KiB idle before the storm of {n}, {now} KiB 10 s after it")

if __name__ == "__main__":
    harness.main()
