"""Bounded buffers in mqttlb-broker: a full per-session queue drops messages
(QoS 0 first) instead of growing, like mosquitto's max_queued_messages, and a
subscriber that stops reading neither grows the broker without bound nor slows
other clients down."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import main, rss_kib  # noqa: E402
from broker_helpers import (BrokerTest, Paho, Raw, connect, publish, raw_connect,  # noqa: E402
                            subscribe)


# Under AddressSanitizer freed memory sits in a quarantine (256 MB by default),
# which would count as growth here: this module's brokers run without it.
os.environ["ASAN_OPTIONS"] = ":".join(
    x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=0") if x)


class Queues(BrokerTest):
    our_extra = ("--max-queued", "5")

    def test_offline_queue_is_bounded(self):
        def fn(port):
            s = self.client(port, "bounded", clean=False)
            s.sub("bq/t", 1)
            s.stop()
            p = self.client(port, "bq-pub")
            for i in range(12):
                p.pub("bq/t", f"m{i:02d}", 1)
            s2 = Paho(port, "bounded", clean=False, auto_connect=False)
            self._clients.append(s2)
            s2.connect()
            p.pub("bq/t", "live", 1)
            got = []
            for _ in range(20):
                m = s2.get(5)
                if m is None:
                    break
                got.append(m.payload)
                if m.payload == b"live":
                    break
            return got

        ours = fn(self.port)
        _, mport = self.start_mosquitto(extra_conf="max_queued_messages 5")
        self.assertEqual(ours, fn(mport))
        # The first five were kept, the rest dropped, then live traffic resumed.
        self.assertEqual(ours, [b"m00", b"m01", b"m02", b"m03", b"m04", b"live"])
        self.ours.stop()
        self.assertRegex(self.ours.output(), r"dropped: queue full 7\b")

    def test_stalled_subscriber_does_not_grow_the_broker(self):
        stalled = Raw(self.port)
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.send(connect("stalled"))
        self.assertEqual(stalled.recv()[0], 0x20)
        stalled.send(subscribe([("flood/#", 0), ("flood1/#", 1)]))
        self.assertEqual(stalled.recv()[0], 0x90)
        watch = self.client(self.port, "flood-watch")
        watch.sub("ok/#", 1)
        pub, _ = raw_connect(self.port, "flooder")
        base = rss_kib(self.ours.pid)
        payload = b"x" * 1024
        batch = b"".join(publish(f"flood/{i % 7}", payload) for i in range(1000))
        batch1 = b"".join(publish("flood1/t", payload, qos=1, pid=i + 1) for i in range(100))
        for _ in range(40):  # 40 MB at a subscriber that reads nothing
            pub.send(batch)
        pub.send(batch1)
        # Everyone else still gets through promptly.
        talker = self.client(self.port, "flood-talker")
        talker.pub("ok/1", "still fine", 1)
        m = watch.get(10)
        self.assertIsNotNone(m)
        self.assertEqual(m.payload, b"still fine")
        pub.send(b"\xc0\x00")
        # The flooder's own PUBACKs and PINGRESP still come back.
        got = 0
        for _ in range(200):
            p = pub.recv(10)
            if p[0] == 0xD0:
                break
            got += 1
        self.assertEqual(got, 100)
        grown = rss_kib(self.ours.pid) - base
        print(f"broker RSS growth under flood: {grown} KiB", file=sys.stderr)
        # Bounded by the write high-water mark plus --max-queued messages, not 40 MB.
        self.assertLess(grown, 16 * 1024, f"broker grew by {grown} KiB")
        stalled.close()
        pub.close()


class QueueDrains(BrokerTest):
    def test_queued_messages_go_out_once_a_slow_subscriber_catches_up(self):
        # A burst overflows the socket, so deliveries wait in the session
        # queue; when the output drains in one uv_try_write (no write
        # callback), the queue must still be pumped: the QoS 1 message at the
        # end of the burst arrives.
        sub = self.client(self.port, "catching-up")
        sub.sub("burst/#", 1)
        pub, _ = raw_connect(self.port, "burster")
        pkt = publish("burst/x", b"x" * 1000)
        for _ in range(10):
            pub.send(pkt * 1000)
        pub.send(publish("burst/end", b"end", qos=1, pid=1))
        self.assertEqual(pub.recv(30), (0x40, b"\x00\x01"))
        end = None
        for _ in range(20000):
            m = sub.get(10)
            if m is None or m.topic == "burst/end":
                end = m
                break
        self.assertIsNotNone(end, "the queued QoS 1 message never came")
        pub.close()


if __name__ == "__main__":
    main()
