"""mqttlb-bench conn against Debian's mosquitto: counts, latency, JSON, and the
two ways a target can fail a user (refuses connections; dies mid-run)."""
import json
import os
import signal
import subprocess
import time

import harness
from harness import TestCase, binary, free_port, wait_until


def run_bench(args, timeout=60):
    """Runs mqttlb-bench to completion; returns (exit code, stdout, stderr)."""
    p = subprocess.run([binary("mqttlb-bench")] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


class BenchConn(TestCase):
    def test_conn_counts_latency_and_json(self):
        _, port = self.start_mosquitto()
        rc, out, err = run_bench(["conn", "-h", "127.0.0.1", "-p", port, "-c", 200, "--hold", "0.5",
                                  "--json"])
        self.assertEqual(rc, 0, err)
        r = json.loads(out)
        c = r["connections"]
        self.assertEqual(c["planned"], 200)
        self.assertEqual(c["attempted"], 200)
        self.assertEqual(c["connected"], 200)
        self.assertEqual(c["failed"], 0)
        self.assertEqual(r["failures"], {})
        self.assertGreater(c["per_s"], 0)
        for h in ("connack_ms", "handshake_ms", "tcp_connect_ms"):
            self.assertEqual(r[h]["count"], 200, h)
            self.assertGreater(r[h]["p50"], 0, h)
            self.assertLessEqual(r[h]["p50"], r[h]["p99"], h)
            self.assertLessEqual(r[h]["p99"], r[h]["max"], h)
        # CONNECT->CONNACK is part of connect()->CONNACK.
        self.assertLessEqual(r["connack_ms"]["max"], r["handshake_ms"]["max"])

    def test_conn_holds_connections_open(self):
        mosq, port = self.start_mosquitto()
        b = self.spawn([binary("mqttlb-bench"), "conn", "-p", port, "-c", 30, "--hold", 60, "--quiet"])
        # All 30 clients become visible at the broker while the bench holds them.
        wait_until(lambda: mosq.output().count("New client connected") >= 30, 20,
                   what="30 connections at mosquitto")
        self.assertTrue(b.alive(), b.output())
        b.stop(signal.SIGINT)  # SIGINT ends the hold early and still reports
        self.assertEqual(b.p.returncode, 0, b.output())
        self.assertIn("30 connected", b.output())
        wait_until(lambda: mosq.output().count("disconnected") >= 30, 10,
                   what="30 DISCONNECTs at mosquitto")

    def test_protocol_versions(self):
        _, port = self.start_mosquitto()
        for v in ("3", "4", "5"):
            rc, out, err = run_bench(["conn", "-p", port, "-c", 5, "-V", v, "--json"])
            self.assertEqual(rc, 0, f"-V {v}: {err}")
            self.assertEqual(json.loads(out)["connections"]["connected"], 5)

    def test_refused_is_a_clear_error(self):
        port = free_port()  # nothing listens there
        t0 = time.monotonic()
        rc, out, err = run_bench(["conn", "-p", port, "-c", 20], timeout=30)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual(rc, 3)
        self.assertIn("could not connect", err)
        self.assertIn("refused", err)
        self.assertIn("20 failed", out)
        # The same for a publisher run, and the JSON record says so too.
        rc, out, err = run_bench(["pub", "-p", port, "-c", 3, "--json"], timeout=30)
        self.assertEqual(rc, 3)
        r = json.loads(out)
        self.assertIn("refused", r["error"])
        self.assertEqual(r["exit_code"], 3)

    def test_broker_killed_during_hold(self):
        mosq, port = self.start_mosquitto()
        b = self.spawn([binary("mqttlb-bench"), "conn", "-p", port, "-c", 20, "--hold", 300])
        wait_until(lambda: mosq.output().count("New client connected") >= 20, 20,
                   what="20 connections at mosquitto")
        mosq.stop(signal.SIGKILL)
        # The bench notices, says why, and exits non-zero without waiting for --hold.
        self.assertEqual(b.wait_exit(15, "bench to exit after the broker died"), 3, b.output())
        b.wait_for_line(r"error: all connections lost", 5)

    def test_failures_by_reason_and_exit_1(self):
        # Mosquitto closes connections beyond max_connections at once.
        _, port = self.start_mosquitto(extra_conf="max_connections 5")
        rc, out, err = run_bench(["conn", "-p", port, "-c", 12, "--max-pending", 1, "--hold", 0.2, "--json"])
        self.assertEqual(rc, 1, err)
        r = json.loads(out)
        c = r["connections"]
        # Mosquitto 2.0.11 lets max_connections + 1 in; what matters is that
        # every connection is accounted for, and failures are listed by reason.
        self.assertIn(c["connected"], (5, 6))
        self.assertEqual(c["connected"] + c["failed"], 12)
        self.assertEqual(sum(r["failures"].values()), c["failed"])
        self.assertTrue(any("before CONNACK" in k or "ECONNRESET" in k for k in r["failures"]), r["failures"])
        self.assertIn("failures", err + out)

    def test_connect_rate_paces_connections(self):
        _, port = self.start_mosquitto()
        t0 = time.monotonic()
        rc, out, err = run_bench(["conn", "-p", port, "-c", 20, "--connect-rate", 20, "--json"])
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["connections"]["connected"], 20)
        # 20 connections at 20/s: the last one starts about 0.95 s after the first.
        self.assertGreater(took, 0.8)
        self.assertLess(json.loads(out)["connections"]["per_s"], 40)

    def test_source_addresses(self):
        mosq, port = self.start_mosquitto()
        rc, out, err = run_bench(["conn", "-p", port, "-c", 6, "--source-addresses", "127.0.0.2,127.0.0.3",
                                  "--json"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["connections"]["connected"], 6)
        wait_until(lambda: mosq.output().count("New connection from 127.0.0.2") >= 3 and
                   mosq.output().count("New connection from 127.0.0.3") >= 3, 10,
                   what="connections from both source addresses")
        rc, _, err = run_bench(["conn", "-p", port, "--source-addresses", "not-an-ip"])
        self.assertEqual(rc, 2)
        self.assertIn("not an IP address", err)

    def test_progress_line_only_on_a_terminal(self):
        import pty
        _, port = self.start_mosquitto()
        args = [binary("mqttlb-bench"), "conn", "-p", str(port), "-c", "2", "--hold", "2.5"]
        master, slave = pty.openpty()
        p = subprocess.Popen(args, stdout=slave, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        p.wait(10)
        os.close(master)
        tty_out = b"".join(chunks).decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, tty_out)
        self.assertRegex(tty_out, r"\[\s*\d+\.\ds\] conn 2/2")
        # Through a pipe: the report only.
        rc, out, _ = run_bench(["conn", "-p", port, "-c", 2, "--hold", 1.5])
        self.assertEqual(rc, 0)
        self.assertNotRegex(out, r"\[\s*\d+\.\ds\] conn")
        self.assertIn("2 connected", out)

    def test_usage(self):
        rc, out, _ = run_bench(["--help"])
        self.assertEqual(rc, 0)
        self.assertIn("--protocol-version", out)
        rc, _, err = run_bench(["pub", "-q", "7"])
        self.assertEqual(rc, 2)
        self.assertIn("qos", err)


if __name__ == "__main__":
    harness.main()
