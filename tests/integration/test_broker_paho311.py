"""Our re-implementation of the Eclipse Paho MQTT 3.1.1 interoperability suite
(paho.mqtt.testing interoperability/client_test.py), scenario by scenario,
against mqttlb-broker. Test names are the suite's. The suite's fixed sleeps
became waits on conditions with deadlines; "nothing more arrives" checks use a
marker message sent after the one that must not arrive, or a short quiet
period. The suite runs against a broker configured to refuse subscriptions to
test/nosubscribe; ours gets that from --acl (docs/broker.md).

Each test gets a fresh broker (the suite's cleanup() of sessions and retained
messages is therefore not needed). `ports()` says where each client connects:
the same broker here; test_cluster_paho.py runs the same scenarios with the
clients spread over a cluster.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import main  # noqa: E402
from broker_helpers import connect  # noqa: E402
from suite_clients import SuiteBase, quiet  # noqa: E402

TOPICS = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
WILDTOPICS = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
NOSUBSCRIBE = ("test/nosubscribe",)

class Paho311(SuiteBase):
    TOPICS, WILDTOPICS = TOPICS, WILDTOPICS

    def test_basic(self):
        a = self.aclient
        a.connect()
        a.disconnect()
        present, rc, _ = a.connect()
        self.assertFalse(present)
        a.subscribe([TOPICS[0]], [2])
        a.publish(TOPICS[0], b"qos 0")
        a.publish(TOPICS[0], b"qos 1", 1)
        a.publish(TOPICS[0], b"qos 2", 2)
        got = a.wait_messages(3)
        a.disconnect()
        self.assertEqual(sorted(m.payload for m in got), [b"qos 0", b"qos 1", b"qos 2"])
        # A second CONNECT on the same socket is a protocol violation [MQTT-3.1.0-2].
        r, _ = self.raw(0, "myclientid")
        r.send(connect("myclientid", version=self.version))
        self.assertEqual(r.expect_closed(), [])
        self.wrong_protocol_name_is_refused()

    def test_retained_messages(self):
        a = self.aclient
        present, _, _ = a.connect(clean=True)
        self.assertFalse(present)
        a.publish(TOPICS[1], b"qos 0", 0, retain=True)
        a.publish(TOPICS[2], b"qos 1", 1, retain=True)
        a.publish(TOPICS[3], b"qos 2", 2, retain=True)
        a.publish("TopicA/marker", b"", 1)  # after the three: all are stored
        a.subscribe([WILDTOPICS[5]], [2])
        got = a.wait_messages(3)
        a.disconnect()
        self.assertEqual(sorted((m.topic, m.payload, m.retain) for m in got),
                         [("Topic/C", b"qos 1", True), ("TopicA/B", b"qos 0", True),
                          ("TopicA/C", b"qos 2", True)])
        # Clear them: nothing retained is sent any more.
        a.clear()
        a.connect(clean=True)
        a.publish(TOPICS[1], b"", 0, retain=True)
        a.publish(TOPICS[2], b"", 1, retain=True)
        a.publish(TOPICS[3], b"", 2, retain=True)
        a.subscribe([WILDTOPICS[5]], [2])
        a.publish("TopicA/marker", b"end", 1)
        got = a.wait_messages(1)
        self.assertEqual([(m.topic, m.payload) for m in got], [("TopicA/marker", b"end")])
        a.disconnect()

    def test_will_message(self):
        # (Defined in the suite as will_message_test, without the test_ prefix.)
        r, _ = self.raw(0, "myclientid", clean=True, keepalive=2,
                        will=(TOPICS[2], b"client not disconnected", 0, False))
        b = self.bclient
        b.connect(clean=False)
        b.subscribe([TOPICS[2]], [2])
        r.close()  # aclient.terminate()
        b.wait_messages(1)
        quiet()
        self.assertEqual([(m.topic, m.payload) for m in b.messages],
                         [(TOPICS[2], b"client not disconnected")])
        b.disconnect()

    def test_zero_length_clientid(self):
        # 3.1.1: an empty id needs clean session [MQTT-3.1.3-8] (paho will not even
        # send this CONNECT, so it goes raw).
        _, ack = self.raw(0, "", clean=False)
        self.assertEqual(ack, b"\x00\x02")
        c0 = self.suite_client("")
        c0.connect(clean=True)
        c0.disconnect()

    def test_offline_message_queueing(self):
        present, got = self.offline_queueing_scenario(clean=False)
        self.assertTrue(present)
        # The suite accepts 2 or 3; this server does not queue QoS 0 for offline clients.
        self.assertEqual(got, [b"qos 1", b"qos 2"])

    def test_overlapping_subscriptions(self):
        # One message at the highest QoS, or one per subscription (2 and 1);
        # before 5.0 this server sends one per subscription.
        self.assertEqual(self.overlapping_scenario(), [1, 2])

    def test_keepalive(self):
        self.keepalive_scenario()

    def test_redelivery_on_reconnect(self):
        self.redelivery_scenario()

    def test_subscribe_failure(self):
        a = self.aclient
        a.connect()
        self.assertEqual(a.subscribe([NOSUBSCRIBE[0]], [2]), [0x80])

    def test_dollar_topics(self):
        self.dollar_topics_scenario()

    def test_unsubscribe(self):
        a, b = self.aclient, self.bclient
        b.connect(clean=True)
        b.subscribe([TOPICS[0]], [2])
        b.subscribe([TOPICS[1]], [2])
        b.subscribe([TOPICS[2]], [2])
        b.unsubscribe([TOPICS[0]])
        a.connect(clean=True)
        a.publish(TOPICS[0], b"", 1)
        a.publish(TOPICS[1], b"", 1)
        a.publish(TOPICS[2], b"", 1)
        b.wait_messages(2)
        quiet()
        self.assertEqual(sorted(m.topic for m in b.messages), [TOPICS[2], TOPICS[1]])
        a.disconnect()
        b.disconnect()


if __name__ == "__main__":
    main()
