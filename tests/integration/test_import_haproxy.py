"""`mqttlb import-haproxy` over the guide-style corpus in tests/data/haproxy/.

Each NAME.cfg is an HAProxy config written the way the public EMQX, HiveMQ,
VerneMQ and Mosquitto guides write them, known mistakes included. Next to it:
  NAME.warnings  the expected note lines (stderr without the "FILE:" prefix and
              the summary line), one per directive translated approximately
              or not translated;
  NAME.json   the expected mqttlb config; absent when the import must fail
              (exit 2, nothing written).
The exit code must be 0 (no note), 1 (notes) or 2 (no JSON), the output must
pass `mqttlb --check`, and Debian's HAProxy must agree with the corpus about
which configs it refuses (HAPROXY_REFUSES).

The configs name certificates as certs/server.pem (certificate + key in one
PEM, as HAProxy wants), certs/ca.crt and certs/client.pem; the test makes
them with tests/certs.sh in a temporary directory and runs everything there.

MQTTLB_REGEN_EXPECTED=1 rewrites NAME.warnings / NAME.json from the current
output instead of comparing: review the diff before committing it.
"""
import glob
import json
import os
import shutil
import subprocess

import harness
from harness import TestCase, binary
from tls_certs import make_certs

DATA = os.path.join(harness.HERE, "..", "data", "haproxy")
HAPROXY = "/usr/sbin/haproxy"
# Configs HAProxy 2.6 itself refuses (the mistakes the importer repairs).
HAPROXY_REFUSES = {"doc-continuation", "fullwidth-punctuation"}


def cert_dir(tc):
    """A working directory with the certificates the corpus names."""
    d = tc.tmpdir()
    pki = make_certs(os.path.join(d, "pki"))
    os.mkdir(os.path.join(d, "certs"))

    def cat(dst, *srcs):
        with open(os.path.join(d, "certs", dst), "w") as out:
            for s in srcs:
                with open(pki[s]) as f:
                    out.write(f.read())

    cat("server.pem", "server.crt", "server.key")
    cat("client.pem", "client.crt", "client.key")
    cat("ca.crt", "ca.crt")
    return d


def run_import(cwd, *args):
    return subprocess.run([binary("mqttlb"), "import-haproxy", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


class Corpus(TestCase):
    def setUp(self):
        self.cwd = cert_dir(self)
        self.cfgs = sorted(glob.glob(os.path.join(DATA, "*.cfg")))
        self.assertGreaterEqual(len(self.cfgs), 8, "the corpus is missing")

    def test_each_config_translates_as_expected(self):
        regen = os.environ.get("MQTTLB_REGEN_EXPECTED") == "1"
        for cfg in self.cfgs:
            name = os.path.basename(cfg)[:-4]
            with self.subTest(name):
                out = os.path.join(self.cwd, name + ".json")
                p = run_import(self.cwd, cfg, "-o", out)
                prefix = cfg + ":"
                lines = p.stderr.splitlines()
                self.assertTrue(lines and lines[-1].startswith(cfg + ": "), p.stderr)
                notes = [l[len(prefix):] for l in lines[:-1]]
                for l in lines[:-1]:
                    self.assertTrue(l.startswith(prefix), l)
                want_json = os.path.join(DATA, name + ".json")
                want_notes = os.path.join(DATA, name + ".warnings")
                if regen:
                    with open(want_notes, "w") as f:
                        f.write("".join(n + "\n" for n in notes))
                    if p.returncode == 2:
                        if os.path.exists(want_json):
                            os.remove(want_json)
                    else:
                        shutil.copy(out, want_json)
                    continue
                with open(want_notes) as f:
                    self.assertEqual(notes, f.read().splitlines(), p.stderr)
                if not os.path.exists(want_json):
                    self.assertEqual(p.returncode, 2, p.stderr)
                    self.assertFalse(os.path.exists(out), "nothing is written on failure")
                    self.assertTrue(any(": error: " in n for n in notes), notes)
                    continue
                self.assertEqual(p.returncode, 1 if notes else 0, p.stderr)
                with open(out) as f, open(want_json) as g:
                    self.assertEqual(json.load(f), json.load(g))
                chk = subprocess.run([binary("mqttlb"), "--check", "-c", out], cwd=self.cwd,
                                     capture_output=True, text=True, timeout=30)
                self.assertEqual(chk.returncode, 0, chk.stdout + chk.stderr)

    def test_haproxy_agrees_which_configs_it_refuses(self):
        if not os.access(HAPROXY, os.X_OK):
            self.skipTest("haproxy not installed")
        for cfg in self.cfgs:
            name = os.path.basename(cfg)[:-4]
            with self.subTest(name):
                p = subprocess.run([HAPROXY, "-c", "-f", cfg], cwd=self.cwd, capture_output=True, errors="replace",
                                   text=True, timeout=30)
                self.assertEqual(p.returncode != 0, name in HAPROXY_REFUSES,
                                 p.stdout[-2000:] + p.stderr[-2000:])


class Cli(TestCase):
    def test_stdout_usage_and_unreadable_file(self):
        d = self.tmpdir()
        cfg = os.path.join(d, "h.cfg")
        with open(cfg, "w") as f:
            f.write("frontend f\n    bind 127.0.0.1:1883\n    default_backend b\n"
                    "backend b\n    server s1 127.0.0.1:1884\n")
        p = run_import(d, cfg)
        self.assertEqual(p.returncode, 0, p.stderr)
        cfg_json = json.loads(p.stdout)
        self.assertEqual(cfg_json["backends"], [{"name": "s1", "address": "127.0.0.1:1884"}])
        self.assertIn("wrote stdout", p.stderr)
        self.assertEqual(run_import(d).returncode, 2)
        self.assertEqual(run_import(d, cfg, "--bogus").returncode, 2)
        missing = run_import(d, os.path.join(d, "nope.cfg"))
        self.assertEqual(missing.returncode, 2)
        self.assertIn("cannot read", missing.stderr)
        # A config it cannot translate writes nothing, even with -o.
        with open(cfg, "w") as f:
            f.write("frontend f\n    bind \"127.0.0.1:1883\n")
        out = os.path.join(d, "out.json")
        p = run_import(d, cfg, "-o", out)
        self.assertEqual(p.returncode, 2)
        self.assertIn(cfg + ":2: error:", p.stderr)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    harness.main()
