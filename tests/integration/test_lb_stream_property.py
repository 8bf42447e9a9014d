"""Property: whatever the TCP segmentation and TLS record sizes, mqttlb delivers
to the broker exactly the bytes the client sent (CONNECT included, in order,
then EOF) and to the client exactly the bytes the broker sent (CONNACK
included, then EOF), through the plain and the TLS listener.

Each trial draws random packet sequences for both directions, a segmentation
for each side ('one' write, byte by byte, random pieces) and, over TLS, record
sizes from 1 byte to 16 KiB; the client's last bytes, close_notify and FIN
leave in one TCP write. Seeds are printed; MQTTLB_PROPERTY_SEED=N replays one."""
import os
import random
import threading

import harness
from harness import free_port, port_open, wait_until
from lb_helpers import connect_packet, kernel_forwarding_or_skip, metric, start_mqttlb
from stream_peers import (CONNACK_OK, ScriptedBroker, _str, packet, random_packets, run_client,
                          segments, tls_client_context)
from tls_certs import make_certs

TRIALS = int(os.environ.get("MQTTLB_PROPERTY_TRIALS", "14"))


class StreamProperty(harness.TestCase):
    FORWARDING = "userspace"

    def setUp(self):
        if self.FORWARDING != "userspace":
            kernel_forwarding_or_skip(self)
        self.pki = make_certs(self.tmpdir())
        self.broker = ScriptedBroker(self)
        self.plain, self.tls = free_port(), free_port()
        listeners = [{"name": "mqtt", "bind": f"127.0.0.1:{self.plain}"},
                     {"name": "mqtts", "bind": f"127.0.0.1:{self.tls}",
                      "tls": {"cert": self.pki["server.crt"], "key": self.pki["server.key"]}}]
        self.lb, _, self.mport, _ = start_mqttlb(
            self, [("b1", self.broker.port)], listeners=listeners, health={"enabled": False},
            forwarding=self.FORWARDING, verbose=bool(os.environ.get("MQTTLB_PROPERTY_VERBOSE")))
        wait_until(lambda: port_open(self.tls), 10, what="TLS listener")
        self.ctx = tls_client_context(self.pki["ca.crt"])
        self.sent = {"c2b": 0, "b2c": 0}  # what the peers sent, to hold the counters to
        self.joins = 0  # sessions that must have joined in the kernel

    def trial(self, seed, tls):
        try:
            self._trial(seed, tls)
        except Exception:
            if os.environ.get("MQTTLB_PROPERTY_VERBOSE"):
                print(self.lb.output()[-6000:])
            raise

    def _trial(self, seed, tls):
        rng = random.Random(seed)
        cid = f"prop-{seed}-{int(tls)}"
        small = rng.random() < 0.3  # byte-by-byte needs small streams
        n, maxp = (rng.randrange(1, 6), 200) if small else (rng.randrange(1, 40), 20000)
        c2b = b"".join(random_packets(rng, n, maxp, to_broker=True))
        if rng.random() < 0.5:
            c2b += b"\xe0\x00"  # DISCONNECT right before the end of the stream
        b2c = b"".join(random_packets(rng, rng.randrange(0, 30 if not small else 5),
                                      maxp, to_broker=False))
        b_mode = rng.choice(("one", "random", "bytes" if small else "random"))
        c_mode = rng.choice(("one", "random", "bytes" if small else "one"))
        # In-kernel forwarding joins a session once it is idle after the
        # CONNACK: both peers wait for the join, then send their streams.
        gate = threading.Event() if self.FORWARDING != "userspace" and not tls else None
        self.broker.expect(cid, segments(rng, b2c, b_mode), gate=gate)
        after_connack = None
        if gate is not None:
            self.joins += 1

            def after_connack():
                wait_until(lambda: metric(self.mport, "mqttlb_kernel_joins_total") >= self.joins,
                           10, what=f"session joined in the kernel ({desc})")
                gate.set()
        connect = connect_packet(cid)
        stream = connect + c2b
        desc = f"seed={seed} tls={tls} c2b={len(c2b)}B/{c_mode} b2c={len(b2c)}B/{b_mode}"
        if tls:
            sizes = rng.choice(([1] if small else [16384], [rng.randrange(1, 600)],
                                [rng.randrange(1, 16385) for _ in range(7)]))
            desc += f" records={sizes[:3]}"
            got = run_client(self.tls, stream, rng, c_mode, tls_ctx=self.ctx, record_sizes=sizes)
        else:
            got = run_client(self.plain, stream, rng, c_mode, after_connack=after_connack)
        print(desc, flush=True)
        received = self.broker.result(cid)
        self.assertEqual(len(received), len(stream), f"broker byte count differs: {desc}")
        self.assertEqual(received, stream, f"broker bytes differ: {desc}")
        self.assertEqual(len(got), len(CONNACK_OK) + len(b2c), f"client byte count: {desc}")
        self.assertEqual(got, CONNACK_OK + b2c, f"client bytes differ: {desc}")
        self.sent["c2b"] += len(stream)
        self.sent["b2c"] += len(CONNACK_OK) + len(b2c)

    def run_trials(self, tls):
        fixed = os.environ.get("MQTTLB_PROPERTY_SEED")
        seeds = [int(fixed)] if fixed else [1000 * int(tls) + i for i in range(TRIALS)]
        for seed in seeds:
            self.trial(seed, tls)
        # Every session ended: nothing left open or counted.
        wait_until(lambda: metric(self.mport, "mqttlb_connections_active") == 0, 10,
                   what="all sessions closed")
        # Counted exactly once: the byte counters match what crossed, each way.
        for d, name in (("c2b", "client_to_backend"), ("b2c", "backend_to_client")):
            self.assertEqual(metric(self.mport, f'mqttlb_bytes_total{{direction="{name}"}}'),
                             self.sent[d], d)
        return len(seeds)

    def test_plain(self):
        self.run_trials(False)

    def test_tls(self):
        self.run_trials(True)

    def test_tls_pipelined_after_connect(self):
        """The issue's reproduction: CONNECT and a 20 KB PUBLISH in one write, and
        CONNECT followed by 20 small PUBLISHes, one record each, in one TCP write."""
        rng = random.Random(7)
        payload = bytes(range(256)) * 80  # 20,480 bytes
        big = packet(0x30, _str("big/one") + payload)
        cid = "pipelined-big"
        self.broker.expect(cid, [])
        stream = connect_packet(cid) + big
        got = run_client(self.tls, stream, rng, "one", tls_ctx=self.ctx, record_sizes=[16384])
        self.assertEqual(got, CONNACK_OK)
        self.assertEqual(self.broker.result(cid), stream)

        cid = "pipelined-small"
        self.broker.expect(cid, [])
        smalls = [packet(0x30, _str(f"s/{i}") + b"x" * 10) for i in range(20)]
        connect = connect_packet(cid)
        stream = connect + b"".join(smalls)
        sizes = [len(connect)] + [len(p) for p in smalls]  # one record per packet
        got = run_client(self.tls, stream, rng, "one", tls_ctx=self.ctx, record_sizes=sizes)
        self.assertEqual(got, CONNACK_OK)
        self.assertEqual(self.broker.result(cid), stream, "small PUBLISHes lost")


class StreamPropertyKernel(StreamProperty):
    """The same trials with "forwarding": "kernel": the plain sessions are joined
    in the kernel once placed (docs/forwarding.md) and must deliver exactly the
    same bytes; the TLS ones stay in the userspace pump."""
    FORWARDING = "kernel"
    test_tls_pipelined_after_connect = None  # the pump's, unchanged by the path

    def test_plain(self):
        n = self.run_trials(False)
        self.assertEqual(metric(self.mport, "mqttlb_kernel_joins_total"), n)
        self.assertEqual(metric(self.mport, 'mqttlb_sessions_forwarding{path="kernel"}'), 0)
        self.assertEqual(metric(self.mport, 'mqttlb_sessions_forwarding{path="userspace"}'), 0)

    def test_tls(self):
        self.run_trials(True)
        self.assertEqual(metric(self.mport, "mqttlb_kernel_joins_total"), 0)
        self.assertGreater(metric(self.mport, 'mqttlb_kernel_fallbacks_total{reason="transport"}'), 0)


if __name__ == "__main__":
    harness.main()
