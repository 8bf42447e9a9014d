"""mqttlb-broker as a program: CLI, ready line, signals, every protocol version
through Debian's mosquitto_pub/mosquitto_sub, CONNACK codes, PROXY protocol,
--max-connections and --debug logging."""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TestCase, binary, free_port, main, wait_until  # noqa: E402
from broker_helpers import (V31, V311, V5, Raw, connect, raw_connect, DISCONNECT,  # noqa: E402
                            publish, subscribe)
import broker_helpers as bh  # noqa: E402


class Cli(TestCase):
    def test_help_and_bad_args(self):
        b = binary("mqttlb-broker")
        r = subprocess.run([b, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        for opt in ("--port", "--bind", "--name", "--proxy-protocol", "--max-connections", "--debug"):
            self.assertIn(opt, r.stdout)
        r = subprocess.run([b, "--port", "99999"], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--port", r.stderr)
        r = subprocess.run([b], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)

    def test_ready_line_and_clean_exit(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            port = free_port()
            p = self.spawn([binary("mqttlb-broker"), "--port", port, "--name", "b1"])
            p.wait_for_line(rf"^mqttlb-broker b1 listening on 127\.0\.0\.1:{port}$")
            # Exactly one line until it stops.
            c, ack = raw_connect(port, "x")
            self.assertEqual(ack, b"\x00\x00")
            self.assertEqual(len(p.lines), 1, p.output())
            self.assertEqual(p.stop(sig), 0, p.output())
            c.close()

    def test_shutdown_tells_v5_clients(self):
        p, port = self.start_our_broker()
        r5, _ = raw_connect(port, "five", V5)
        r3, _ = raw_connect(port, "three", V311)
        self.assertEqual(p.stop(signal.SIGTERM), 0, p.output())
        self.assertEqual([(fb, body[:1]) for fb, body in r5.expect_closed()], [(0xE0, b"\x8b")])
        self.assertEqual(r3.expect_closed(), [])
        r5.close()
        r3.close()

    def test_port_in_use_fails(self):
        p1, port = self.start_our_broker()
        r = subprocess.run([binary("mqttlb-broker"), "--port", str(port)],
                           capture_output=True, text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("in use", r.stderr)


class Versions(TestCase):
    def test_mosquitto_clients_each_version(self):
        _, port = self.start_our_broker()
        for v in ("mqttv31", "mqttv311", "mqttv5"):
            with self.subTest(v):
                sub = self.spawn(["stdbuf", "-oL", "mosquitto_sub", "-V", v, "-p", port, "-t", f"v/{v}/#",
                                  "-q", "1", "-C", "2", "-v", "-i", f"sub-{v}", "-d"])
                sub.wait_for_line(r"(?i)received SUBACK")
                for q in ("0", "2"):
                    r = subprocess.run(["mosquitto_pub", "-V", v, "-p", str(port), "-t",
                                        f"v/{v}/q{q}", "-m", f"hello {q}", "-q", q],
                                       capture_output=True, timeout=10)
                    self.assertEqual(r.returncode, 0, r.stderr)
                sub.wait_for_line(rf"^v/{v}/q0 hello 0$")
                sub.wait_for_line(rf"^v/{v}/q2 hello 2$")
                sub.p.wait(10)
                self.assertEqual(sub.p.returncode, 0)


class Connack(TestCase):
    """CONNACK codes, checked byte for byte against mosquitto."""

    def setUp(self):
        _, self.port = self.start_our_broker()
        _, self.mport = self.start_mosquitto()

    def both(self, fn):
        a, b = fn(self.port), fn(self.mport)
        self.assertEqual(a, b, "our broker differs from mosquitto")
        return a

    def exchange(self, data):
        def fn(port):
            r = Raw(port)
            r.send(data)
            got = r.expect_closed(5)
            r.close()
            return got
        return fn

    def test_unsupported_level(self):
        bad = bytearray(connect("x", V311))
        bad[8] = 6  # protocol level 6
        got = self.both(lambda port: self._first(port, bytes(bad)))
        self.assertEqual(got, (0x20, b"\x00\x01"))

    def _first(self, port, data):
        r = Raw(port)
        r.send(data)
        p = r.recv()
        closed = r.recv() is None
        r.close()
        return p if closed else ("not closed", p)

    def test_identifier_rejected(self):
        # 3.1.1: empty id needs clean session [MQTT-3.1.3-8]; 3.1: 1..23 bytes.
        got = self.both(lambda port: self._first(port, connect("", V311, clean=False)))
        self.assertEqual(got, (0x20, b"\x00\x02"))
        got = self.both(lambda port: self._first(port, connect("", V31)))
        self.assertEqual(got, (0x20, b"\x00\x02"))

    def test_session_present_flag(self):
        def fn(port):
            out = []
            for clean in (False, False, True):
                r, ack = raw_connect(port, "sp-client", V311, clean=clean)
                out.append(ack)
                r.send(DISCONNECT)
                r.expect_closed()
            return out
        self.assertEqual(self.both(fn), [b"\x00\x00", b"\x01\x00", b"\x00\x00"])

    def test_empty_id_assigned_v5(self):
        r, ack = raw_connect(self.port, "", V5)
        self.assertEqual(ack[:2], b"\x00\x00")
        self.assertIn(bytes([0x12]), ack)  # Assigned Client Identifier property
        r.close()

    def test_v5_connect_refusals(self):
        # Enhanced authentication is not supported: 0x8C, same bytes as mosquitto.
        auth = connect("auth", V5, properties=bh.props((0x15, b"\x00\x03abc")))
        self.assertEqual(self.both(lambda port: self._first(port, auth)), (0x20, b"\x00\x8c\x00"))
        # A malformed 5.0 CONNECT (duplicate property) gets CONNACK 0x82 with a
        # Reason String before the close (mosquitto just closes; both are allowed).
        dup = connect("dup", V5, properties=bh.props((0x11, b"\x00\x00\x00\x01"),
                                                     (0x11, b"\x00\x00\x00\x02")))
        fb, body = self._first(self.port, dup)
        self.assertEqual((fb, body[:2]), (0x20, b"\x00\x82"))
        self.assertIn(b"\x1f", body)

    def test_second_connect_closes(self):
        def fn(port):
            r, _ = raw_connect(port, "twice", V311)
            r.send(connect("twice", V311))
            return r.expect_closed()
        self.assertEqual(self.both(fn), [])

    def test_first_packet_not_connect_closes(self):
        def fn(port):
            r = Raw(port)
            r.send(bh.PINGREQ)
            return r.expect_closed()
        self.assertEqual(self.both(fn), [])


class ProxyProtocol(TestCase):
    def test_v1_and_v2_then_mqtt(self):
        p, port = self.start_our_broker(extra=("--proxy-protocol", "--debug"))
        v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 1883\r\n"
        r = Raw(port)
        r.send(v1 + connect("pp1", V311))
        self.assertEqual(r.recv(), (0x20, b"\x00\x00"))
        p.wait_for_line(r"connect client=pp1 .*peer=192\.0\.2\.7:40001")
        v2 = (b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11\x00\x0c" + bytes([198, 51, 100, 9])
              + bytes([127, 0, 0, 1]) + (40002).to_bytes(2, "big") + (1883).to_bytes(2, "big"))
        r2 = Raw(port)
        for i in range(0, len(v2), 5):  # header split over several reads
            r2.send(v2[i:i + 5])
        r2.send(connect("pp2", V5))
        self.assertEqual(r2.recv()[0], 0x20)
        p.wait_for_line(r"connect client=pp2 .*peer=198\.51\.100\.9:40002")
        # Both are real MQTT sessions.
        r2.send(subscribe([("pp/t", 0)], version=V5))
        self.assertEqual(r2.recv()[0], 0x90)
        r.send(publish("pp/t", b"via proxy"))
        fb, body = r2.recv()
        self.assertEqual(fb, 0x30)
        self.assertTrue(body.endswith(b"via proxy"))

    def test_missing_header_is_refused(self):
        _, port = self.start_our_broker(extra=("--proxy-protocol",))
        r = Raw(port)
        r.send(connect("nopp", V311))
        self.assertEqual(r.expect_closed(), [])


class Limits(TestCase):
    def test_max_connections(self):
        _, port = self.start_our_broker(extra=("--max-connections", "2"))
        a, _ = raw_connect(port, "a")
        b, _ = raw_connect(port, "b")
        c = Raw(port)
        c.send(connect("c"))
        self.assertEqual(c.expect_closed(), [])
        a.send(DISCONNECT)
        a.expect_closed()
        # A slot is free again once a client has gone.
        d = wait_until(lambda: self._try(port), 10, what="a free connection slot")
        d.close()
        b.close()

    def _try(self, port):
        r = Raw(port)
        r.send(connect("d"))
        p = r.recv()
        if p is None:
            r.close()
            return None
        return r

    def test_connect_timeout(self):
        _, port = self.start_our_broker(extra=("--connect-timeout", "1"))
        silent = Raw(port)
        partial = Raw(port)
        partial.send(connect("slow")[:5])  # a CONNECT that never completes
        self.assertEqual(silent.expect_closed(10), [])
        self.assertEqual(partial.expect_closed(10), [])
        silent.close()
        partial.close()
        r, ack = raw_connect(port, "prompt")  # a prompt client is unaffected
        self.assertEqual(ack, b"\x00\x00")
        r.close()

    def test_debug_logs_connect_and_disconnect_only_with_debug(self):
        quiet, qport = self.start_our_broker(name="quiet")
        loud, lport = self.start_our_broker(name="loud", extra=("--debug",))
        for port in (qport, lport):
            r, _ = raw_connect(port, "logme")
            r.send(DISCONNECT)
            r.expect_closed()
        loud.wait_for_line(r"connect client=logme version=3\.1\.1")
        loud.wait_for_line(r"disconnect client=logme")
        quiet.wait_for_line(r"listening on")
        self.assertFalse(any(re.search("logme", l) for l in quiet.lines), quiet.output())


if __name__ == "__main__":
    main()
