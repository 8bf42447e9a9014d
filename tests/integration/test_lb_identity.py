"""Device identity from the client certificate (listener tls.identity):
`match` refuses a device that poses as another with its own valid certificate
(CONNACK 0x02 / 5.0 0x85, never reaching a broker); `rewrite` replaces the
client id in the CONNECT by the certificate's identity (every other byte as
sent); identities from the CN, a DNS SAN or a URI SAN; affinity is keyed by
the identity; brokers behind PROXY v2 get the CN in the SSL TLV."""
import socket
import ssl
import struct
import threading

import harness
from harness import free_port, port_open, wait_until
from lb_helpers import connect_packet, metric, read_packet, start_mqttlb
from stream_peers import CONNACK_OK, ScriptedBroker, client_id_of, first_packet_len
from tls_certs import make_certs


class ProxyV2Broker:
    """Reads a PROXY v2 header and the CONNECT, answers CONNACK 0, records the
    CN of the header's SSL TLV and the client id."""

    def __init__(self, tc):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.seen = []
        tc.addCleanup(self.srv.close)
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(10)
        buf = b""
        try:
            while len(buf) < 16:
                buf += c.recv(4096)
            hlen = 16 + struct.unpack("!H", buf[14:16])[0]
            while len(buf) < hlen or first_packet_len(buf[hlen:]) is None:
                buf += c.recv(4096)
            hdr, rest = buf[:hlen], buf[hlen:]
            cn, i = None, 16 + (12 if hdr[13] >> 4 == 1 else 36)
            while i + 3 <= hlen:
                t, n = hdr[i], struct.unpack("!H", hdr[i + 1:i + 3])[0]
                if t == 0x20:
                    j = i + 3 + 5
                    while j + 3 <= i + 3 + n:
                        st, sn = hdr[j], struct.unpack("!H", hdr[j + 1:j + 3])[0]
                        if st == 0x22:
                            cn = hdr[j + 3:j + 3 + sn].decode()
                        j += 3 + sn
                i += 3 + n
            self.seen.append((cn, client_id_of(rest[:first_packet_len(rest)])))
            c.sendall(CONNACK_OK)
            c.recv(100)
        except OSError:
            pass
        finally:
            c.close()


class Identity(harness.TestCase):
    def setUp(self):
        self.pki = make_certs(self.tmpdir())

    def lb(self, backend_port, identity, proxy="none", verify="required"):
        ports = backend_port if isinstance(backend_port, list) else [backend_port]
        pki = self.pki
        tport = free_port()
        listeners = [{"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"},
                     {"name": "mqtts", "bind": f"127.0.0.1:{tport}",
                      "tls": {"cert": pki["server.crt"], "key": pki["server.key"],
                              "ca": pki["ca.crt"], "verify_client": verify,
                              "identity": identity}}]
        _, _, mport, _ = start_mqttlb(
            self, [{"name": f"b{i + 1}", "address": f"127.0.0.1:{p}", "proxy_protocol": proxy}
                   for i, p in enumerate(ports)], listeners=listeners, health={"enabled": False})
        wait_until(lambda: port_open(tport), 10, what="TLS listener")
        return tport, mport

    def connect(self, tport, device, client_id, level=4):
        ctx = ssl.create_default_context(cafile=self.pki["ca.crt"])
        if device:
            ctx.load_cert_chain(self.pki[f"{device}.crt"], self.pki[f"{device}.key"])
        raw = socket.create_connection(("127.0.0.1", tport), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(connect_packet(client_id, level))
        first, body = read_packet(s, 10)
        self.assertEqual(first, 0x20)
        return s, body[1]

    def test_match_refuses_a_device_posing_as_another(self):
        broker = ScriptedBroker(self)
        tport, mport = self.lb(broker.port, {"from": "cn", "enforce": "match"})
        s, code = self.connect(tport, "device1", "device-1")
        self.assertEqual(code, 0)
        s.close()
        for level, want in ((4, 0x02), (5, 0x85)):
            s, code = self.connect(tport, "device1", "device-2", level)  # device-1's cert
            self.assertEqual(code, want)
            s.close()
        self.assertEqual(broker.connections, 1, "a refused CONNECT reached a broker")
        self.assertEqual(
            metric(mport, 'mqttlb_connections_rejected_total{reason="identity_mismatch"}'), 2)

    def test_no_certificate_means_no_identity(self):
        broker = ScriptedBroker(self)
        tport, mport = self.lb(broker.port, {"from": "cn", "enforce": "rewrite"}, verify="optional")
        s, code = self.connect(tport, None, "device-1")  # claims an id, shows no certificate
        self.assertEqual(code, 0x02)
        s.close()
        self.assertEqual(broker.connections, 0)

    def test_rewrite_replaces_the_client_id_and_nothing_else(self):
        broker = ScriptedBroker(self)
        tport, mport = self.lb(broker.port, {"from": "san-uri", "enforce": "rewrite"})
        broker.expect("urn:dev:device-2", [])
        s, code = self.connect(tport, "device2", "anything-the-device-says")
        self.assertEqual(code, 0)
        s.sendall(b"\xe0\x00")
        s.close()
        got = broker.result("urn:dev:device-2")
        self.assertEqual(got, connect_packet("urn:dev:device-2") + b"\xe0\x00")

    def test_affinity_follows_the_identity_not_the_id_the_device_sends(self):
        brokers = [ScriptedBroker(self), ScriptedBroker(self)]
        tport, mport = self.lb([b.port for b in brokers], {"from": "cn", "enforce": "rewrite"})
        for b in brokers:
            b.expect("device-1", [], half_close=False)
        first, code = self.connect(tport, "device1", "first-id")
        self.assertEqual(code, 0)
        home = next(i for i, b in enumerate(brokers) if b.connections == 1)
        # Held open: leastconn alone would send a new id to the other broker.
        second, code = self.connect(tport, "device1", "second-id")
        self.assertEqual(code, 0)
        self.assertEqual([b.connections for b in brokers],
                         [2 if i == home else 0 for i in range(2)])
        self.assertEqual(metric(mport, 'mqttlb_affinity_lookups_total{result="hit"}'), 1)
        first.close()
        second.close()

    def test_identity_from_a_dns_san_and_the_proxy_v2_cn(self):
        broker = ProxyV2Broker(self)
        tport, _ = self.lb(broker.port, {"from": "san-dns", "enforce": "match"}, proxy="v2")
        s, code = self.connect(tport, "device1", "device-1.fleet.example")
        self.assertEqual(code, 0)
        s.close()
        wait_until(lambda: broker.seen, 10, what="the broker's view")
        # The SSL_CN sub-TLV carries the identity the listener enforces (here
        # the DNS SAN), not necessarily the subject CN.
        self.assertEqual(broker.seen[0], ("device-1.fleet.example", "device-1.fleet.example"))

    def test_proxy_v2_carries_the_subject_cn_without_identity(self):
        broker = ProxyV2Broker(self)
        tport, _ = self.lb(broker.port, {"from": "cn", "enforce": "off"}, proxy="v2")
        s, code = self.connect(tport, "device2", "whatever-id")
        self.assertEqual(code, 0)
        s.close()
        wait_until(lambda: broker.seen, 10, what="the broker's view")
        self.assertEqual(broker.seen[0], ("device-2", "whatever-id"))


if __name__ == "__main__":
    harness.main()
