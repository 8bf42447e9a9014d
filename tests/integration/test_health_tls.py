"""Health checks over TLS (issue 6) against Debian's mosquitto with a TLS
listener: the checker verifies the broker like a device would (CA, name),
and a TLS failure is a failed check with reason "tls". Driven through
tests/health_probe (a health::Monitor on real sockets) to isolate the checker;
test_lb_tls.py covers backend TLS checks inside mqttlb."""
import os
import socket
import ssl
import struct
import threading

import harness
from lb_helpers import Closed, read_packet
from tls_certs import make_certs

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise Closed("eof")
        data += chunk
    return data


def read_proxy_header(sock):
    """One PROXY v1 line or v2 header, read byte-exactly (nothing of the TLS
    handshake behind it)."""
    first = read_exact(sock, 6)
    if first.startswith(b"PROXY "):
        line = first
        while not line.endswith(b"\r\n") and len(line) < 108:
            line += read_exact(sock, 1)
        return line
    head = first + read_exact(sock, 10)
    return head + read_exact(sock, struct.unpack("!H", head[14:16])[0])


class ProxyTlsBroker:
    """A broker behind PROXY + TLS (HAProxy send-proxy + ssl): reads the PROXY
    header in plaintext, then speaks TLS; answers CONNECT and PINGREQ. Records
    (header, peer port, TLS version, first packet type) per connection."""

    def __init__(self, tc, pki):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.seen = []
        self.errors = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        tc.addCleanup(self.close)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.srv.close()

    def _accept(self):
        for _ in range(100):  # bounded: a handful of check connections is expected
            if self.stop.is_set():
                return
            try:
                c, peer = self.srv.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._serve, args=(c, peer[1]), daemon=True).start()

    def _serve(self, c, peer_port):
        c.settimeout(5)
        try:
            header = read_proxy_header(c)
            t = self.ctx.wrap_socket(c, server_side=True)
            first, _ = read_packet(t)
            with self.lock:
                self.seen.append((header, peer_port, t.version(), first))
            if first != 0x10:
                return
            t.sendall(b"\x20\x02\x00\x00")  # CONNACK accepted
            while not self.stop.is_set():
                try:
                    kind, _ = read_packet(t, timeout=0.5)
                except socket.timeout:
                    continue
                if kind != 0xC0:
                    return
                t.sendall(b"\xd0\x00")  # PINGRESP
        except Closed:
            pass
        except Exception as e:  # reported by the test's assertions
            with self.lock:
                self.errors.append(repr(e))
        finally:
            c.close()


class HealthTls(harness.TestCase):
    def test_tls_checks(self):
        pki = make_certs(self.tmpdir())
        _, tport = self.start_mosquitto(extra_conf=(
            f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"))
        addr = f"127.0.0.1:{tport}"
        probe = self.spawn([
            harness.binary(os.path.join("tests", "health_probe")),
            "--interval", "300", "--timeout", "300", "--rise", "2", "--fall", "2",
            f"ok={addr},ca={pki['ca.crt']}",
            f"byname={addr},ca={pki['ca.crt']},sni=localhost",
            f"noverify={addr},ca={pki['other-ca.crt']},noverify",
            f"wrongca={addr},ca={pki['other-ca.crt']}",
            f"wrongname={addr},ca={pki['ca.crt']},sni=not-this-broker.example",
            f"plain={addr}",
        ], name="health_probe")
        probe.wait_for_line(r"^ready$", 15)
        for name in ("ok", "byname", "noverify"):
            probe.wait_for_line(rf"health: backend {name} down -> up: first check passed", 5)
        for name in ("wrongca", "wrongname"):
            probe.wait_for_line(rf"health: backend {name} check failed \(tls\): TLS: .+", 5)
        probe.wait_for_line(r"health: backend plain check failed \((closed|protocol|"
                            r"connack_timeout)\)", 5)
        # The passing ones keep passing over their kept TLS sessions: no flapping.
        probe.wait_for_line(r"^stats ok up passes=([6-9]|\d\d+) fails=0$", 15)
        for name in ("ok", "byname", "noverify"):
            self.assertNotIn(f"backend {name} up -> down", probe.output())
        for name in ("wrongca", "wrongname", "plain"):
            self.assertNotIn(f"backend {name} down -> up", probe.output())
        self.assertEqual(probe.stop(), 0)

    def test_proxy_header_then_tls(self):
        """The checker's PROXY header (v1 and v2) goes first, in plaintext, with
        its own socket's addresses; then the TLS handshake; then CONNECT."""
        pki = make_certs(self.tmpdir())
        v1, v2 = ProxyTlsBroker(self, pki), ProxyTlsBroker(self, pki)
        probe = self.spawn([
            harness.binary(os.path.join("tests", "health_probe")),
            "--interval", "200", "--timeout", "1000", "--rise", "1", "--fall", "1",
            f"pv1=127.0.0.1:{v1.port},proxy=v1,ca={pki['ca.crt']},sni=localhost",
            f"pv2=127.0.0.1:{v2.port},proxy=v2,ca={pki['ca.crt']},sni=localhost",
        ], name="health_probe")
        probe.wait_for_line(r"^ready$", 15)
        for name in ("pv1", "pv2"):
            probe.wait_for_line(rf"health: backend {name} down -> up: first check passed", 5)
            probe.wait_for_line(rf"^stats {name} up passes=([3-9]|\d\d+) fails=0$", 10)
        for b in (v1, v2):
            with b.lock:
                self.assertEqual(b.errors, [])
                self.assertEqual(len(b.seen), 1, b.seen)  # one kept session
                header, peer_port, version, first = b.seen[0]
            self.assertEqual(version, "TLSv1.3")
            self.assertEqual(first, 0x10)
            if b is v1:
                self.assertEqual(header.decode(),
                                 f"PROXY TCP4 127.0.0.1 127.0.0.1 {peer_port} {b.port}\r\n")
            else:
                self.assertEqual(header[:12], V2_SIG)
                self.assertEqual(header[12:14], b"\x21\x11")  # v2 PROXY, TCP over IPv4
                src, dst, sport, dport = struct.unpack("!4s4sHH", header[16:28])
                self.assertEqual((src, dst), (b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x01"))
                self.assertEqual((sport, dport), (peer_port, b.port))
        self.assertEqual(probe.stop(), 0)


if __name__ == "__main__":
    harness.main()
