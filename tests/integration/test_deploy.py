"""The files in deploy/ stay true: the example config validates with the
binary under test, and the shell scripts parse."""
import glob
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

    def test_every_example_config_is_valid_and_documented(self):
        """deploy/examples/*.json validate (their TLS paths pointed at test
        certificates), and docs/config.md shows each one as it is."""
        from tls_certs import make_certs
        pki_dir = self.tmpdir()
        make_certs(pki_dir)
        with open(os.path.join(ROOT, "docs", "config.md")) as f:
            doc = f.read()
        examples = sorted(glob.glob(os.path.join(ROOT, "deploy", "examples", "*.json")))
        self.assertTrue(examples)
        for path in examples:
            with open(path) as f:
                text = f.read()
            self.assertIn(text, doc, f"docs/config.md does not show {path} as it is")
            check = os.path.join(self.tmpdir(), os.path.basename(path))
            with open(check, "w") as f:
                f.write(text.replace("/etc/mqttlb/tls/", pki_dir + "/"))
            r = subprocess.run([harness.binary("mqttlb"), "--check", "-c", check],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, f"{path}: {r.stderr}")

    def test_systemd_unit_uses_documented_cli(self):
        with open(os.path.join(ROOT, "deploy", "mqttlb.service")) as f:
            unit = f.read()
        self.assertIn("mqttlb --check -c /etc/mqttlb/mqttlb.json", unit)
        self.assertIn("kill -HUP $MAINPID", unit)   # config reload
        self.assertIn("kill -USR2 $MAINPID", unit)  # binary upgrade
        self.assertIn("Type=notify", unit)          # mqttlb sends READY=1 and MAINPID=
        self.assertIn("NotifyAccess=all", unit)     # the new generation is a child
        self.assertIn("RuntimeDirectory=mqttlb", unit)  # room for unix:/run/mqttlb/admin.sock

    def test_reload_picks_upgrade_only_for_a_replaced_binary(self):
        """The ExecReload shell decides by /proc/PID/exe: run it against a real
        process whose binary is intact, then deleted."""
        with open(os.path.join(ROOT, "deploy", "mqttlb.service")) as f:
            line = [l for l in f if l.startswith("ExecReload=/bin/sh")][0]
        script = line.split("-c ", 1)[1].strip().strip("'")
        d = self.tmpdir()
        exe = os.path.join(d, "fake-mqttlb")
        with open("/bin/sleep", "rb") as src, open(exe, "wb") as dst:
            dst.write(src.read())
        os.chmod(exe, 0o755)
        script = script.replace("/usr/local/bin/mqttlb", exe).replace("kill ", "echo ")
        for replaced, want in ((False, "-HUP"), (True, "-USR2")):
            p = self.spawn([exe, "30"], name="fake")
            if replaced:
                os.rename(exe, exe + ".old")
                with open(exe + ".old", "rb") as src, open(exe, "wb") as dst:
                    dst.write(src.read())
                os.unlink(exe + ".old")
            r = subprocess.run(["sh", "-c", script], env={"MAINPID": str(p.pid)},
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(r.stdout.split()[0], want, r.stdout + r.stderr)
            p.stop()

    def test_scripts_parse(self):
        for script in ("deploy/quickstart.sh", "tests/run.sh", ".ci/run"):
            r = subprocess.run(["bash", "-n", os.path.join(ROOT, script)],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, f"{script}: {r.stderr}")


if __name__ == "__main__":
    harness.main()
