"""mqttlb-bench over TLS against Debian's mosquitto with a throwaway PKI
(tests/certs.sh): verified handshakes, session resumption, no loss at QoS 1,
and a clear error for a server the CA does not vouch for."""
import json
import os
import subprocess

import harness
from harness import TestCase, binary


def run_bench(args, timeout=60):
    p = subprocess.run([binary("mqttlb-bench")] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


class BenchTls(TestCase):
    def setUp(self):
        self.certs = self.tmpdir()
        subprocess.run(["sh", os.path.join(harness.HERE, "..", "certs.sh"), self.certs], check=True,
                       timeout=60)
        # mosquitto drops root privileges before it reads the key: make it readable.
        os.chmod(self.certs, 0o755)
        for f in os.listdir(self.certs):
            os.chmod(os.path.join(self.certs, f), 0o644)
        self.mosq, self.port = self.start_mosquitto(extra_conf=(
            f"certfile {self.certs}/server.crt\nkeyfile {self.certs}/server.key\n"
            f"set_tcp_nodelay true"))
        self.ca = os.path.join(self.certs, "ca.crt")

    def test_conn_verified_and_resumed(self):
        rc, out, err = run_bench(["conn", "-p", self.port, "-c", 40, "--max-pending", 4, "--tls",
                                  "--cafile", self.ca, "--resume", "--json"])
        self.assertEqual(rc, 0, err)
        r = json.loads(out)
        self.assertEqual(r["connections"]["connected"], 40)
        self.assertTrue(r["tls"])
        # Once the first session is stored, later handshakes resume it.
        self.assertGreater(r["connections"]["tls_resumed"], 20)
        self.assertEqual(r["handshake_ms"]["count"], 40)

    def test_no_resumption_without_resume(self):
        rc, out, err = run_bench(["conn", "-p", self.port, "-c", 10, "--tls", "--cafile", self.ca, "--json"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["connections"]["tls_resumed"], 0)

    def test_pubsub_qos1_over_tls(self):
        rc, out, err = run_bench(["pubsub", "-p", self.port, "-c", 2, "-S", 2, "-q", 1, "-d", 1,
                                  "-s", 1024, "--tls", "--cafile", self.ca, "--json"])
        self.assertEqual(rc, 0, err)
        m = json.loads(out)["messages"]
        self.assertGreater(m["sent"], 100)
        self.assertEqual(m["received"], m["sent"])
        self.assertEqual(m["lost"], 0)

    def test_wrong_ca_is_a_clear_error(self):
        rc, out, err = run_bench(["conn", "-p", self.port, "-c", 3, "--tls", "--cafile",
                                  os.path.join(self.certs, "other-ca.crt")], timeout=30)
        self.assertEqual(rc, 3)
        self.assertIn("certificate verify failed", err)

    def test_plain_client_to_tls_port_fails_cleanly(self):
        rc, out, err = run_bench(["conn", "-p", self.port, "-c", 2, "--connect-timeout", 3], timeout=30)
        self.assertNotEqual(rc, 0)
        self.assertIn("error:", err)


if __name__ == "__main__":
    harness.main()
