"""bench/compare end to end, shrunk to seconds: it measures the paths that work,
and for a balancer that is missing or does not start it prints the reason
instead of a figure; TLS scenarios, ratios to HAProxy and the failure counts of
the storm appear in the report."""
import os
import re
import subprocess
import sys

import harness
from harness import TestCase, binary

BENCH_DIR = os.path.join(harness.HERE, "..", "..", "bench")
COMPARE = os.path.join(BENCH_DIR, "compare")
sys.path.insert(0, BENCH_DIR)
from comparelib import procs, report, runs  # noqa: E402

NUM = r"-?[0-9][0-9,.]*"


def rows(md, label):
    """The cells of every table row of `label`, as lists of strings."""
    return [[c.strip() for c in m.split("|")[2:-1]]
            for m in re.findall(rf"(?m)^\| {re.escape(label)} \|.*$", md)]


def section(md, title):
    start = md.index(f"### {title}")
    end = md.find("\n### ", start + 1)
    return md[start:end if end > 0 else len(md)]


class BenchCompare(TestCase):
    def run_compare(self, build, extra):
        out = os.path.join(self.tmpdir(), "benchmarks.md")
        p = subprocess.run(["/usr/bin/python3", COMPARE, "--quick", "--runs", "1", "--duration", "0.5",
                            "--idle", "50", "--storm", "50", "--build", build, "--out", out] + extra,
                           capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(out) as f:
            return f.read().split(report.MARKER)[1], p.stdout  # the generated part

    def test_direct_and_haproxy_measured_broken_mqttlb_skipped(self):
        bench = binary("mqttlb-bench")
        build = self.tmpdir()
        os.symlink(bench, os.path.join(build, "mqttlb-bench"))
        # An "mqttlb" that exits at once: compare must skip it with a reason.
        fake = os.path.join(build, "mqttlb")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\necho 'mqttlb: broken on purpose' >&2\nexit 1\n")
        os.chmod(fake, 0o755)
        md, log = self.run_compare(build, ["--paths", "direct,mqttlb,haproxy", "--no-tls"])
        self.assertIn("**mqttlb skipped**: mqttlb did not start", md)
        self.assertIn("broken on purpose", md)
        # No mqttlb row anywhere (nor a ratio row); direct and HAProxy rows carry numbers.
        self.assertNotRegex(md, r"(?m)^\| (↳ )?mqttlb")
        found = re.findall(r"(?m)^\| (direct \(Mosquitto\)|HAProxy 2\.6) \| ([0-9,.]+) ", md)
        self.assertGreaterEqual(len(found), 6, md)  # 3 message scenarios x 2 paths
        for _, v in found:
            self.assertGreater(float(v.replace(",", "")), 0)
        # HAProxy is a balancer: its CPU per message and PSS per connection are figures.
        self.assertRegex(md, r"(?m)^\| HAProxy 2\.6 \| 50 \| -?[0-9,]+ \|$")
        self.assertIn("Reproduce: `bench/compare --quick", md)
        self.assertIn("Machine:", md)
        self.assertIn("**TLS scenarios skipped**: --no-tls", md)
        self.assertNotIn("### TLS", md)

    def test_mqttlb_rows_have_ratios_to_haproxy(self):
        md, log = self.run_compare(harness.BUILD_DIR, ["--paths", "mqttlb,mqttlb-kernel,haproxy"])
        # The kernel-forwarding row is measured when this build knows the key,
        # skipped with mqttlb's own reason when it does not; never silently absent.
        kernel = rows(md, "mqttlb (kernel forwarding)")
        if not kernel:
            self.assertRegex(md, r"\*\*mqttlb \(kernel forwarding\) skipped\*\*: .+")
        for title in ("QoS 0, 64 B, saturation", "TLS: QoS 0, 64 B, saturation", "Connection storm",
                      "TLS connection storm", "Idle connections", "Idle TLS sessions"):
            sec = section(md, title)
            mq, ratio, base = rows(sec, "mqttlb"), rows(sec, "↳ mqttlb ÷ HAProxy"), rows(sec, "HAProxy 2.6")
            self.assertEqual((len(mq), len(ratio), len(base)), (1, 1, 1), sec)
            # The first figure's ratio is mqttlb's figure over HAProxy's (one round).
            col = 1 if title.startswith("Idle") else 0
            a, b = (float(r[0][col].replace(",", "")) for r in (mq, base))
            if b > 0:
                self.assertAlmostEqual(float(ratio[0][col]), a / b, delta=0.01 + abs(a / b) * 0.01, msg=sec)
        self.assertIn("### Summary: mqttlb ÷ HAProxy 2.6, same run", md)
        self.assertRegex(md, rf"(?m)^\| balancer CPU per full TLS 1\.3 handshake \+ CONNECT \(µs\) \| {NUM} \| "
                             rf"{NUM} \| {NUM} \|")
        # Both terminate TLS 1.3: 50 full handshakes each, none resumed, none failed.
        for label in ("mqttlb", "HAProxy 2.6"):
            tls = rows(section(md, "TLS connection storm"), label)[0]
            self.assertGreater(float(tls[3].replace(",", "")), 0, tls)  # CPU µs per handshake
            self.assertEqual(tls[5:7], ["50 / 0", "0 / 0 / 0 / 0"], tls)
            self.assertRegex(md, rf"{re.escape(label)}: TLSv1\.3 ")
        self.assertEqual(rows(section(md, "Connection storm"), "HAProxy 2.6")[0][5], "0 / 0 / 0 / 0")

    def test_storm_counts_refusals_through_mqttlb(self):
        """A path that refuses: mqttlb allowing 5 connections per IP answers the
        rest of a 200-connection storm with CONNACK 0x03; the storm still yields
        figures, and every attempt is either connected or counted as refused."""
        tmp = self.tmpdir()
        mosq, mport = procs.start_mosquitto(tmp)
        self.addCleanup(mosq.stop)
        env = procs.Env(tmp, harness.BUILD_DIR, mport, 2, None)
        p, port, _, err = procs.start_mqttlb(env, "refuse", {"limits": {"max_connections_per_ip": 5}})
        self.assertIsNone(err)
        self.addCleanup(p.stop)
        r = runs.storm_run(binary("mqttlb-bench"), procs.Target("mqttlb", "mqttlb", port, p), 200)
        self.assertNotIn("error", r, r)
        self.assertGreater(r["refused"], 0, r)
        self.assertEqual(r["connected"] + r["refused"], 200, r)
        self.assertEqual((r["errors"], r["timeouts"], r["lost"]), (0, 0, 0), r)
        self.assertEqual(r["reasons"], {"CONNACK refused: code 0x03": r["refused"]}, r)
        self.assertGreater(r["cpu"], 0, r)
        p.stop()  # SIGTERM: a clean exit, no sanitizer report (the suite also runs under ASan)
        self.assertEqual(p.p.returncode, 0, p.tail(20))

    def test_storm_failures_are_counted_by_kind(self):
        failures = {"CONNACK refused: code 0x03": 4, "timeout: no CONNACK": 2, "timeout: TLS handshake": 1,
                    "connect: ECONNREFUSED (connection refused)": 3, "closed by peer": 1}
        kinds = runs.classify_failures(failures, lost=1)
        self.assertEqual(kinds, {"refused": 4, "timeouts": 3, "lost": 1, "errors": 3})
        r1 = dict(kinds, reasons=failures)
        r2 = {"error": "exit 3: could not connect", "refused": 0, "timeouts": 0, "lost": 0, "errors": 5,
              "reasons": {"connect: ECONNREFUSED (connection refused)": 5}}
        # A run that gave up still counts its failures; the commonest reason is named.
        self.assertEqual(report.failures_cell([r1, r2]), "4 / 8 / 3 / 1 (8 × connect: ECONNREFUSED (connection refused))")


if __name__ == "__main__":
    harness.main()
