"""bench/compare end to end, shrunk to seconds: it measures the paths that work,
and for a balancer that is missing or does not start it prints the reason
instead of a figure."""
import os
import re
import subprocess

import harness
from harness import TestCase, binary

COMPARE = os.path.join(harness.HERE, "..", "..", "bench", "compare")


class BenchCompare(TestCase):
    def run_compare(self, build, extra):
        out = os.path.join(self.tmpdir(), "benchmarks.md")
        p = subprocess.run(["/usr/bin/python3", COMPARE, "--quick", "--runs", "1", "--duration", "0.5",
                            "--idle", "50", "--storm", "50", "--build", build, "--out", out] + extra,
                           capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(out) as f:
            return f.read(), p.stdout

    def test_direct_and_haproxy_measured_broken_mqttlb_skipped(self):
        bench = binary("mqttlb-bench")
        build = self.tmpdir()
        os.symlink(bench, os.path.join(build, "mqttlb-bench"))
        # An "mqttlb" that exits at once: compare must skip it with a reason.
        fake = os.path.join(build, "mqttlb")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\necho 'mqttlb: broken on purpose' >&2\nexit 1\n")
        os.chmod(fake, 0o755)
        md, log = self.run_compare(build, ["--paths", "direct,mqttlb,haproxy"])
        self.assertIn("**mqttlb skipped**: mqttlb did not start", md)
        self.assertIn("broken on purpose", md)
        # No mqttlb row anywhere; direct and HAProxy rows carry numbers.
        self.assertNotRegex(md, r"(?m)^\| mqttlb \|")
        rows = re.findall(r"(?m)^\| (direct \(Mosquitto\)|HAProxy 2\.6) \| ([0-9,.]+) ", md)
        self.assertGreaterEqual(len(rows), 6, md)  # 3 message scenarios x 2 paths
        for _, v in rows:
            self.assertGreater(float(v.replace(",", "")), 0)
        # HAProxy is a balancer: its CPU per message and PSS per connection are figures.
        self.assertRegex(md, r"(?m)^\| HAProxy 2\.6 \| 50 \| -?[0-9,]+ \|$")
        self.assertIn("Reproduce: `bench/compare --quick", md)
        self.assertIn("Machine:", md)


if __name__ == "__main__":
    harness.main()
