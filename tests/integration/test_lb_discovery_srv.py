"""SRV discovery as RFC 2782 means it (docs/scale-out.md "SRV records"),
against a real dnsmasq on a loopback port: the lowest priority present is in
rotation and the others are health-checked standbys that take new clients
only when every lower tier is down; SRV weights become backend weights
(scaled to 1..256 within a priority, weight 0 the smallest share); a target
with two A records is two backends; a later answer with other priorities or
weights changes the running backends without dropping a session."""
import unittest

import harness
from harness import free_port, wait_until
from admin_helpers import start_lb_admin
from lb_helpers import PINGREQ, is_closed, mqtt_connect, read_packet
import scale_helpers
from scale_helpers import Dnsmasq

SRV = "_mqtt._tcp.srv.test"
HEALTH = {"interval_ms": 200, "timeout_ms": 150, "rise": 1, "fall": 1}


def bname(target, ip, port):
    return f"{SRV}-{target}-{ip}-{port}"


def backends(admin):
    return {b["name"]: b for b in admin.get("/api/v1/backends").json["backends"]}


def answers(sock):
    sock.sendall(PINGREQ)
    return read_packet(sock)[0] == 0xD0


@unittest.skipUnless(scale_helpers.have(scale_helpers.DNSMASQ), "dnsmasq not installed")
class SrvDiscoveryTest(harness.TestCase):
    def broker(self, port, ip="127.0.0.1"):
        p = self.spawn([harness.binary("mqttlb-broker"), "--port", port, "--bind", ip],
                       name=f"broker:{ip}:{port}")
        wait_until(lambda: harness.port_open(port, ip) or not p.alive(), 10,
                   what=f"broker on {ip}:{port}")
        self.assertTrue(p.alive(), p.output())
        return p

    def lb(self, dns):
        p, lport, admin, _, _ = start_lb_admin(
            self, [], health=HEALTH,
            discovery=[{"dns": SRV, "type": "SRV", "interval_ms": 60000,
                        "resolvers": [f"127.0.0.1:{dns.port}"]}])
        return p, lport, admin

    def connect(self, lport, ids):
        """One MQTT session per client id (closed when the test ends)."""
        out = {}
        for cid in ids:
            out[cid] = mqtt_connect(lport, cid)[0]
            self.addCleanup(out[cid].close)
        return out

    def sessions(self, admin):
        return {n: b["sessions"] for n, b in backends(admin).items()}

    def test_priority_tiers_weights_two_addresses_and_failover(self):
        p1, p2, p3 = free_port(), free_port(), free_port()
        brokers = {"b1a": self.broker(p1, "127.0.0.1"), "b1b": self.broker(p1, "127.0.0.2"),
                   "b2": self.broker(p2), "b3": self.broker(p3)}
        dns = Dnsmasq(self, ttl=1, extra=Dnsmasq.srv_hosts(SRV, [
            ("b1.srv.test", p1, 10, 60), ("b2.srv.test", p2, 10, 20),
            ("b3.srv.test", p3, 20, 0)]))
        # b1 has two A records: two backends, each with b1's weight.
        dns.set_hosts([("127.0.0.1", "b1.srv.test"), ("127.0.0.2", "b1.srv.test"),
                       ("127.0.0.1", "b2.srv.test"), ("127.0.0.1", "b3.srv.test")])
        lb, lport, admin = self.lb(dns)
        b1a, b1b = bname("b1.srv.test", "127.0.0.1", p1), bname("b1.srv.test", "127.0.0.2", p1)
        b2, b3 = bname("b2.srv.test", "127.0.0.1", p2), bname("b3.srv.test", "127.0.0.1", p3)
        # Every target is checked, the standby too.
        wait_until(lambda: sorted(n for n, b in backends(admin).items() if b["state"] == "up") ==
                   sorted([b1a, b1b, b2, b3]), 10, what="four SRV backends up")
        got = {n: (b["weight"], b["tier"], b["standby"]) for n, b in backends(admin).items()}
        self.assertEqual(got, {b1a: (256, 0, False), b1b: (256, 0, False), b2: (85, 0, False),
                               b3: (1, 1, True)})
        # leastconn by weight 256:256:85: 14 clients split about 6:6:2; the
        # standby tier gets none while tier 0 is up.
        held = self.connect(lport, [f"c{i}" for i in range(14)])
        s = self.sessions(admin)
        self.assertEqual(s[b3], 0, s)
        self.assertTrue(1 <= s[b2] <= 3 and s[b1a] >= 5 and s[b1b] >= 5, s)
        self.assertEqual(sum(s.values()), 14)

        # Tier 0 partly down: tier 0 still takes the clients.
        brokers["b2"].stop()
        wait_until(lambda: backends(admin)[b2]["state"] == "down", 5, what="b2 down")
        held.update(self.connect(lport, ["d0", "d1"]))
        self.assertEqual(self.sessions(admin)[b3], 0)
        # Every tier-0 broker down: the next tier takes new clients.
        brokers["b1a"].stop()
        brokers["b1b"].stop()
        wait_until(lambda: all(backends(admin)[n]["state"] == "down" for n in (b1a, b1b)), 5,
                   what="tier 0 down")
        self.assertFalse(backends(admin)[b3]["standby"])
        failover = self.connect(lport, ["f0", "f1", "f2"])
        self.assertEqual(self.sessions(admin)[b3], 3)
        # (Sessions of the stopped brokers count until their clients close.)
        before = self.sessions(admin)
        # One tier-0 broker back: new clients go there again; the sessions on
        # the failover tier stay.
        brokers["b2"] = self.broker(p2)
        wait_until(lambda: backends(admin)[b2]["state"] == "up", 5, what="b2 up again")
        self.assertTrue(backends(admin)[b3]["standby"])
        self.connect(lport, ["g0", "g1"])
        s = self.sessions(admin)
        self.assertEqual((s[b2] - before[b2], s[b3]), (2, 3), (before, s))
        for cid, sock in failover.items():
            self.assertTrue(answers(sock), f"{cid} on the failover tier still forwarded")

    def test_changed_priorities_and_weights_apply_without_dropping_sessions(self):
        p1, p2, p3 = free_port(), free_port(), free_port()
        for p in (p1, p2, p3):
            self.broker(p)
        dns = Dnsmasq(self, ttl=1, extra=Dnsmasq.srv_hosts(SRV, [
            ("b1.srv.test", p1, 10, 60), ("b2.srv.test", p2, 10, 20),
            ("b3.srv.test", p3, 20, 10)]))
        dns.set_hosts([("127.0.0.1", f"b{i}.srv.test") for i in (1, 2, 3)])
        lb, lport, admin = self.lb(dns)
        b1, b2, b3 = (bname(f"b{i}.srv.test", "127.0.0.1", p) for i, p in
                      ((1, p1), (2, p2), (3, p3)))
        wait_until(lambda: all(backends(admin)[n]["state"] == "up" for n in (b1, b2, b3)), 10,
                   what="three SRV backends up")
        held = self.connect(lport, [f"c{i}" for i in range(4)])
        self.assertEqual(self.sessions(admin)[b3], 0)
        # New weights, and b3 moves into the lowest priority.
        dns.restart(Dnsmasq.srv_hosts(SRV, [
            ("b1.srv.test", p1, 10, 20), ("b2.srv.test", p2, 10, 60),
            ("b3.srv.test", p3, 10, 60)]))
        want = {b1: (85, 0, False), b2: (256, 0, False), b3: (256, 0, False)}
        wait_until(lambda: {n: (b["weight"], b["tier"], b["standby"])
                            for n, b in backends(admin).items()} == want, 15,
                   what="the new weights and priorities applied")
        lb.wait_for_line(r"discovery: 3 backends; added: none; removed \(draining\): none",
                         timeout=5)
        # Like an admin weight change: every session still forwarded.
        for cid, sock in held.items():
            self.assertFalse(is_closed(sock, 0.05), f"{cid} dropped")
            self.assertTrue(answers(sock), f"{cid} still forwarded")
        # b3, now in rotation with no session, takes the next client (b1 and
        # b2 hold the 4 at 3:1, their old weights' split).
        self.connect(lport, ["n0"])
        self.assertEqual(self.sessions(admin)[b3], 1)


if __name__ == "__main__":
    harness.main()
