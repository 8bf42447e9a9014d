"""The files in deploy/ stay true: the example config validates with the
binary under test, and the shell scripts parse."""
import os
import subprocess

import harness

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))


class DeployFiles(harness.TestCase):
    def test_example_config_is_valid(self):
        path = os.path.join(ROOT, "deploy", "mqttlb.example.json")
        r = subprocess.run([harness.binary("mqttlb"), "--check", "-c", path],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_systemd_unit_uses_documented_cli(self):
        with open(os.path.join(ROOT, "deploy", "mqttlb.service")) as f:
            unit = f.read()
        self.assertIn("mqttlb --check -c /etc/mqttlb/mqttlb.json", unit)
        self.assertIn("kill -HUP $MAINPID", unit)

    def test_scripts_parse(self):
        for script in ("deploy/quickstart.sh", "tests/run.sh", ".ci/run"):
            r = subprocess.run(["bash", "-n", os.path.join(ROOT, script)],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, f"{script}: {r.stderr}")


if __name__ == "__main__":
    harness.main()
