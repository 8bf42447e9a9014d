"""The CONNECT parser accepts what real clients send.

A raw TCP listener on a free 127.0.0.1 port records exactly the first packet
(the CONNECT) of one connection from mosquitto_pub / mosquitto_sub
(-V mqttv31 | mqttv311 | mqttv5, with and without username/password, will,
client id, persistent sessions, keep-alive, MQTT 5 properties) and from
paho-mqtt (MQTTv31, MQTTv311, MQTTv5). build/tests/connect_dump parses each
capture; every one must be Done with the fields the client was told to send.
Captures live in memory and a temp dir only; nothing is written to the repo.
"""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestCase  # noqa: E402

MAX_CONNECT = 1 << 20


def connect_dump():
    return harness.binary(os.path.join("tests", "connect_dump"))


class Listener:
    """Accepts one connection on 127.0.0.1 and reads one MQTT packet from it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def capture(self, timeout=10.0):
        """Bytes of the first packet, read until the fixed header says it is complete."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        try:
            buf = bytearray()

            def need(n):
                while len(buf) < n:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise AssertionError(f"timed out with {len(buf)} bytes: {bytes(buf)!r}")
                    conn.settimeout(left)
                    chunk = conn.recv(min(65536, n - len(buf)))
                    if not chunk:
                        raise AssertionError(f"peer closed after {len(buf)} bytes: {bytes(buf)!r}")
                    buf.extend(chunk)

            need(2)
            # Remaining Length: 1..4 bytes, continuation bit 0x80.
            i = 1
            while buf[i] & 0x80:
                i += 1
                if i > 4:
                    raise AssertionError(f"malformed Remaining Length: {bytes(buf)!r}")
                need(i + 1)
            rem, mult = 0, 1
            for b in buf[1:i + 1]:
                rem += (b & 0x7F) * mult
                mult *= 128
            total = i + 1 + rem
            if total > MAX_CONNECT:
                raise AssertionError(f"CONNECT announces {total} bytes")
            need(total)
            return bytes(buf[:total])
        finally:
            conn.close()


class ConnectCaptureTest(TestCase):
    def setUp(self):
        self.dump = connect_dump()
        self.work = self.tmpdir()
        self.n = 0

    def parse(self, data):
        self.n += 1
        path = os.path.join(self.work, f"connect-{self.n}.bin")
        with open(path, "wb") as f:
            f.write(data)
        out = subprocess.run([self.dump, path], capture_output=True, timeout=30, check=True)
        return json.loads(out.stdout)

    def check(self, data, version, client_id=None, username=None, password=False,
              clean=True, keep_alive=60, will=None, props=None, will_props=None):
        """Parses one capture and compares the fields a user configured."""
        r = self.parse(data)
        msg = f"capture {data!r} -> {r}"
        self.assertEqual(r["status"], "done", msg)
        self.assertIsNone(r["error"], msg)
        self.assertEqual(r["packet_length"], len(data), msg)
        self.assertEqual(r["version"], {3: "3.1", 4: "3.1.1", 5: "5.0"}[version], msg)
        self.assertEqual(r["protocol_level"], version, msg)
        if client_id is not None:
            if callable(client_id):
                self.assertTrue(client_id(r["client_id"]), msg)
            else:
                self.assertEqual(r["client_id"], client_id, msg)
        self.assertEqual(r["username"], username, msg)
        self.assertEqual(r["password"], password, msg)
        self.assertEqual(r["clean_start"], clean, msg)
        self.assertEqual(r["keep_alive"], keep_alive, msg)
        if will is None:
            self.assertIsNone(r["will"], msg)
        else:
            topic, qos, retain, payload_len = will
            self.assertIsNotNone(r["will"], msg)
            self.assertEqual(r["will"]["topic"], topic, msg)
            self.assertEqual(r["will"]["qos"], qos, msg)
            self.assertEqual(r["will"]["retain"], retain, msg)
            self.assertEqual(r["will"]["payload_length"], payload_len, msg)
            for k, v in (will_props or {}).items():
                self.assertEqual(r["will"]["properties"].get(k), v, msg)
        for k, v in (props or {}).items():
            self.assertEqual(r["properties"].get(k), v, msg)
        # Real captures, cut anywhere, need more bytes (never a wrong verdict).
        for cut in sorted({1, len(data) // 2, len(data) - 1}):
            self.assertEqual(self.parse(data[:cut])["status"], "need-more", f"cut {cut}: {msg}")
        return r

    def capture_cli(self, tool, args):
        """Runs mosquitto_pub/sub against a fresh listener; returns its CONNECT."""
        lst = Listener()
        try:
            p = self.spawn([f"/usr/bin/{tool}", "-h", "127.0.0.1", "-p", str(lst.port)] + args,
                           name=tool)
            try:
                return lst.capture()
            except Exception as e:
                raise AssertionError(f"{tool} {args}: {e}\noutput:\n{p.output()}")
            finally:
                p.stop()
        finally:
            lst.close()

    def capture_paho(self, make_client, **connect_kw):
        import paho.mqtt.client as mqtt  # python3-paho-mqtt (Debian, 1.6)
        lst = Listener()
        try:
            c = make_client(mqtt)
            # Blocking: the TCP handshake completes in the kernel backlog and the
            # CONNECT goes out before connect() returns.
            c.connect("127.0.0.1", lst.port, **connect_kw)
            try:
                return lst.capture()
            finally:
                sock = c.socket()
                if sock is not None:
                    sock.close()
        finally:
            lst.close()

    # ---------------- mosquitto_pub / mosquitto_sub ----------------

    def test_mosquitto_v31(self):
        data = self.capture_cli("mosquitto_pub", ["-V", "mqttv31", "-i", "pub-31", "-k", "33",
                                                  "-t", "t/31", "-m", "x"])
        self.check(data, 3, "pub-31", keep_alive=33)
        data = self.capture_cli("mosquitto_pub", ["-V", "mqttv31", "-t", "t/31", "-m", "x"])
        self.check(data, 3, lambda cid: 1 <= len(cid) <= 23)
        data = self.capture_cli("mosquitto_sub", [
            "-V", "mqttv31", "-c", "-i", "sub-31", "-u", "user31", "-P", "pw31",
            "--will-topic", "lwt/31", "--will-payload", "gone", "--will-qos", "2",
            "--will-retain", "-t", "t/#"])
        self.check(data, 3, "sub-31", username="user31", password=True, clean=False,
                   will=("lwt/31", 2, True, 4))

    def test_mosquitto_v311(self):
        # No -i: mosquitto 2.0 sends an empty id with clean session (legal in 3.1.1).
        data = self.capture_cli("mosquitto_pub", ["-V", "mqttv311", "-t", "t", "-m", "x"])
        self.check(data, 4, None, clean=True)
        data = self.capture_cli("mosquitto_pub", [
            "-V", "mqttv311", "-i", "pub-311", "-u", "alice", "-P", "secret", "-k", "5",
            "--will-topic", "status/pub-311", "--will-payload", "offline", "--will-qos", "1",
            "-t", "t", "-m", "x"])
        self.check(data, 4, "pub-311", username="alice", password=True, keep_alive=5,
                   will=("status/pub-311", 1, False, 7))
        data = self.capture_cli("mosquitto_sub", [
            "-V", "mqttv311", "-i", "sub-311", "--disable-clean-session", "-k", "600",
            "-u", "onlyuser", "-t", "a/+/c"])
        self.check(data, 4, "sub-311", username="onlyuser", clean=False, keep_alive=600)
        data = self.capture_cli("mosquitto_sub", [
            "-V", "mqttv311", "-i", "d\u00e9v-\u20ac", "-t", "x",
            "--will-topic", "w/\u00fc", "--will-payload", "", "--will-retain"])
        self.check(data, 4, "d\u00e9v-\u20ac", will=("w/\u00fc", 0, True, 0))

    def test_mosquitto_v5(self):
        data = self.capture_cli("mosquitto_pub", ["-V", "mqttv5", "-t", "t", "-m", "x"])
        self.check(data, 5)
        data = self.capture_cli("mosquitto_pub", [
            "-V", "mqttv5", "-i", "pub-5", "-u", "u5", "-P", "p5", "-k", "90",
            "-D", "connect", "session-expiry-interval", "3600",
            "-D", "connect", "user-property", "site", "berlin",
            "-D", "connect", "user-property", "rack", "7",
            "-D", "connect", "receive-maximum", "10",
            "-D", "connect", "maximum-packet-size", "100000",
            "-D", "connect", "topic-alias-maximum", "5",
            "-D", "connect", "request-problem-information", "1",
            "-t", "t", "-m", "x"])
        self.check(data, 5, "pub-5", username="u5", password=True, keep_alive=90,
                   props={"session_expiry_interval": 3600,
                          "user_properties": [["site", "berlin"], ["rack", "7"]],
                          "receive_maximum": 10, "maximum_packet_size": 100000,
                          "topic_alias_maximum": 5, "request_problem_information": 1})
        data = self.capture_cli("mosquitto_sub", [
            "-V", "mqttv5", "-c", "-i", "sub-5", "-x", "600", "-t", "t/#",
            "--will-topic", "lwt/5", "--will-payload", "bye", "--will-qos", "1", "--will-retain",
            "-D", "will", "will-delay-interval", "30",
            "-D", "will", "content-type", "text/plain",
            "-D", "will", "user-property", "why", "crash"])
        self.check(data, 5, "sub-5", clean=False,
                   props={"session_expiry_interval": 600},
                   will=("lwt/5", 1, True, 3),
                   will_props={"will_delay_interval": 30, "content_type": "text/plain",
                               "user_properties": [["why", "crash"]]})

    # ---------------- paho-mqtt ----------------

    def test_paho_v31(self):
        def make(mqtt):
            c = mqtt.Client(client_id="paho-31", protocol=mqtt.MQTTv31, clean_session=True)
            c.will_set("paho/lwt", "gone", qos=1, retain=True)
            c.username_pw_set("pahouser", "pahopass")
            return c
        data = self.capture_paho(make, keepalive=17)
        self.check(data, 3, "paho-31", username="pahouser", password=True, keep_alive=17,
                   will=("paho/lwt", 1, True, 4))

    def test_paho_v311(self):
        def make(mqtt):
            c = mqtt.Client(client_id="paho-311", protocol=mqtt.MQTTv311, clean_session=False)
            c.will_set("paho/lwt/311", b"\x00\xff", qos=2, retain=False)
            c.username_pw_set("u311", "p311")
            return c
        data = self.capture_paho(make, keepalive=45)
        self.check(data, 4, "paho-311", username="u311", password=True, clean=False,
                   keep_alive=45, will=("paho/lwt/311", 2, False, 2))

        def anon(mqtt):  # empty client id with clean session [MQTT-3.1.3-7]
            return mqtt.Client(client_id="", protocol=mqtt.MQTTv311, clean_session=True)
        data = self.capture_paho(anon, keepalive=60)
        self.check(data, 4, "")

    def test_paho_v5(self):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        def make(mqtt):
            c = mqtt.Client(client_id="paho-5", protocol=mqtt.MQTTv5)
            wp = Properties(PacketTypes.WILLMESSAGE)
            wp.WillDelayInterval = 10
            wp.MessageExpiryInterval = 3600
            wp.UserProperty = ("k", "v")
            c.will_set("paho/lwt/5", "bye", qos=1, retain=True, properties=wp)
            c.username_pw_set("u5", "p5")
            return c
        cp = Properties(PacketTypes.CONNECT)
        cp.SessionExpiryInterval = 120
        cp.ReceiveMaximum = 50
        cp.UserProperty = ("app", "test")
        data = self.capture_paho(make, keepalive=30, clean_start=False, properties=cp)
        self.check(data, 5, "paho-5", username="u5", password=True, clean=False, keep_alive=30,
                   props={"session_expiry_interval": 120, "receive_maximum": 50,
                          "user_properties": [["app", "test"]]},
                   will=("paho/lwt/5", 1, True, 3),
                   will_props={"will_delay_interval": 10, "message_expiry_interval": 3600,
                               "user_properties": [["k", "v"]]})


if __name__ == "__main__":
    harness.main()
