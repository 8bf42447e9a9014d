"""mqttlb's answers to everything that is not a good client: bad first
packets, slow clients, no backend, unsupported protocol levels, limits; plus
the command line (--check, --version) and signals."""
import json
import os
import signal
import socket
import subprocess
import time

import harness
from harness import binary, free_port, wait_until
from lb_helpers import (PINGREQ, Sock, connect_packet, is_closed, metric, metrics, mqtt_connect,
                        read_packet, start_backends, start_mqttlb, _str, _varint)


def raw_connect_variant(proto=b"MQTT", level=4, flags=0x02, first=0x10, client_id=b"x"):
    body = _str(proto) + bytes([level, flags]) + b"\x00\x3c" + _str(client_id)
    return bytes([first]) + _varint(len(body)) + body


TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100a5010000a10303" + "00" * 32 + "000020c02bc02fc02cc030cca9cca8c009c013c00ac014"
    "009c009d002f0035c012000a0100005800000014001200000f7777772e6578616d706c652e636f6d")

BAD_FIRST_PACKETS = {
    # name: (bytes, metric reason)
    "http": (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "not_connect"),
    "tls_client_hello": (TLS_CLIENT_HELLO, "not_connect"),
    "garbage": (bytes(range(0x50, 0x90)), "not_connect"),
    "pingreq_first": (PINGREQ, "not_connect"),
    "bad_fixed_header_flags": (raw_connect_variant(first=0x12), "bad_fixed_header_flags"),
    "oversize": (b"\x10\xff\xff\x7f" + b"\x00" * 16, "too_large"),
    "bad_protocol_name": (raw_connect_variant(proto=b"HTTP"), "bad_protocol_name"),
    "reserved_flag": (raw_connect_variant(flags=0x03), "reserved_flag"),
    "malformed_length": (b"\x10\xff\xff\xff\xff\x01", "malformed_length"),
}


class Rejects(harness.TestCase):
    def test_bad_first_packets_closed_counted_and_good_clients_unaffected(self):
        backends = start_backends(self)
        _, port, mport, _ = start_mqttlb(self, backends, limits={"max_connect_bytes": 4096})
        good, _ = mqtt_connect(port, "good-before")
        self.addCleanup(good.close)
        for name, (payload, _) in BAD_FIRST_PACKETS.items():
            s = Sock(socket.AF_INET, socket.SOCK_STREAM)
            s.connect(("127.0.0.1", port))
            s.sendall(payload)
            s.settimeout(5)
            got = b""
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
            except ConnectionResetError:
                pass
            self.assertEqual(got, b"", f"{name}: expected a silent close, got {got!r}")
            s.close()
        expected = {}
        for _, reason in BAD_FIRST_PACKETS.values():
            expected[reason] = expected.get(reason, 0) + 1
        m = metrics(mport)
        for reason, n in expected.items():
            self.assertEqual(m.get(f'mqttlb_connections_rejected_total{{reason="{reason}"}}'), n, reason)
        # No backend was touched by any of them: one session in total (good-before).
        self.assertEqual(sum(v for k, v in m.items() if k.startswith("mqttlb_backend_sessions_total")), 1)
        # The good client is still served, and new ones are too.
        good.sendall(PINGREQ)
        self.assertEqual(read_packet(good)[0], 0xD0)
        after, code = mqtt_connect(port, "good-after")
        self.assertEqual(code, 0)
        after.close()

    def test_half_sent_and_silent_connect_closed_at_timeout(self):
        backends = start_backends(self, 1)
        _, port, mport, _ = start_mqttlb(self, backends, limits={"connect_timeout_ms": 700})
        half = Sock(socket.AF_INET, socket.SOCK_STREAM)
        half.connect(("127.0.0.1", port))
        pkt = connect_packet("slowpoke")
        half.sendall(pkt[: len(pkt) // 2])
        silent = Sock(socket.AF_INET, socket.SOCK_STREAM)
        silent.connect(("127.0.0.1", port))
        t0 = time.monotonic()
        self.assertTrue(is_closed(half, 10), "half-sent CONNECT not closed")
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        self.assertTrue(is_closed(silent, 10), "silent client not closed")
        half.close()
        silent.close()
        wait_until(lambda: metric(mport, 'mqttlb_connections_rejected_total{reason="connect_timeout"}') == 2,
                   5, what="connect timeouts counted")

    def test_all_backends_down_answers_connack_server_unavailable(self):
        dead = [("d1", free_port()), ("d2", free_port())]
        # Health checks off: the balancer itself must try (and count) each dead backend.
        _, port, mport, _ = start_mqttlb(self, dead, balance={"retries": 1},
                                         health={"enabled": False})
        for level, expected in ((3, 0x03), (4, 0x03), (5, 0x88)):
            s, code = mqtt_connect(port, f"nobody-{level}", level=level, expect_ok=False)
            self.assertEqual(code, expected, f"level {level}")
            self.assertTrue(is_closed(s, 5))
            s.close()
        self.assertEqual(metric(mport, 'mqttlb_connections_rejected_total{reason="no_backend"}'), 3)
        self.assertGreaterEqual(metric(mport, 'mqttlb_backend_connect_failures_total{backend="d1"}'), 3)

    def test_backend_connect_timeout_moves_on(self):
        # A backend whose accept queue is full: SYNs are dropped, connects hang.
        hang = socket.socket()
        hang.bind(("127.0.0.1", 0))
        hang.listen(0)
        self.addCleanup(hang.close)
        filler = socket.create_connection(hang.getsockname())
        self.addCleanup(filler.close)
        good = start_backends(self, 1)
        hang_b = {"name": "hang", "address": "127.0.0.1:%d" % hang.getsockname()[1]}
        # Round-robin tries the first backend first; health checks off so the
        # balancer itself meets the hanging backend.
        _, port, mport, _ = start_mqttlb(
            self, [hang_b, good[0]], health={"enabled": False},
            balance={"algorithm": "round-robin", "affinity": "none",
                     "backend_connect_timeout_ms": 300, "retries": 1})
        t0 = time.monotonic()
        s, code = mqtt_connect(port, "patient", timeout=10)
        self.assertEqual(code, 0)  # the client only sees a slower CONNACK
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        s.close()
        self.assertEqual(metric(mport, 'mqttlb_backend_connect_failures_total{backend="hang"}'), 1)
        # With no other backend (and no retries left) the client gets 0x03 after the timeout.
        _, port2, mport2, _ = start_mqttlb(
            self, [hang_b], health={"enabled": False},
            balance={"backend_connect_timeout_ms": 300, "retries": 0})
        s, code = mqtt_connect(port2, "patient-2", timeout=10, expect_ok=False)
        self.assertEqual(code, 0x03)
        s.close()

    def test_unsupported_protocol_level_gets_connack(self):
        backends = start_backends(self, 1)
        _, port, mport, _ = start_mqttlb(self, backends)
        s = Sock(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        s.sendall(raw_connect_variant(level=6))
        first, body = read_packet(s)
        self.assertEqual((first, body[1]), (0x20, 0x84))  # 5.0 form: Unsupported Protocol Version
        self.assertTrue(is_closed(s, 5))
        s.close()
        s = Sock(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        s.sendall(raw_connect_variant(level=2))
        first, body = read_packet(s)
        self.assertEqual((first, bytes(body)), (0x20, b"\x00\x01"))  # 3.1.1: return code 0x01
        self.assertTrue(is_closed(s, 5))
        s.close()
        self.assertEqual(metric(mport, 'mqttlb_connections_rejected_total{reason="unsupported_level"}'), 2)

    def fill_to_limit(self, port, mport, limit, prefix):
        """Opens `limit` MQTT sessions, checks that one more TCP connection is
        closed at accept and counted once; returns the sessions."""
        held = [mqtt_connect(port, f"{prefix}-{i}")[0] for i in range(limit)]
        extra = Sock(socket.AF_INET, socket.SOCK_STREAM)
        extra.connect(("127.0.0.1", port))
        self.assertTrue(is_closed(extra, 5), f"connection {limit + 1} not closed at a limit of {limit}")
        extra.close()
        self.assertEqual(metric(mport, 'mqttlb_connections_rejected_total{reason="max_connections"}'), 1)
        return held

    def test_connection_limits_closed_at_accept_and_counted(self):
        backends = start_backends(self, 1)
        _, port, mport, _ = start_mqttlb(self, backends, limits={"max_connections": 3})
        held = self.fill_to_limit(port, mport, 3, "lim")
        held.pop().close()
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 2, 5, what="slot freed")
        s, code = mqtt_connect(port, "lim-again")  # a freed slot is usable again
        held.append(s)
        for h in held:
            h.close()

        _, port2, mport2, _ = start_mqttlb(self, backends, limits={"max_connections_per_ip": 2})
        held = [mqtt_connect(port2, f"ip-{i}")[0] for i in range(2)]
        # Over the per-address limit on a plain listener the CONNECT is cheap to
        # read: the client gets a CONNACK refusal, so it backs off (3.1.1 0x03,
        # 5.0 0x97 quota exceeded); a client that sends nothing is closed soon.
        for level, want in ((4, 0x03), (5, 0x97)):
            extra, code = mqtt_connect(port2, f"ip-extra-{level}", level=level, expect_ok=False)
            self.assertEqual(code, want)
            self.assertTrue(is_closed(extra, 5))
            extra.close()
        silent = Sock(socket.AF_INET, socket.SOCK_STREAM)
        silent.connect(("127.0.0.1", port2))
        self.assertTrue(is_closed(silent, 5), "3rd connection from one IP not closed")
        silent.close()
        wait_until(lambda: metric(
            mport2, 'mqttlb_connections_rejected_total{reason="max_connections_per_ip"}') == 3, 5,
            what="three per-address refusals counted")
        for h in held:
            h.close()

    def test_connection_limit_is_exported_and_follows_reloads(self):
        # The limit in force, derived or set, is a gauge next to
        # mqttlb_connections_active: operators alert before it is reached.
        backends = start_backends(self, 1)
        nofile = 1128  # derived limit: (open files - 128) / 2 = 500
        p, port, mport, path = start_mqttlb(
            self, backends, wrapper=["prlimit", f"--nofile={nofile}:{nofile}", "--"])
        p.wait_for_line(r"max_connections=500\b", 5)
        wait_until(lambda: metric(mport, "mqttlb_connections_limit") == 500, 5,
                   what="the derived limit exported")
        with open(path) as f:
            cfg = json.load(f)

        def reload(limits):
            cfg["limits"] = limits
            with open(path, "w") as f:
                json.dump(cfg, f)
            before = metric(mport, 'mqttlb_config_reloads_total{result="ok"}')
            p.signal(signal.SIGHUP)
            wait_until(lambda: metric(mport, 'mqttlb_config_reloads_total{result="ok"}') == before + 1,
                       5, what="reload applied")

        reload({"max_connections": 2, "shutdown_grace_ms": 1000})
        wait_until(lambda: metric(mport, "mqttlb_connections_limit") == 2, 5,
                   what="the configured limit exported after a reload")
        # The exported figure is the one admission enforces.
        held = self.fill_to_limit(port, mport, 2, "gauge")
        self.assertEqual(metric(mport, "mqttlb_connections_active"), 2)
        for h in held:
            h.close()
        reload({"shutdown_grace_ms": 1000})  # unset: derived again
        wait_until(lambda: metric(mport, "mqttlb_connections_limit") == 500, 5,
                   what="the derived limit back after the key is removed")


class CommandLine(harness.TestCase):
    def write(self, obj):
        path = os.path.join(self.tmpdir(), "c.json")
        with open(path, "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj))
        return path

    def test_check_and_version(self):
        lb = binary("mqttlb")
        ok = self.write({"listeners": [{"name": "m", "bind": "127.0.0.1:1883"}],
                         "backends": [{"name": "b", "address": "127.0.0.1:1884"}]})
        r = subprocess.run([lb, "--check", "-c", ok], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        bad = self.write({"listeners": [{"name": "m", "bind": "127.0.0.1:1883", "tls": {"cert": "a", "key": "b"}}],
                          "backends": [{"name": "b", "address": "127.0.0.1:70000", "wieght": 2}],
                          "balance": {"algorithm": "fastest"}})
        r = subprocess.run([lb, "--check", "-c", bad], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.strip().splitlines()
        self.assertIn("/backends/0/address: port 70000 out of range 1..65535", lines)
        self.assertIn("/backends/0/wieght: unknown key", lines)
        self.assertIn("/listeners/0/tls/cert: certificate 'a': No such file or directory "
                      "(calling fopen(a, r))", lines)
        self.assertTrue(any(l.startswith("/balance/algorithm: ") for l in lines), lines)
        self.assertEqual(len(lines), 4, lines)
        r = subprocess.run([lb, "-c", bad], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)  # running refuses the same config
        r = subprocess.run([lb, "--version"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^mqttlb \d+\.\d+\.\d+")

    def test_port_in_use_is_an_error(self):
        backends = start_backends(self, 1)
        _, port, _, _ = start_mqttlb(self, backends)
        cfg = self.write({"listeners": [{"name": "m", "bind": f"127.0.0.1:{port}"}],
                          "backends": [{"name": "b", "address": f"127.0.0.1:{backends[0][1]}"}],
                          "health": {"enabled": False}})
        # SO_REUSEPORT must not let a second instance silently share the port.
        r = subprocess.run([binary("mqttlb"), "-c", cfg], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"cannot bind 127.0.0.1:{port}: Address already in use", r.stderr)

    def test_sigterm_drains_then_exits_zero(self):
        backends = start_backends(self, 1)
        p, port, _, _ = start_mqttlb(self, backends, limits={"shutdown_grace_ms": 60000})
        s, _ = mqtt_connect(port, "drainer")
        p.signal(signal.SIGTERM)
        p.wait_for_line("stop accepting", 5)
        # No new connections are accepted...
        wait_until(lambda: not harness.port_open(port), 5, what="listener closed")
        # ...but the held session still works during the grace period.
        s.sendall(PINGREQ)
        self.assertEqual(read_packet(s)[0], 0xD0)
        s.close()  # the last session ends: mqttlb exits well before the 60 s grace
        p.p.wait(15)
        self.assertEqual(p.p.returncode, 0)

    def test_sigterm_grace_expiry_closes_sessions(self):
        backends = start_backends(self, 1)
        p, port, _, _ = start_mqttlb(self, backends, limits={"shutdown_grace_ms": 500})
        s, _ = mqtt_connect(port, "stubborn")
        p.signal(signal.SIGINT)
        self.assertTrue(is_closed(s, 10), "session not closed after the grace period")
        s.close()
        p.p.wait(15)
        self.assertEqual(p.p.returncode, 0)

    def test_sighup_reload_valid_and_invalid(self):
        backends = start_backends(self, 2)
        p, port, mport, path = start_mqttlb(self, backends[:1])
        with open(path) as f:
            cfg = json.load(f)
        with open(path, "w") as f:
            f.write('{"listeners": 1}')
        p.signal(signal.SIGHUP)
        p.wait_for_line(r"cannot be applied; keeping the running config", 5)
        s, code = mqtt_connect(port, "after-bad-reload")  # still serving the old config
        s.close()
        cfg["backends"] = [{"name": "b2", "address": f"127.0.0.1:{backends[1][1]}"}]
        with open(path, "w") as f:
            json.dump(cfg, f)
        p.signal(signal.SIGHUP)
        p.wait_for_line(r"reloaded", 5)
        # A backend added by a reload takes clients once its first check passes.
        wait_until(lambda: metric(mport, 'mqttlb_backend_up{backend="b2"}') == 1, 5,
                   what="reloaded backend up")
        s, _ = mqtt_connect(port, "after-good-reload")
        wait_until(lambda: metric(mport, 'mqttlb_backend_sessions_total{backend="b2"}') == 1, 5,
                   what="new connection placed on the reloaded backend")
        s.close()
        self.assertEqual(metric(mport, 'mqttlb_config_reloads_total{result="invalid"}'), 1)
        self.assertEqual(metric(mport, 'mqttlb_config_reloads_total{result="ok"}'), 1)
        self.assertNotIn("only after a restart", p.output())
        # The worker count applies too, without touching the session already open.
        held, _ = mqtt_connect(port, "held-across-worker-change")
        cfg["workers"] = 3
        with open(path, "w") as f:
            json.dump(cfg, f)
        p.signal(signal.SIGHUP)
        wait_until(lambda: metric(mport, 'mqttlb_workers{state="accepting"}') == 3, 5,
                   what="a third worker")
        for i in range(6):  # every worker serves
            c, code = mqtt_connect(port, f"after-worker-change-{i}")
            self.assertEqual(code, 0)
            c.close()
        held.sendall(b"\xc0\x00")
        self.assertEqual(read_packet(held)[0], 0xD0)
        held.close()


if __name__ == "__main__":
    harness.main()
