"""What a broker and a client see through mqttlb, byte for byte: the original
CONNECT and pipelined packets (with or without a PROXY header), half-close in
both directions, and backpressure that keeps mqttlb's memory bounded when a
client stops reading."""
import os
import socket
import threading
import time

import harness
from harness import rss_kib, wait_until
from lb_helpers import connect_packet, start_mqttlb
from stream_peers import first_packet_len


CONNACK = b"\x20\x02\x00\x00"


def connect_end(data):
    """Where the first MQTT packet (after a PROXY v1/v2 header) ends, or None."""
    i = 0
    if data.startswith(b"PROXY "):
        j = data.find(b"\r\n")
        if j < 0:
            return None
        i = j + 2
    elif data.startswith(b"\r\n\r\n\x00\r\nQUIT\n"):
        if len(data) < 16:
            return None
        i = 16 + int.from_bytes(data[14:16], "big")
    n = first_packet_len(data[i:])
    return None if n is None else i + n


class FakeBroker:
    """A raw TCP peer standing in for a broker, to see exactly what mqttlb sends
    and to push arbitrary bytes back. Serves one connection; answers its
    CONNECT with CONNACK 0, as a broker does (mqttlb waits for it)."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.data = b""
        self.peer = None
        self.eof = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        self.srv.settimeout(30)
        try:
            c, _ = self.srv.accept()
        except OSError:
            return
        self.peer = c
        answered = False
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    self.eof.set()
                    return
                self.data += b
                if not answered and connect_end(self.data) is not None:
                    answered = True
                    c.sendall(CONNACK)
        except OSError:
            self.eof.set()

    def close(self):
        self.srv.close()
        if self.peer:
            self.peer.close()


class Forwarding(harness.TestCase):
    def broker_and_lb(self, proto="none"):
        fb = FakeBroker()
        self.addCleanup(fb.close)
        p, port, mport, _ = start_mqttlb(
            self, [{"name": "fake", "address": f"127.0.0.1:{fb.port}", "proxy_protocol": proto}],
            workers=1, health={"enabled": False})  # the fake serves one raw TCP peer
        return fb, p, port, mport

    def test_exact_bytes_and_proxy_headers(self):
        for proto in ("none", "v1", "v2"):
            fb, _, port, _ = self.broker_and_lb(proto)
            # CONNECT (5.0) + a SUBSCRIBE pipelined behind it, sent in 3-byte pieces.
            sent = connect_packet("exact-bytes", 5, 17) + b"\x82\x0a\x00\x01\x00\x00\x04a/b/\x00"
            s = socket.create_connection(("127.0.0.1", port))
            self.addCleanup(s.close)
            for i in range(0, len(sent), 3):
                s.sendall(sent[i:i + 3])
                time.sleep(0.002)
            wait_until(lambda: fb.data.endswith(sent), 5, what=f"bytes at the broker ({proto})")
            cport = s.getsockname()[1]
            if proto == "none":
                self.assertEqual(fb.data, sent)
            elif proto == "v1":
                hdr = f"PROXY TCP4 127.0.0.1 127.0.0.1 {cport} {port}\r\n".encode()
                self.assertEqual(fb.data, hdr + sent)
            else:
                sig = b"\r\n\r\n\x00\r\nQUIT\n"
                self.assertTrue(fb.data.startswith(sig + b"\x21\x11\x00\x0c"), fb.data[:20])
                addr = fb.data[16:28]
                self.assertEqual(addr[:8], bytes([127, 0, 0, 1, 127, 0, 0, 1]))
                self.assertEqual(int.from_bytes(addr[8:10], "big"), cport)
                self.assertEqual(int.from_bytes(addr[10:12], "big"), port)
                self.assertEqual(fb.data[28:], sent)

    def test_half_close_both_ways(self):
        fb, _, port, _ = self.broker_and_lb()
        s = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(s.close)
        s.sendall(connect_packet("half", 4))
        s.settimeout(5)
        self.assertEqual(s.recv(16), CONNACK)
        # Client half-closes: the broker reads EOF...
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(fb.eof.wait(5), "client FIN not propagated to the broker")
        # ...and can still send: the client receives it.
        fb.peer.sendall(b"\xd0\x00")
        self.assertEqual(s.recv(16), b"\xd0\x00")
        # Broker closes its half too: the client reads EOF; the session is over.
        fb.peer.shutdown(socket.SHUT_WR)
        self.assertEqual(s.recv(16), b"")

    def test_reset_propagates(self):
        fb, _, port, _ = self.broker_and_lb()
        s = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(s.close)
        s.sendall(connect_packet("resetter", 4))
        wait_until(lambda: fb.peer is not None and fb.data, 5, what="session at the broker")
        # Abortive close from the client (RST): the broker side is reset/closed too.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        self.assertTrue(fb.eof.wait(5), "client reset not propagated to the broker")

    def test_backpressure_bounds_memory_and_loses_nothing(self):
        fb, p, port, _ = self.broker_and_lb()
        s = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(connect_packet("slow-reader", 4, 0))
        s.settimeout(5)
        self.assertEqual(s.recv(4), CONNACK)
        rss0 = rss_kib(p.pid)
        # The broker pushes 64 MiB while the client reads nothing. With backpressure
        # mqttlb stops reading the broker, so the broker's send blocks (times out)
        # long before 64 MiB are out.
        total = 64 * 1024 * 1024
        chunk = os.urandom(1024 * 1024)
        fb.peer.settimeout(2.0)
        sent = 0
        try:
            while sent < total:
                sent += fb.peer.send(chunk)
        except socket.timeout:
            pass
        self.assertLess(sent, total, "the broker was never slowed down")
        grown = rss_kib(p.pid) - rss0
        self.assertLess(grown, 16 * 1024, f"mqttlb grew by {grown} KiB while the client stalled")
        # Now the client reads: every byte arrives, in order.
        got = bytearray()
        done = threading.Event()

        def drain():
            s.settimeout(10)
            try:
                while len(got) < total:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    got.extend(b)
            except OSError:
                pass
            done.set()

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        fb.peer.settimeout(30)
        view = memoryview(chunk)
        off = sent % len(chunk)
        while sent < total:
            n = fb.peer.send(view[off:])
            sent += n
            off = (off + n) % len(chunk)
        self.assertTrue(done.wait(60), "client did not receive everything")
        self.assertEqual(len(got), total)
        self.assertEqual(bytes(got[:len(chunk)]), chunk)
        self.assertEqual(bytes(got[-len(chunk):]), chunk)


if __name__ == "__main__":
    harness.main()
