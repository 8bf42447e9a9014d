"""The TLS record layer handover (docs/tls.md "Record layer handover"): once a
TLS 1.3 session is placed, mqttlb protects its records itself and frees
OpenSSL's per-connection state. Real peers only: `openssl s_client` (its
KeyUpdate commands K and k), Python's ssl (records of one byte, many records
in one TCP read, ciphertext byte by byte), paho-mqtt, our broker; the admin
API says which record layer carries each session."""
import os
import queue
import socket
import ssl
import subprocess
import threading
import time

import harness
from admin_helpers import client_path, start_lb_admin
from harness import free_port, wait_until
from lb_helpers import (connect_packet, metric, mqtt_connect, paho_round_trip, publish_packet,
                        read_packet, subscribe_packet)
from tls_certs import make_certs

TIMEOUT = 15


class MqttStream:
    """MQTT packets out of a byte stream that a reader thread fills, or, with
    threaded=False, that packet() reads itself (read() then blocks at most
    its socket's timeout)."""

    def __init__(self, read, threaded=True):
        self.read, self.q, self.buf = read, None, b""
        if threaded:
            self.q = queue.Queue()
            threading.Thread(target=self._pump, args=(read,), daemon=True).start()

    def _pump(self, read):
        while True:
            try:
                chunk = read()
            except OSError:
                chunk = b""
            self.q.put(chunk)
            if not chunk:
                return

    def packet(self, timeout=TIMEOUT):
        """(first byte, body) of the next packet; AssertionError on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(self.buf) and i <= 4:
                    n += (self.buf[i] & 0x7F) * mult
                    mult *= 128
                    if not self.buf[i] & 0x80:
                        break
                    i += 1
                if i < len(self.buf) and len(self.buf) >= i + 1 + n:
                    pkt = (self.buf[0], self.buf[i + 1:i + 1 + n])
                    self.buf = self.buf[i + 1 + n:]
                    return pkt
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no MQTT packet in time")
            if self.q is None:
                chunk = self.read()
                self.buf += chunk
                continue
            try:
                chunk = self.q.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no MQTT packet in time")
            if not chunk:
                raise AssertionError("the stream ended")
            self.buf += chunk

    def publish(self, topic, timeout=TIMEOUT):
        while True:
            first, body = self.packet(timeout)
            if first >> 4 == 3:
                tlen = int.from_bytes(body[:2], "big")
                if body[2:2 + tlen] == topic.encode():
                    return body[2 + tlen:]


def body_of(packet):
    """The packet without its fixed header (type byte and length varint)."""
    i = 1
    while packet[i] & 0x80:
        i += 1
    return packet[i + 1:]


def record_layer(admin, client_id):
    r = admin.get(client_path(client_id))
    assert r.status == 200, r
    return r.json["tls"]["record_layer"]


class TlsHandover(harness.TestCase):
    def setUp(self):
        self.pki = make_certs(self.tmpdir())
        _, self.bport = self.start_our_broker(name="b1")

    def start(self, **tls_extra):
        self.tport = free_port()
        listeners = [{"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"},
                     {"name": "mqtts", "bind": f"127.0.0.1:{self.tport}",
                      "tls": dict({"cert": self.pki["server.crt"],
                                   "key": self.pki["server.key"]}, **tls_extra)}]
        self.proc, self.port, self.admin, _, cfg = start_lb_admin(
            self, [("b1", self.bport)], listeners=listeners)
        self.mport = int(cfg["metrics"]["bind"].rsplit(":", 1)[1])
        self.proc.wait_for_line(r"listening: mqtts on", 20)

    def records(self, layer):
        return metric(self.mport, f'mqttlb_tls_record_layer_total{{layer="{layer}",listener="mqtts"}}')

    def s_client(self, *extra):
        # -quiet, then -no_ign_eof: no session dump on stdout, but the
        # interactive commands (K, k) stay on.
        p = subprocess.Popen(
            ["openssl", "s_client", "-quiet", "-no_ign_eof", "-connect",
             f"127.0.0.1:{self.tport}", "-servername", "localhost", "-CAfile",
             self.pki["ca.crt"], "-verify_return_error", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.addCleanup(self._stop, p)
        p.err = []  # stderr lines, read by a thread (s_client reports commands there)
        threading.Thread(target=lambda: p.err.extend(iter(p.stderr.readline, b"")),
                         daemon=True).start()
        return p, MqttStream(lambda: os.read(p.stdout.fileno(), 65536))

    @staticmethod
    def command(p, line):
        """An s_client command (K, k): it must be alone in its stdin read, so
        wait until s_client said it ran it before writing anything else."""
        before = p.err.count(b"KEYUPDATE\n")
        p.stdin.write(line)
        wait_until(lambda: p.err.count(b"KEYUPDATE\n") > before, TIMEOUT,
                   what="s_client sent its KeyUpdate")

    @staticmethod
    def _stop(p):
        if p.poll() is None:
            p.kill()
        p.wait(10)
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()

    def test_openssl_s_client_key_updates_after_the_handover(self):
        """KeyUpdate both ways through a handed-over session: the client's own
        (k), and one that asks for ours (K); data flows both ways after each."""
        self.start()
        dev, stream = self.s_client()
        dev.stdin.write(connect_packet("dev-ku"))
        self.assertEqual(stream.packet()[0], 0x20)
        dev.stdin.write(subscribe_packet(1, "ku/down"))
        self.assertEqual(stream.packet()[0], 0x90)
        self.assertEqual(record_layer(self.admin, "dev-ku"), "mqttlb")
        watcher, _ = mqtt_connect(self.port, "watcher")
        watcher.sendall(subscribe_packet(1, "ku/up"))
        self.assertEqual(read_packet(watcher, TIMEOUT)[0], 0x90)
        sender, _ = mqtt_connect(self.port, "sender")
        for i, command in enumerate([b"k\n", b"K\n", b"K\n", b"k\n"]):
            self.command(dev, command)
            # Up: the device's next record is under its new key.
            payload = f"up-{i}".encode() * (1 + 2000 * i)  # up to several records
            dev.stdin.write(publish_packet("ku/up", payload))
            first, body = read_packet(watcher, TIMEOUT)
            self.assertEqual(first >> 4, 3)
            self.assertEqual(body[2 + len("ku/up"):], payload)
            # Down: after K, our KeyUpdate must go before this PUBLISH, or
            # s_client fails to decrypt it.
            down = f"down-{i}".encode() * (1 + 3000 * i)
            sender.sendall(publish_packet("ku/down", down))
            self.assertEqual(stream.publish("ku/down"), down)
        self.assertIsNone(dev.poll(), "s_client is still connected")
        self.assertEqual(record_layer(self.admin, "dev-ku"), "mqttlb")
        watcher.close()
        sender.close()

    def test_records_of_one_byte_many_in_one_read_and_bytes_one_by_one(self):
        """A client whose every byte is its own TLS record, sent all in one
        TCP write; then ciphertext dribbled one byte per TCP segment."""
        self.start()
        ctx = ssl.create_default_context(cafile=self.pki["ca.crt"])
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        raw = socket.create_connection(("127.0.0.1", self.tport), timeout=TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inc, out, server_hostname="localhost")

        def flush(byte_by_byte=False):
            data = out.read()
            if byte_by_byte:
                for i in range(len(data)):
                    raw.sendall(data[i:i + 1])
            else:
                raw.sendall(data)

        def feed():
            chunk = raw.recv(65536)
            if not chunk:
                raise AssertionError("mqttlb closed the connection")
            inc.write(chunk)

        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                self.assertLess(time.monotonic(), deadline, "handshake in time")
                feed()
        flush()

        class Reader:
            def recv(self_inner, n):
                while True:
                    try:
                        return tls.read(n)
                    except ssl.SSLWantReadError:
                        feed()

        # An SSLObject is not thread-safe: its reads and writes stay on this thread.
        dev = MqttStream(lambda: Reader().recv(65536), threaded=False)
        tls.write(connect_packet("dev-bytes"))
        flush()
        self.assertEqual(dev.packet()[0], 0x20)
        wait_until(lambda: record_layer(self.admin, "dev-bytes") == "mqttlb", 10,
                   what="the session handed over")
        watcher, _ = mqtt_connect(self.port, "watcher2")
        watcher.sendall(subscribe_packet(1, "bytes/up"))
        self.assertEqual(read_packet(watcher, TIMEOUT)[0], 0x90)
        pkt = publish_packet("bytes/up", bytes(range(256)) * 8)
        for b in pkt:  # one record per byte, every record in one TCP write
            tls.write(bytes([b]))
        flush()
        first, body = read_packet(watcher, TIMEOUT)
        self.assertEqual((first, body), (pkt[0], body_of(pkt)))
        pkt2 = publish_packet("bytes/up", b"dribbled" * 300)
        tls.write(pkt2)
        flush(byte_by_byte=True)
        first, body = read_packet(watcher, TIMEOUT)
        self.assertEqual(body, body_of(pkt2))
        # Many packets pipelined in one record, then in one TCP write.
        burst = b"".join(publish_packet("bytes/up", f"p{i}".encode()) for i in range(200))
        tls.write(burst)
        flush()
        for i in range(200):
            first, body = read_packet(watcher, TIMEOUT)
            self.assertEqual(body[2 + len("bytes/up"):], f"p{i}".encode())
        watcher.close()
        raw.close()

    def test_paho_and_the_openssl_record_layer_where_it_stays(self):
        """paho over TLS is handed over; TLS 1.2 and record_layer "openssl"
        stay with OpenSSL, and all three carry traffic."""
        self.start()
        _, got = paho_round_trip(self.tport, "paho-h", "h/paho", b"via-paho",
                                 ca=self.pki["ca.crt"], host="localhost", timeout=TIMEOUT,
                                 what="paho round trip over TLS")
        self.assertEqual(got[0], b"via-paho")
        dev, stream = self.s_client("-tls1_2")
        dev.stdin.write(connect_packet("dev-12"))
        self.assertEqual(stream.packet()[0], 0x20)
        self.assertEqual(record_layer(self.admin, "dev-12"), "openssl")
        dev13, stream13 = self.s_client("-tls1_3")
        dev13.stdin.write(connect_packet("dev-13"))
        self.assertEqual(stream13.packet()[0], 0x20)
        self.assertEqual(record_layer(self.admin, "dev-13"), "mqttlb")
        # paho and dev-13 handed over, dev-12 (TLS 1.2) not.
        self.assertEqual(self.records("mqttlb"), 2)
        self.assertEqual(self.records("openssl"), 1)

    def test_record_layer_openssl_keeps_openssl(self):
        self.start(record_layer="openssl")
        dev, stream = self.s_client("-tls1_3")
        dev.stdin.write(connect_packet("dev-keep"))
        self.assertEqual(stream.packet()[0], 0x20)
        dev.stdin.write(subscribe_packet(1, "keep/down"))
        self.assertEqual(stream.packet()[0], 0x90)
        self.assertEqual(record_layer(self.admin, "dev-keep"), "openssl")
        self.assertEqual((self.records("mqttlb"), self.records("openssl")), (0, 1))
        self.command(dev, b"K\n")
        sender, _ = mqtt_connect(self.port, "sender-keep")
        sender.sendall(publish_packet("keep/down", b"still here"))
        self.assertEqual(stream.publish("keep/down"), b"still here")
        sender.close()


if __name__ == "__main__":
    harness.main()
