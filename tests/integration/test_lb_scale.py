"""5,000 concurrent MQTT sessions through one mqttlb, from one Python process
using non-blocking sockets and a selector (bounded in count and time)."""
import resource
import selectors
import socket
import time

import harness
from harness import wait_until
from lb_helpers import connect_packet, metric, start_backends, start_mqttlb

N = 5000


class Scale(harness.TestCase):
    def test_five_thousand_concurrent_sessions(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # Children (brokers, mqttlb) inherit the raised limit. Each session costs one
        # fd here, two in mqttlb, one in a broker.
        need = N + 500
        if hard < need:
            self.skipTest(f"open-files hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        backends = start_backends(self, 3)
        _, port, mport, _ = start_mqttlb(self, backends)

        sel = selectors.DefaultSelector()
        socks = []
        connacks = 0
        pending = {}
        deadline = time.monotonic() + 120
        try:
            # Open in batches so the listen backlog is never the bottleneck.
            i = 0
            while (i < N or pending) and time.monotonic() < deadline:
                while i < N and len(pending) < 500:
                    s = socket.socket()
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", port))
                    socks.append(s)
                    pending[s.fileno()] = [s, connect_packet(f"scale-{i}", 4, 600), b""]
                    sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ)
                    i += 1
                for key, ev in sel.select(timeout=1.0):
                    st = pending.get(key.fd)
                    if st is None:
                        continue
                    s = st[0]
                    if ev & selectors.EVENT_WRITE and st[1]:
                        try:
                            n = s.send(st[1])
                            st[1] = st[1][n:]
                        except BlockingIOError:
                            pass
                        if not st[1]:
                            sel.modify(s, selectors.EVENT_READ)
                    if ev & selectors.EVENT_READ:
                        try:
                            b = s.recv(16)
                        except BlockingIOError:
                            continue
                        self.assertTrue(b, f"session {key.fd} closed before CONNACK")
                        st[2] += b
                        if len(st[2]) >= 4:
                            self.assertEqual(st[2][:4], b"\x20\x02\x00\x00")
                            connacks += 1
                            sel.unregister(s)
                            del pending[key.fd]
            self.assertEqual(connacks, N, "not every session got its CONNACK in time")
            # All 5,000 are open at once through mqttlb.
            self.assertEqual(metric(mport, "mqttlb_connections_active"), N)
            total = sum(metric(mport, f'mqttlb_backend_sessions_active{{backend="{b[0]}"}}')
                        for b in backends)
            self.assertEqual(total, N)
        finally:
            sel.close()
            for s in socks:
                s.close()
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 0, 60,
                   what="every session released")


if __name__ == "__main__":
    harness.main()
