"""tls::Engine on real sockets against independent TLS peers.

tests/unit/tls/tls_probe drives the engine the way a socket loop must; its
peers here are Debian's mosquitto (TLS listener, MQTT CONNECT/CONNACK) and
Python's ssl module. Certificates come from tests/certs.sh (tls_certs.py).
"""
import os
import socket
import ssl
import subprocess

import harness
from tls_certs import make_certs

# MQTT 3.1.1 CONNECT, clean session, keep-alive 60, empty client id.
CONNECT_HEX = "100c00044d5154540402003c0000"
CONNACK_OK_HEX = "20020000"


def probe():
    return harness.binary(os.path.join("tests", "tls_probe"))


def run_probe(*args, timeout=30):
    """Runs tls_probe to completion; returns (exit code, output)."""
    p = subprocess.run([probe(), *map(str, args)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


class TlsEngineAgainstMosquitto(harness.TestCase):
    def setUp(self):
        self.pki = make_certs(self.tmpdir())

    def mosquitto(self, extra=""):
        pki = self.pki
        return self.start_mosquitto(extra_conf=(
            f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"
            f"cafile {pki['ca.crt']}\n{extra}"))

    def test_connect_over_tls_and_resume(self):
        _, port = self.mosquitto()
        rc, out = run_probe("connect", port, "--ca", self.pki["ca.crt"], "--sni", "localhost",
                            "--send", CONNECT_HEX, "--expect", 4, "--repeat", 3)
        self.assertEqual(rc, 0, out)
        lines = out.splitlines()
        self.assertEqual(lines.count(f"received {CONNACK_OK_HEX}"), 3, out)
        handshakes = [l for l in lines if l.startswith("handshake ok")]
        self.assertEqual(len(handshakes), 3, out)
        self.assertIn("verified=1", handshakes[0])
        self.assertIn("reused=0", handshakes[0])  # first connection: full handshake
        self.assertIn("reused=1", handshakes[1], out)  # then resumed with the ticket
        self.assertIn("reused=1", handshakes[2], out)

    def test_wrong_ca_is_refused_with_reason(self):
        _, port = self.mosquitto()
        rc, out = run_probe("connect", port, "--ca", self.pki["other-ca.crt"], "--sni",
                            "localhost", "--send", CONNECT_HEX, "--expect", 4)
        self.assertEqual(rc, 1, out)
        self.assertIn("error: TLS handshake failed: certificate verify failed", out)
        self.assertNotIn("received", out)

    def test_name_mismatch_is_refused(self):
        _, port = self.mosquitto()
        rc, out = run_probe("connect", port, "--ca", self.pki["ca.crt"], "--sni",
                            "broker.example.com", "--send", CONNECT_HEX, "--expect", 4)
        self.assertEqual(rc, 1, out)
        self.assertIn("hostname mismatch", out)

    def test_client_certificate_required(self):
        _, port = self.mosquitto("require_certificate true\n")
        rc, out = run_probe("connect", port, "--ca", self.pki["ca.crt"], "--sni", "localhost",
                            "--cert", self.pki["client.crt"], "--key", self.pki["client.key"],
                            "--send", CONNECT_HEX, "--expect", 4)
        self.assertEqual(rc, 0, out)
        self.assertIn(f"received {CONNACK_OK_HEX}", out)
        rc, out = run_probe("connect", port, "--ca", self.pki["ca.crt"], "--sni", "localhost",
                            "--send", CONNECT_HEX, "--expect", 4)
        self.assertEqual(rc, 1, out)
        self.assertNotIn("received", out)
        # TLS 1.3: the refusal comes after the client's handshake, as an alert
        # that races with our CONNECT; the socket may be reset before we read it.
        self.assertRegex(out, r"certificate required|Connection reset by peer|"
                              r"connection closed by peer", out)


class TlsEngineServingPython(harness.TestCase):
    """The engine as a server (echo), Python's ssl module as the client."""

    def serve(self, *extra, cert="server.crt", key="server.key"):
        port = harness.free_port()
        p = self.spawn([probe(), "serve", port, "--cert", self.pki[cert], "--key", self.pki[key],
                        *extra], name="tls_probe")
        p.wait_for_line(r"^listening on ")
        return p, port

    def setUp(self):
        self.pki = make_certs(self.tmpdir())

    def client_ctx(self, cert=None, tls12=False):
        ctx = ssl.create_default_context(cafile=self.pki["ca.crt"])
        if cert:
            ctx.load_cert_chain(self.pki[cert + ".crt"], self.pki[cert + ".key"])
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def echo(self, ctx, port, payload, session=None):
        """One connection: send payload, read the echo, close with close_notify."""
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(payload)
            got = recv_exactly(s, len(payload))
            reused, sess = s.session_reused, s.session
            s.unwrap()  # close_notify both ways
        return got, reused, sess

    def test_echo_large_payload_and_clean_close(self):
        p, port = self.serve()
        payload = os.urandom(300_000)  # many records, many partial socket reads
        got, _, _ = self.echo(self.client_ctx(), port, payload)
        self.assertEqual(got, payload)
        p.wait_for_line(r"^closed cleanly after 300000 bytes$")

    def test_full_chain_certificate_verifies(self):
        p, port = self.serve(cert="chain-server.crt", key="chain-server.key")
        got, _, _ = self.echo(self.client_ctx(), port, b"chain")  # trusts the root only
        self.assertEqual(got, b"chain")

    def test_resumption_tls13_and_tls12(self):
        p, port = self.serve()
        for tls12 in (False, True):
            with self.subTest(tls12=tls12):
                ctx = self.client_ctx(tls12=tls12)
                got, reused, sess = self.echo(ctx, port, b"first")
                self.assertEqual(got, b"first")
                self.assertFalse(reused)
                got, reused, _ = self.echo(ctx, port, b"second", session=sess)
                self.assertEqual(got, b"second")
                self.assertTrue(reused, "the second connection should resume the session")
        self.assertGreaterEqual(p.output().count("reused=1"), 2, p.output())

    def test_verify_client_required(self):
        p, port = self.serve("--ca", self.pki["ca.crt"], "--verify-client", "required")
        got, _, _ = self.echo(self.client_ctx(cert="client"), port, b"with cert")
        self.assertEqual(got, b"with cert")
        p.wait_for_line(r"subject=CN=mqttlb test client")
        mark = len(p.lines)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            self.echo(self.client_ctx(), port, b"no cert")
        p.wait_for_line(r"^error: TLS handshake failed: peer did not return a certificate",
                        start=mark)
        mark = len(p.lines)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            self.echo(self.client_ctx(cert="other-client"), port, b"foreign cert")
        p.wait_for_line(r"^error: TLS handshake failed: certificate verify failed", start=mark)

    def test_plaintext_client_gets_an_error_not_a_hang(self):
        p, port = self.serve()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(bytes.fromhex(CONNECT_HEX))  # MQTT without TLS
            data = s.recv(1024)  # the server's alert, then EOF
            self.assertTrue(data == b"" or data[0] == 0x15, data)  # 0x15: TLS alert record
        p.wait_for_line(r"^error: TLS handshake failed: ")
        got, _, _ = self.echo(self.client_ctx(), port, b"still serving")
        self.assertEqual(got, b"still serving")


if __name__ == "__main__":
    harness.main()
