"""TLS in the balancer: TLS listeners (termination) and TLS to backends, with
real peers: mosquitto_pub/mosquitto_sub (--cafile), paho-mqtt (tls_set),
`openssl s_client` (chain, resumption), our broker and Debian's mosquitto
(also as a TLS backend). Certificates from tests/certs.sh via tls_certs.py."""
import json
import os
import signal
import socket
import ssl
import subprocess
import threading

import harness
from harness import binary, free_port, port_open, wait_until
from lb_helpers import (DISCONNECT, _stopped_cleanly, connect_packet, is_closed, metric, metrics,
                        mqtt_connect, paho_round_trip, read_packet,
                        subscribe_packet)
from tls_certs import make_certs

TIMEOUT = 15


def run(args, stdin=None, timeout=TIMEOUT):
    return subprocess.run(args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)


def tls_listener(name, port, cert, key, **extra):
    return {"name": name, "bind": f"127.0.0.1:{port}",
            "tls": dict({"cert": cert, "key": key}, **extra)}


def plain_listener(port):
    # start_mqttlb waits for "listening: mqtt on": keep a plain listener named mqtt.
    return {"name": "mqtt", "bind": f"127.0.0.1:{port}"}


def raw_subscriber(port, topic, cid):
    s, _ = mqtt_connect(port, cid)
    s.sendall(subscribe_packet(1, topic))
    first, _ = read_packet(s)
    assert first == 0x90, "expected SUBACK"
    return s


def read_publish(sock, topic, timeout=TIMEOUT):
    """Reads until a PUBLISH on `topic` arrives; returns its payload."""
    want = topic.encode()
    while True:
        first, body = read_packet(sock, timeout)
        if first >> 4 != 3:
            continue
        tlen = int.from_bytes(body[:2], "big")
        if body[2:2 + tlen] == want:
            return body[2 + tlen:]


def tls_failures(mport, listener, reason):
    return metric(mport, f'mqttlb_tls_handshake_failures_total{{listener="{listener}",'
                         f'reason="{reason}"}}')


class LbTls(harness.TestCase):
    def setUp(self):
        self.pki = make_certs(self.tmpdir())

    def start_lb(self, backends, listeners, **sections):
        """Like lb_helpers.start_mqttlb, with our own listeners (the first one a
        plain `mqtt`). Returns (proc, metrics_port, config_path)."""
        mport = free_port()
        cfg = {"listeners": listeners,
               "backends": [b if isinstance(b, dict) else
                            {"name": b[0], "address": f"127.0.0.1:{b[1]}"} for b in backends],
               "metrics": {"bind": f"127.0.0.1:{mport}"}, "workers": 2,
               "limits": {"shutdown_grace_ms": 1000}}
        for k, v in sections.items():
            cfg[k] = dict(cfg.get(k, {}), **v) if isinstance(v, dict) else v
        path = os.path.join(self.tmpdir(), "mqttlb.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.last_config = path
        p = self.spawn([binary("mqttlb"), "-c", path], name="mqttlb")
        self.addCleanup(_stopped_cleanly, self, p)  # runs before spawn's own stop
        for l in listeners:
            p.wait_for_line(rf"listening: {l['name']} on", 20)
        wait_until(lambda: all(port_open(int(l["bind"].rsplit(":", 1)[1])) for l in listeners),
                   10, what="mqttlb ports")
        # The probe connections count until mqttlb sees their EOF (TLS listeners
        # count them as handshake failures with reason "closed").
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 0, 10,
                   what="probe connections released")
        return p, mport, path

    # ------------------------------------------------------------ clients
    def check_clients(self, backend_port, kind):
        """mosquitto_sub/pub (3.1.1 and 5.0) and paho over TLS through mqttlb to one broker."""
        pki = self.pki
        tport = free_port()
        proc, mport, path = self.start_lb(
            [("b1", backend_port)],
            [plain_listener(free_port()),
             tls_listener("mqtts", tport, pki["server.crt"], pki["server.key"])])
        tls_args = ["-h", "localhost", "-p", str(tport), "--cafile", pki["ca.crt"]]
        for v in ("mqttv311", "mqttv5"):
            topic = f"tls/{kind}/{v}"
            # Subscriber through TLS: a retained message published directly on
            # the broker reaches it as soon as it has subscribed.
            r = run(["mosquitto_pub", "-p", str(backend_port), "-t", topic, "-m", f"ret-{v}",
                     "-r", "-V", v])
            self.assertEqual(r.returncode, 0, r.stdout)
            r = run(["mosquitto_sub", *tls_args, "-t", topic, "-C", "1", "-W", "10", "-V", v,
                     "-i", f"sub-{kind}-{v}"])
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertEqual(r.stdout.decode().strip(), f"ret-{v}")
            run(["mosquitto_pub", "-p", str(backend_port), "-t", topic, "-n", "-r"])
            # Publisher through TLS, seen by a plain subscriber on the broker itself.
            sub = raw_subscriber(backend_port, topic + "/p", f"raw-{kind}-{v}")
            r = run(["mosquitto_pub", *tls_args, "-t", topic + "/p", "-m", f"hello-{v}", "-V", v,
                     "-i", f"pub-{kind}-{v}"])
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertEqual(read_publish(sub, topic + "/p"), f"hello-{v}".encode())
            sub.close()

        # 600 KB each way over TLS (many records, partial reads, backpressure).
        big = os.path.join(self.tmpdir(), "big.bin")
        payload = bytes((i * 7) % 251 for i in range(600_000))
        with open(big, "wb") as f:
            f.write(payload)
        sub = raw_subscriber(backend_port, "tls/big", f"raw-big-{kind}")
        r = run(["mosquitto_pub", *tls_args, "-t", "tls/big", "-f", big, "-q", "1"])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(read_publish(sub, "tls/big"), payload)
        sub.close()
        r = run(["mosquitto_pub", "-p", str(backend_port), "-t", "tls/bigret", "-f", big, "-r"])
        self.assertEqual(r.returncode, 0, r.stdout)
        r = run(["mosquitto_sub", *tls_args, "-t", "tls/bigret", "-C", "1", "-W", "10", "-N"])
        self.assertEqual(r.returncode, 0, r.stdout[-500:])
        self.assertEqual(r.stdout, payload)
        run(["mosquitto_pub", "-p", str(backend_port), "-t", "tls/bigret", "-n", "-r"])

        # A graceful end sends close_notify: after DISCONNECT the broker closes,
        # and the client sees a clean TLS EOF, not a truncation.
        ctx = ssl.create_default_context(cafile=pki["ca.crt"])
        raw = socket.create_connection(("127.0.0.1", tport), timeout=TIMEOUT)
        s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        s.sendall(connect_packet(f"cn-{kind}"))
        self.assertEqual(read_packet(s)[0], 0x20)
        s.sendall(DISCONNECT)
        s.settimeout(TIMEOUT)
        self.assertEqual(s.recv(100), b"")  # SSLEOFError without close_notify
        s.close()

        # paho-mqtt with tls_set: a round trip on one connection.
        _, got = paho_round_trip(tport, f"paho-{kind}", "tls/paho", b"via-paho",
                                 ca=pki["ca.crt"], host="localhost", timeout=TIMEOUT,
                                 what="paho round trip over TLS")
        self.assertEqual(got[0], b"via-paho")
        self.assertGreaterEqual(
            metric(mport, 'mqttlb_tls_handshakes_total{listener="mqtts",resumed="false"}'), 5)
        self.assertGreaterEqual(
            metric(mport, 'mqttlb_tls_handshake_duration_seconds_count{listener="mqtts"}'), 5)
        return tport, mport, proc, path

    def test_clients_to_our_broker(self):
        if not os.path.exists(binary("mqttlb-broker")):
            self.skipTest("mqttlb-broker not built")
        _, bport = self.start_our_broker(name="ours")
        self.check_clients(bport, "ours")

    def test_clients_to_mosquitto_and_resumption(self):
        _, bport = self.start_mosquitto()
        tport, mport, proc, path = self.check_clients(bport, "mosq")
        # openssl s_client: verified handshake, then a resumed one. stdin is a
        # CONNECT + DISCONNECT so the session ends by itself after the broker
        # answered (the TLS 1.3 ticket arrives after the handshake).
        sess = os.path.join(self.tmpdir(), "sess.pem")
        mqtt_in = connect_packet("sclient-1") + DISCONNECT
        base = ["openssl", "s_client", "-connect", f"127.0.0.1:{tport}", "-CAfile",
                self.pki["ca.crt"], "-verify_return_error", "-ign_eof"]
        r = run(base + ["-sess_out", sess], stdin=mqtt_in)
        out = r.stdout.decode(errors="replace")
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertIn("New, TLSv1.3", out)
        r = run(base + ["-sess_in", sess], stdin=connect_packet("sclient-2") + DISCONNECT)
        out = r.stdout.decode(errors="replace")
        self.assertIn("Reused, TLSv1.3", out)
        self.assertEqual(
            metric(mport, 'mqttlb_tls_handshakes_total{listener="mqtts",resumed="true"}'), 1)

        # SIGHUP with another certificate (RSA instead of EC): new handshakes
        # get it, and the ticket issued before the reload still resumes.
        with open(path) as f:
            cfg = json.load(f)
        cfg["listeners"][1]["tls"] = {"cert": self.pki["rsa-server.crt"],
                                      "key": self.pki["rsa-server.key"]}
        with open(path, "w") as f:
            json.dump(cfg, f)
        proc.signal(signal.SIGHUP)
        wait_until(lambda: metric(mport, 'mqttlb_config_reloads_total{result="ok"}') == 1, 10,
                   what="reload")
        r = run(base, stdin=connect_packet("sclient-3") + DISCONNECT)
        out = r.stdout.decode(errors="replace")
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertIn("Server public key is 2048 bit", out)
        r = run(base + ["-sess_in", sess], stdin=connect_packet("sclient-4") + DISCONNECT)
        self.assertIn("Reused, TLSv1.3", r.stdout.decode(errors="replace"))

    def test_reload_requiring_client_certs_is_not_bypassed_by_resumption(self):
        """A ticket issued while client certificates were not required must not
        resume after a reload that sets verify_client: required (the session
        id context and ticket keys change with the CA and verify mode)."""
        pki = self.pki
        _, bport = self.start_mosquitto()
        tport = free_port()
        proc, mport, path = self.start_lb(
            [("b1", bport)],
            [plain_listener(free_port()),
             tls_listener("mqtts", tport, pki["server.crt"], pki["server.key"])])
        sess = os.path.join(self.tmpdir(), "sess.pem")
        base = ["openssl", "s_client", "-connect", f"127.0.0.1:{tport}", "-CAfile",
                pki["ca.crt"], "-verify_return_error", "-ign_eof"]
        r = run(base + ["-sess_out", sess], stdin=connect_packet("before") + DISCONNECT)
        self.assertIn("New, TLSv1.3", r.stdout.decode(errors="replace"))
        sessions = 'mqttlb_backend_sessions_total{backend="b1"}'
        wait_until(lambda: metric(mport, sessions) == 1, 10, what="first session placed")

        with open(path) as f:
            cfg = json.load(f)
        cfg["listeners"][1]["tls"] = {"cert": pki["server.crt"], "key": pki["server.key"],
                                      "ca": pki["ca.crt"], "verify_client": "required"}
        with open(path, "w") as f:
            json.dump(cfg, f)
        proc.signal(signal.SIGHUP)
        wait_until(lambda: metric(mport, 'mqttlb_config_reloads_total{result="ok"}') == 1, 10,
                   what="reload")
        r = run(base + ["-sess_in", sess], stdin=connect_packet("resumer") + DISCONNECT)
        out = r.stdout.decode(errors="replace")
        self.assertNotIn("Reused", out, "a pre-reload ticket bypassed verify_client: required")
        wait_until(lambda: tls_failures(mport, "mqtts", "no_client_cert") == 1, 10,
                   what="the handshake without a certificate counted as refused")
        self.assertEqual(metric(mport, sessions), 1, "a client without a certificate got through")
        # With a certificate: a full handshake, and the client is placed.
        r = run(base + ["-sess_in", sess, "-cert", pki["client.crt"], "-key", pki["client.key"]],
                stdin=connect_packet("with-cert") + DISCONNECT)
        out = r.stdout.decode(errors="replace")
        self.assertIn("New, TLSv1.3", out)
        wait_until(lambda: metric(mport, sessions) == 2, 10, what="certified client placed")

    # ------------------------------------------------------------ chain, client certs, refusals
    def test_chain_client_certs_and_refusals(self):
        pki = self.pki
        _, bport = self.start_mosquitto()
        pport, cport, rport = free_port(), free_port(), free_port()
        _, mport, _ = self.start_lb(
            [("b1", bport)],
            [plain_listener(pport),
             tls_listener("chain", cport, pki["chain-server.crt"], pki["chain-server.key"]),
             tls_listener("req", rport, pki["server.crt"], pki["server.key"], ca=pki["ca.crt"],
                          verify_client="required")],
            limits={"connect_timeout_ms": 1500})
        # Full chain: the client knows only the root.
        r = run(["mosquitto_pub", "-h", "localhost", "-p", str(cport), "--cafile", pki["ca.crt"],
                 "-t", "tls/chain", "-m", "x", "-V", "mqttv5"])
        self.assertEqual(r.returncode, 0, r.stdout)

        sessions = 'mqttlb_backend_sessions_total{backend="b1"}'
        before = metric(mport, sessions)
        # verify_client required: refused without a certificate, counted.
        r = run(["mosquitto_pub", "-h", "localhost", "-p", str(rport), "--cafile", pki["ca.crt"],
                 "-t", "tls/req", "-m", "x"])
        self.assertNotEqual(r.returncode, 0, r.stdout)
        wait_until(lambda: tls_failures(mport, "req", "no_client_cert") == 1, 5,
                   what="no_client_cert counted")
        wait_until(lambda: metric(mport, 'mqttlb_connections_rejected_total{reason='
                                         '"tls_handshake"}') >= 1, 5, what="rejected counted")
        # A certificate from another CA: refused too.
        r = run(["mosquitto_pub", "-h", "localhost", "-p", str(rport), "--cafile", pki["ca.crt"],
                 "--cert", pki["other-client.crt"], "--key", pki["other-client.key"],
                 "-t", "tls/req", "-m", "x"])
        self.assertNotEqual(r.returncode, 0, r.stdout)
        wait_until(lambda: tls_failures(mport, "req", "unknown_ca") == 1, 5,
                   what="unknown_ca counted")
        self.assertEqual(metric(mport, sessions), before)
        # With a client certificate: served.
        sub = raw_subscriber(bport, "tls/req", "raw-req")
        r = run(["mosquitto_pub", "-h", "localhost", "-p", str(rport), "--cafile", pki["ca.crt"],
                 "--cert", pki["client.crt"], "--key", pki["client.key"],
                 "-t", "tls/req", "-m", "with-cert"])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(read_publish(sub, "tls/req"), b"with-cert")
        sub.close()
        before = metric(mport, sessions)

        # Plain MQTT on the TLS port: closed, counted, no backend touched.
        s = socket.create_connection(("127.0.0.1", cport), timeout=5)
        s.sendall(connect_packet("plain-on-tls"))
        self.assertTrue(is_closed(s, 5))
        s.close()
        wait_until(lambda: tls_failures(mport, "chain", "not_tls") == 1, 5,
                   what="not_tls counted")
        # HTTP on the TLS port.
        s = socket.create_connection(("127.0.0.1", cport), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(is_closed(s, 5))
        s.close()
        wait_until(lambda: tls_failures(mport, "chain", "http_request") == 1, 5,
                   what="http_request counted")
        # A silent client: the handshake times out with connect_timeout_ms.
        s = socket.create_connection(("127.0.0.1", cport), timeout=5)
        self.assertTrue(is_closed(s, 10))
        s.close()
        wait_until(lambda: tls_failures(mport, "chain", "timeout") == 1, 5,
                   what="timeout counted")
        # A TLS ClientHello on the plain port: closed as not_connect (as before).
        ctx = ssl.create_default_context(cafile=pki["ca.crt"])
        s = socket.create_connection(("127.0.0.1", pport), timeout=5)
        with self.assertRaises((ssl.SSLError, OSError)):
            ctx.wrap_socket(s, server_hostname="localhost")
        s.close()
        wait_until(lambda: metric(mport, 'mqttlb_connections_rejected_total{reason='
                                         '"not_connect"}') >= 1, 5, what="not_connect counted")
        self.assertEqual(metric(mport, sessions), before)

    def test_backend_tls_after_proxy_header(self):
        """PROXY header in plaintext first, then TLS (HAProxy send-proxy + ssl),
        against a Python TLS backend that checks the order; the second
        connection resumes the first one's TLS session."""
        pki = self.pki
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(pki["server.crt"], pki["server.key"])
        srv = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(srv.close)
        srv.settimeout(TIMEOUT)
        seen = {"reused": []}

        def serve_one():
            c, _ = srv.accept()
            c.settimeout(TIMEOUT)
            line = b""
            while not line.endswith(b"\r\n") and len(line) < 108:
                b = c.recv(1)
                if not b:
                    break
                line += b
            seen["proxy"] = line
            t = sctx.wrap_socket(c, server_side=True)
            seen["tls"] = t.version()
            seen["reused"].append(t.session_reused)
            seen["first"] = read_packet(t)[0]
            t.sendall(b"\x20\x02\x00\x00")  # CONNACK accepted
            try:
                t.recv(100)
            except OSError:
                pass
            t.close()

        def serve():
            try:
                for _ in range(2):
                    serve_one()
            except Exception as e:  # reported by the assertions below
                seen["error"] = repr(e)

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        pport = free_port()
        self.start_lb(
            [{"name": "px", "address": f"127.0.0.1:{srv.getsockname()[1]}",
              "proxy_protocol": "v1", "tls": {"ca": pki["ca.crt"], "sni": "localhost"}}],
            [plain_listener(pport)], health={"enabled": False})
        for i in range(2):
            c, code = mqtt_connect(pport, f"proxied-{i}")
            self.assertEqual(code, 0)
            c.close()
            wait_until(lambda: len(seen["reused"]) > i or "error" in seen, TIMEOUT,
                       what="backend connection")
        th.join(TIMEOUT)
        self.assertNotIn("error", seen, seen)
        self.assertRegex(seen["proxy"].decode(), r"^PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ "
                                                 rf"{pport}\r\n$")
        self.assertEqual(seen["tls"], "TLSv1.3")
        self.assertEqual(seen["first"], 0x10)
        self.assertEqual(seen["reused"], [False, True])

    # ------------------------------------------------------------ --check
    def test_check_reports_bad_files(self):
        pki = self.pki
        d = self.tmpdir()
        missing = os.path.join(d, "missing.crt")
        cfg = {
            "listeners": [
                {"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"},
                tls_listener("a", free_port(), missing, pki["server.key"]),
                tls_listener("b", free_port(), pki["server.crt"], pki["client.key"]),
                tls_listener("c", free_port(), pki["server.crt"], pki["server.key"],
                             ca=os.path.join(d, "no-ca.crt"), verify_client="required"),
            ],
            "backends": [{"name": "b1", "address": "127.0.0.1:1",
                          "tls": {"ca": os.path.join(d, "no-backend-ca.crt")}}],
        }
        path = os.path.join(d, "bad.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = run([binary("mqttlb"), "--check", "-c", path])
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 1, out)
        self.assertRegex(out, rf"/listeners/1/tls/cert: certificate '{missing}': .*No such file")
        self.assertRegex(out, r"/listeners/2/tls/cert: private key '.*client.key' does not match "
                              r"certificate '.*server.crt'")
        self.assertRegex(out, r"/listeners/3/tls/ca: client CA '.*no-ca.crt'")
        self.assertRegex(out, r"/backends/0/tls/ca: CA '.*no-backend-ca.crt'")
        # The same files, fixed: valid.
        cfg["listeners"] = cfg["listeners"][:1] + [
            tls_listener("a", free_port(), pki["chain-server.crt"], pki["chain-server.key"],
                         ca=pki["ca.crt"], verify_client="optional")]
        cfg["backends"][0]["tls"] = {"ca": pki["ca.crt"], "sni": "localhost",
                                     "cert": pki["client.crt"], "key": pki["client.key"]}
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = run([binary("mqttlb"), "--check", "-c", path])
        self.assertEqual(r.returncode, 0, r.stdout)

    # ------------------------------------------------------------ TLS to backends
    def test_backend_tls(self):
        pki = self.pki
        mosq_tls = f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"
        _, good = self.start_mosquitto(extra_conf=mosq_tls)
        _, bad = self.start_mosquitto(extra_conf=mosq_tls)
        tport = free_port()
        _, mport, _ = self.start_lb(
            [{"name": "good", "address": f"127.0.0.1:{good}", "tls": {"ca": pki["ca.crt"]}},
             {"name": "bad", "address": f"127.0.0.1:{bad}",
              "tls": {"ca": pki["other-ca.crt"], "sni": "localhost"}}],
            [plain_listener(free_port()),
             tls_listener("mqtts", tport, pki["server.crt"], pki["server.key"])],
            health={"interval_ms": 500, "timeout_ms": 500, "rise": 1, "fall": 1},
            balance={"algorithm": "round-robin", "affinity": "none"})
        wait_until(lambda: metric(mport, 'mqttlb_backend_up{backend="good"}') == 1, 10,
                   what="good backend up over TLS")
        wait_until(lambda: metric(mport, 'mqttlb_health_check_failures_total{backend="bad",'
                                         'reason="tls"}') >= 1, 10, what="bad backend TLS failure")
        self.assertEqual(metric(mport, 'mqttlb_backend_up{backend="bad"}'), 0)
        # TLS on both sides: paho -> mqttlb (TLS) -> mosquitto (TLS).
        _, got = paho_round_trip(tport, "paho-backend-tls", "tls/backend", b"both-ways",
                                 ca=pki["ca.crt"], host="localhost", timeout=TIMEOUT,
                                 what="round trip over TLS to a TLS backend")
        self.assertEqual(got[0], b"both-ways")
        # Several clients: all served by the good backend, none sent to the bad one.
        for i in range(6):
            r = run(["mosquitto_pub", "-h", "localhost", "-p", str(tport), "--cafile",
                     pki["ca.crt"], "-t", "tls/backend", "-m", str(i), "-i", f"pub-{i}"])
            self.assertEqual(r.returncode, 0, r.stdout)
        m = metrics(mport)
        self.assertEqual(m['mqttlb_backend_sessions_total{backend="good"}'], 7)
        self.assertEqual(m['mqttlb_backend_sessions_total{backend="bad"}'], 0)
        self.assertEqual(m['mqttlb_backend_connect_failures_total{backend="bad"}'], 0)

    def test_reload_rereads_backend_tls_files_for_health_checks_too(self):
        """The backend's CA bundle is fixed in place (same path, new content) and
        mqttlb reloaded: health checks rebuild their TLS context like the data
        path does, so the backend comes back up and serves clients."""
        pki = self.pki
        mosq_tls = f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"
        _, bport = self.start_mosquitto(extra_conf=mosq_tls)
        ca = os.path.join(self.tmpdir(), "backend-ca.pem")
        with open(pki["other-ca.crt"]) as src, open(ca, "w") as dst:
            dst.write(src.read())  # the wrong CA: the broker cannot be verified
        proc, mport, _ = self.start_lb(
            [{"name": "b1", "address": f"127.0.0.1:{bport}", "tls": {"ca": ca, "sni": "localhost"}}],
            [plain_listener(free_port())],
            health={"interval_ms": 300, "timeout_ms": 300, "rise": 1, "fall": 1})
        wait_until(lambda: metric(mport, 'mqttlb_health_check_failures_total{backend="b1",'
                                         'reason="tls"}') >= 2, 10, what="TLS check failures")
        self.assertEqual(metric(mport, 'mqttlb_backend_up{backend="b1"}'), 0)
        with open(pki["ca.crt"]) as src, open(ca, "w") as dst:
            dst.write(src.read())
        proc.signal(signal.SIGHUP)
        wait_until(lambda: metric(mport, 'mqttlb_config_reloads_total{result="ok"}') == 1, 10,
                   what="reload")
        wait_until(lambda: metric(mport, 'mqttlb_backend_up{backend="b1"}') == 1, 10,
                   what="backend up after its CA file was fixed")
        port = int(json.load(open(self.last_config))["listeners"][0]["bind"].rsplit(":", 1)[1])
        s, code = mqtt_connect(port, "after-ca-fix")
        self.assertEqual(code, 0)
        s.close()


if __name__ == "__main__":
    harness.main()
