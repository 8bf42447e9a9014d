"""MQTT over WebSocket (listener `websocket`): paho-mqtt over ws:// and wss://
in both to_backend modes (plain MQTT to the brokers, or WebSocket to Debian
mosquitto's websockets listeners), affinity across ws and TCP, a refusal
CONNACK that arrives framed, hostile clients (garbage, oversize, wrong path,
no Upgrade, unmasked frames, slowloris, byte-by-byte frames, many frames in one
write), a reload of the websocket settings, and bytes out = bytes in for a
large random stream through both modes."""
import signal
import socket
import time

import harness
from harness import free_port, wait_until
from lb_helpers import connect_packet, metric, metrics, start_mqttlb
from stream_peers import CONNACK_OK, ScriptedBroker, random_packets, rng_for, segments, pump
from tls_certs import make_certs
from ws_peers import (OP_CLOSE, OP_PONG, OP_PING, WsBroker, decode, frame, frames,
                      paho_ws_round_trip, read_frames_until, read_head, upgrade_request, ws_open)

CLIENT_HS = 'mqttlb_websocket_handshakes_total{result="%s",side="client"}'


def listeners(pki, port=None):
    def ws(name, mode, tls=False):
        l = {"name": name, "bind": f"127.0.0.1:{free_port()}",
             "websocket": {"path": "/mqtt", "to_backend": mode}}
        if tls:
            l["tls"] = {"cert": pki["server.crt"], "key": pki["server.key"]}
        return l
    return [{"name": "mqtt", "bind": f"127.0.0.1:{port or free_port()}"},
            ws("ws", "mqtt"), ws("wss", "mqtt", True),
            ws("ws-ws", "websocket"), ws("wss-ws", "websocket", True)]


def port_of(cfg_listeners, name):
    for l in cfg_listeners:
        if l["name"] == name:
            return int(l["bind"].rsplit(":", 1)[1])
    raise KeyError(name)


class WebSocket(harness.TestCase):
    def setUp(self):
        self.pki = make_certs(self.tmpdir())

    def mosquittos(self, n=2):
        out = []
        for i in range(n):
            wsp = free_port()
            _, port = self.start_mosquitto(extra_conf=f"listener {wsp} 127.0.0.1\n"
                                                      "protocol websockets")
            out.append({"name": f"b{i + 1}", "address": f"127.0.0.1:{port}",
                        "websocket_port": wsp})
        return out

    def lb(self, backends, **kw):
        ls = kw.pop("listeners", None) or listeners(self.pki)
        lb, port, mport, path = start_mqttlb(self, backends, listeners=ls, **kw)
        return lb, ls, mport, path

    def test_paho_round_trip_ws_and_wss_both_modes(self):
        _, ls, mport, _ = self.lb(self.mosquittos())
        for name in ("ws", "wss", "ws-ws", "wss-ws"):
            ca = self.pki["ca.crt"] if name.startswith("wss") else None
            rc, got = paho_ws_round_trip(port_of(ls, name), f"paho-{name}", f"t/{name}",
                                         b"over " + name.encode(), ca=ca)
            self.assertEqual(rc, 0, name)
            self.assertEqual(got, [b"over " + name.encode()], name)
        self.assertEqual(metric(mport, CLIENT_HS % "ok"), 4)
        self.assertEqual(
            metric(mport, 'mqttlb_websocket_handshakes_total{result="ok",side="backend"}'), 2)

    def test_affinity_same_broker_over_ws_and_tcp(self):
        # round-robin: without affinity the same id would land elsewhere.
        _, ls, mport, _ = self.lb(self.mosquittos(), balance={"algorithm": "round-robin"})

        def placed_on(fn):
            before = metrics(mport)
            fn()
            after = metrics(mport)
            moved = [k for k in after if k.startswith("mqttlb_backend_sessions_total")
                     and after[k] > before.get(k, 0)]
            self.assertEqual(len(moved), 1, moved)
            return moved[0]

        cid = "device-affine"
        first = placed_on(lambda: paho_ws_round_trip(port_of(ls, "ws"), cid, "a/1", b"x"))
        for _ in range(2):  # spread the others: leastconn would choose differently
            placed_on(lambda: paho_ws_round_trip(port_of(ls, "ws"), f"o-{time.time()}", "a/2",
                                                 b"y"))
        from lb_helpers import paho_round_trip
        self.assertEqual(placed_on(lambda: paho_round_trip(port_of(ls, "mqtt"), cid, "a/3",
                                                           b"z")), first)
        self.assertEqual(placed_on(lambda: paho_ws_round_trip(port_of(ls, "wss-ws"), cid, "a/4",
                                                              b"w", ca=self.pki["ca.crt"])),
                         first)

    def test_refusal_connack_is_framed(self):
        dead = {"name": "dead", "address": f"127.0.0.1:{free_port()}",
                "websocket_port": free_port()}
        _, ls, mport, _ = self.lb([dead], health={"enabled": False},
                                  balance={"retries": 0})
        s, rest = ws_open(port_of(ls, "ws"))
        s.sendall(frame(connect_packet("refused-1")))
        data, ops, closed = read_frames_until(
            s, lambda d, o: any(isinstance(x, tuple) and x[0] == OP_CLOSE for x in o), rest)
        self.assertEqual(data, b"\x20\x02\x00\x03")  # 3.1.1: server unavailable, in a frame
        self.assertIn((OP_CLOSE, b"\x03\xe8"), ops)
        s.close()

    def test_hostile_handshakes(self):
        backends = self.mosquittos(1)
        _, ls, mport, _ = self.lb(backends, limits={"connect_timeout_ms": 1500})
        port = port_of(ls, "ws")

        def answer(req, timeout=5.0):
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            s.sendall(req)
            status, hdrs, body = read_head(s, timeout)
            s.settimeout(timeout)
            while True:  # the page, then our FIN
                d = s.recv(4096)
                if not d:
                    break
                body += d
            s.close()
            return status, hdrs, body

        st, _, body = answer(b"\x16\x03\x01garbage that is not http\r\n\r\n")
        self.assertTrue(st.startswith("HTTP/1.1 400"), st)
        st, _, _ = answer(upgrade_request(extra="Cookie: " + "c" * 20000 + "\r\n"))
        self.assertTrue(st.startswith("HTTP/1.1 431"), st)
        st, _, body = answer(upgrade_request("/wrong"))
        self.assertTrue(st.startswith("HTTP/1.1 404"), st)
        self.assertNotIn(b"/wrong", body)  # never echoed
        st, hdrs, _ = answer(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(st.startswith("HTTP/1.1 426"), st)
        self.assertEqual(hdrs.get("upgrade"), "websocket")
        st, _, _ = answer(upgrade_request(protocol="graphql-ws"))
        self.assertTrue(st.startswith("HTTP/1.1 400"), st)

        # Slowloris: a byte every 100 ms never completes the request in time.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0, closed_at = time.monotonic(), None
        s.settimeout(0.1)
        for b in upgrade_request(extra="X-Slow: " + "s" * 200 + "\r\n"):
            try:
                s.send(bytes([b]))
                if s.recv(100) == b"":
                    closed_at = time.monotonic() - t0
                    break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - t0
                break
            if time.monotonic() - t0 > 8:
                break
        s.close()
        self.assertIsNotNone(closed_at, "slowloris was never closed")
        self.assertGreater(closed_at, 1.2)
        self.assertLess(closed_at, 4.0)

        wait_until(lambda: metric(mport, CLIENT_HS % "timeout") == 1, 5, what="timeout counted")
        for result, n in (("bad_request", 1), ("too_large", 1), ("not_found", 1),
                          ("upgrade_required", 1), ("bad_subprotocol", 1)):
            self.assertEqual(metric(mport, CLIENT_HS % result), n, result)
        self.assertEqual(
            metric(mport, 'mqttlb_connections_rejected_total{reason="websocket"}'), 5)

    def test_hostile_frames_and_splits(self):
        _, ls, mport, _ = self.lb(self.mosquittos(1))
        port = port_of(ls, "ws")
        # Unmasked client frame: Close 1002, then closed; nothing reached a broker.
        s, rest = ws_open(port)
        s.sendall(frame(connect_packet("unmasked"), mask=False))
        _, ops, closed = read_frames_until(s, lambda d, o: False, rest)
        self.assertTrue(closed)
        self.assertIn((OP_CLOSE, b"\x03\xea"), ops)
        s.close()
        # Text frame [MQTT-6.0.0-1]: Close 1003.
        s, rest = ws_open(port)
        s.sendall(frame(connect_packet("text"), op=1))
        _, ops, closed = read_frames_until(s, lambda d, o: False, rest)
        self.assertIn((OP_CLOSE, b"\x03\xeb"), ops)
        s.close()
        self.assertEqual(
            metric(mport, 'mqttlb_websocket_protocol_errors_total{reason="mask",side="client"}'), 1)

        sub = b"\x82\x08\x00\x01\x00\x03a/b\x01"
        pub = b"\x30\x08\x00\x03a/bhey"
        want = lambda d, o: d.endswith(b"a/bhey")
        # Byte by byte: the request and every frame, one byte per write.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = upgrade_request() + frame(connect_packet("bytewise")) + frame(sub, fin=False) + \
            frame(b"p", OP_PING) + frame(b"", 0, fin=False) + frame(pub, 0)
        for b in wire:
            s.send(bytes([b]))
        _, _, body = read_head(s)
        data, ops, _ = read_frames_until(s, want, body)
        self.assertTrue(data.startswith(CONNACK_OK), data)
        self.assertIn((OP_PONG, b"p"), ops)
        s.close()
        # Many tiny frames in one write, pipelined right behind the request.
        rng = rng_for(14)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(upgrade_request() + frames(connect_packet("pipelined") + sub + pub, rng, 3))
        _, _, body = read_head(s)
        data, _, _ = read_frames_until(s, want, body)
        self.assertTrue(data.startswith(CONNACK_OK), data)
        s.close()

    def test_reload_changes_the_path_for_new_connections_only(self):
        import json
        backends = self.mosquittos(1)
        lb, ls, mport, path = self.lb(backends)
        port = port_of(ls, "ws")
        kept, rest = ws_open(port)
        kept.sendall(frame(connect_packet("kept")))
        read_frames_until(kept, lambda d, o: d.startswith(CONNACK_OK), rest)
        with open(path) as f:
            cfg = json.load(f)
        for l in cfg["listeners"]:
            if l["name"] == "ws":
                l["websocket"]["path"] = "/v2/mqtt"
        with open(path, "w") as f:
            json.dump(cfg, f)
        lb.signal(signal.SIGHUP)
        wait_until(lambda: metric(mport, 'mqttlb_config_reloads_total{result="ok"}') == 1, 10,
                   what="reload")
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(upgrade_request("/mqtt"))
        self.assertTrue(read_head(s)[0].startswith("HTTP/1.1 404"))
        s.close()
        rc, got = paho_ws_round_trip(port, "new-path", "r/1", b"v2", path="/v2/mqtt")
        self.assertEqual(got, [b"v2"])
        # The session from before the reload still works.
        kept.sendall(frame(b"\xc0\x00"))  # PINGREQ
        data, _, _ = read_frames_until(kept, lambda d, o: d.endswith(b"\xd0\x00"))
        kept.close()

    def _stream(self, port, cid, broker_result, broker_expect, rng, mode):
        c2b = b"".join(random_packets(rng, 300, 3000))
        b2c = b"".join(random_packets(rng, 300, 3000, to_broker=False))
        broker_expect(cid, b2c)
        connect = connect_packet(cid)
        s, rest = ws_open(port)
        got = bytearray(rest)
        wire = frames(connect + c2b, rng, 9000) + frame(b"\x03\xe8", OP_CLOSE)
        pump(s, segments(rng, wire, mode), lambda d: got.extend(d), time.monotonic() + 30)
        s.close()
        data, ops, _ = decode(got)
        self.assertEqual(data, CONNACK_OK + b2c, f"client got {len(data)} bytes")
        return connect + c2b, broker_result(cid)

    def test_bytes_out_equal_bytes_in_both_modes(self):
        rng = rng_for(6455)
        tcp = ScriptedBroker(self)
        wsb = WsBroker(self)
        ls = listeners(self.pki)
        backends = [{"name": "scripted", "address": f"127.0.0.1:{tcp.port}",
                     "websocket_port": wsb.port}]
        _, ls, mport, _ = self.lb(backends, listeners=ls, health={"enabled": False})

        def seg(cid, b2c):  # the broker's reply cut into TCP writes of random sizes
            tcp.expect(cid, segments(rng, b2c, "random"))

        for mode in ("random", "one"):
            sent, got = self._stream(port_of(ls, "ws"), f"tcp-{mode}", tcp.result, seg, rng, mode)
            self.assertEqual(got, sent)

        def wseg(cid, b2c):  # as frames of random sizes
            wsb.expect(cid, [frames(b2c, rng, 5000, mask=False)])

        sent, (got, ops) = self._stream(port_of(ls, "ws-ws"), "ws-random", wsb.result, wseg, rng,
                                        "random")
        self.assertEqual(got, sent)
        self.assertTrue(all(o == 2 or o == 0 or (isinstance(o, tuple) and o[0] in (8, 9, 10))
                            for o in ops))
        status, hdrs = wsb.requests[-1]
        self.assertEqual(status, "GET /mqtt HTTP/1.1")
        self.assertEqual(hdrs.get("x-forwarded-for"), "127.0.0.1")
        self.assertEqual(hdrs.get("sec-websocket-protocol"), "mqtt")


if __name__ == "__main__":
    harness.main()
