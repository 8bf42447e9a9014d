"""Backends from DNS (docs/scale-out.md "Discovery"), against a real DNS server
(Debian's dnsmasq on a loopback port) whose records the test changes:
a record added -> the backend appears, is health-checked and takes clients;
a record removed -> the backend drains (its sessions are moved off, no new
ones); an empty answer keeps the pool; SIGHUP to mqttlb keeps discovered
backends; the records' TTL (1 s) is respected although interval_ms is a
minute. SRV records: test_lb_discovery_srv.py."""
import json
import os
import signal
import subprocess
import unittest

import harness
from harness import free_port, wait_until
from lb_helpers import PINGREQ, grep_lines, is_closed, metric, metrics, mqtt_connect, \
    read_packet, start_mqttlb
import scale_helpers
from scale_helpers import Dnsmasq

NAME = "brokers.test"


def discovered(mport):
    """{backend name: active sessions} for the backends mqttlb forwards to now."""
    out = {}
    for k, v in metrics(mport).items():
        if k.startswith('mqttlb_backend_sessions_active{backend="'):
            out[k.split('"')[1]] = v
    return out


def up(mport, backend):
    return metric(mport, f'mqttlb_backend_up{{backend="{backend}"}}') == 1


@unittest.skipUnless(scale_helpers.have(scale_helpers.DNSMASQ), "dnsmasq not installed")
class DiscoveryTest(harness.TestCase):
    def brokers(self, ips):
        """One mqttlb-broker per loopback address, all on one port (A records
        carry no port). Returns (port, {ip: proc})."""
        port = free_port()
        procs = {}
        for ip in ips:
            p = self.spawn([harness.binary("mqttlb-broker"), "--port", port, "--bind", ip],
                           name=f"broker:{ip}")
            wait_until(lambda: harness.port_open(port, ip) or not p.alive(), 10,
                       what=f"broker on {ip}:{port}")
            procs[ip] = p
        return port, procs

    def test_records_appear_drain_and_an_empty_answer_keeps_the_pool(self):
        dns = Dnsmasq(self, ttl=1)
        port, _ = self.brokers(["127.0.0.1", "127.0.0.2", "127.0.0.3"])
        name = lambda ip: f"{NAME}-{ip}-{port}"
        dns.set_hosts([("127.0.0.1", NAME), ("127.0.0.2", NAME)])
        lb, lport, mport, cfg = start_mqttlb(
            self, [],
            discovery=[{"dns": NAME, "port": port, "interval_ms": 60000,
                        "resolvers": [f"127.0.0.1:{dns.port}"]}],
            health={"interval_ms": 200, "timeout_ms": 150, "rise": 2},
            evacuation={"rate_per_s": 1000, "deadline_s": 5})
        # The first answer is in before listening: both are checked and up.
        wait_until(lambda: up(mport, name("127.0.0.1")) and up(mport, name("127.0.0.2")), 10,
                   what="two discovered backends up")
        held = {}
        for i in range(4):
            s, _ = mqtt_connect(lport, f"dev-{i}")
            held[f"dev-{i}"] = s
        on = discovered(mport)
        self.assertEqual(sorted(on), [name("127.0.0.1"), name("127.0.0.2")])
        self.assertEqual(on[name("127.0.0.1")] + on[name("127.0.0.2")], 4)

        # A record added: the TTL (1 s), not interval_ms (60 s), says when to ask again.
        dns.set_hosts([("127.0.0.1", NAME), ("127.0.0.2", NAME), ("127.0.0.3", NAME)])
        wait_until(lambda: name("127.0.0.3") in discovered(mport), 6, what="third backend")
        wait_until(lambda: up(mport, name("127.0.0.3")), 6, what="third backend up after rise")
        # leastconn: with 2 + 2 held elsewhere, the next two go to the new one.
        for i in range(4, 6):
            held[f"dev-{i}"], _ = mqtt_connect(lport, f"dev-{i}")
        self.assertEqual(discovered(mport)[name("127.0.0.3")], 2)

        # A record removed: no new clients there, and its sessions are moved off.
        dns.set_hosts([("127.0.0.1", NAME), ("127.0.0.3", NAME)])
        wait_until(lambda: name("127.0.0.2") not in discovered(mport) or
                   discovered(mport)[name("127.0.0.2")] == 0, 8, what="removed backend drained")
        closed = [cid for cid, s in held.items() if is_closed(s, 0.2)]
        self.assertEqual(len(closed), 2, f"the two sessions on .2 are moved off: {closed}")
        for cid in closed:
            held[cid].close()
            held[cid], _ = mqtt_connect(lport, cid)  # they come back elsewhere
        self.assertNotIn(name("127.0.0.2"), [k for k, v in discovered(mport).items() if v])
        self.assertEqual(sum(discovered(mport).values()), 6)
        # Once nothing refers to it, every series of the removed backend goes
        # (balancer and health alike), none left frozen at its last value.
        wait_until(lambda: not [k for k in metrics(mport) if name("127.0.0.2") in k], 8,
                   what="the removed backend's series gone")

        # An empty answer (NXDOMAIN) keeps the last good set, logged once.
        empty0 = metric(mport, f'mqttlb_discovery_lookups_total{{discovery="{NAME}/A/{port}",'
                               f'result="empty"}}')
        dns.set_hosts([])
        key = f'mqttlb_discovery_lookups_total{{discovery="{NAME}/A/{port}",result="empty"}}'
        wait_until(lambda: metric(mport, key) >= empty0 + 2, 8, what="two empty answers")
        self.assertEqual(metric(mport, f'mqttlb_discovery_backends{{discovery="{NAME}/A/{port}"}}'),
                         2)
        s, _ = mqtt_connect(lport, "after-empty")
        s.close()
        self.assertEqual(len(grep_lines(lb, r"empty answer; keeping the last 2 backends")), 1)

        # SIGHUP reloads mqttlb: the discovered backends stay, sessions untouched.
        ok0 = metric(mport, 'mqttlb_config_reloads_total{result="ok"}')
        lb.signal(signal.SIGHUP)
        wait_until(lambda: metric(mport, 'mqttlb_config_reloads_total{result="ok"}') > ok0, 10,
                   what="reload")
        self.assertEqual(sum(discovered(mport).values()), 6)
        for cid, s in held.items():
            s.sendall(PINGREQ)
            self.assertEqual(read_packet(s)[0], 0xD0, f"{cid} still forwarded after SIGHUP")
        s, _ = mqtt_connect(lport, "after-reload")
        s.close()
        # Records back: answering again is logged once.
        dns.set_hosts([("127.0.0.1", NAME), ("127.0.0.3", NAME)])
        lb.wait_for_line(r"discovery brokers.test \(A\): answering again: 2 backends", timeout=8)
        for s in held.values():
            s.close()

    def test_a_reload_without_the_entry_drains_its_backends(self):
        dns = Dnsmasq(self, ttl=1)
        port, _ = self.brokers(["127.0.0.1"])
        static_port = self.start_our_broker()[1]
        dns.set_hosts([("127.0.0.1", NAME)])
        lb, lport, mport, path = start_mqttlb(
            self, [],
            discovery=[{"dns": NAME, "port": port, "resolvers": [f"127.0.0.1:{dns.port}"]}],
            health={"interval_ms": 200, "timeout_ms": 150, "rise": 1},
            evacuation={"rate_per_s": 1000, "deadline_s": 5})
        wait_until(lambda: up(mport, f"{NAME}-127.0.0.1-{port}"), 10, what="discovered up")
        s, _ = mqtt_connect(lport, "dev-r")
        with open(path) as f:
            cfg = json.load(f)
        del cfg["discovery"]
        cfg["backends"] = [{"name": "static", "address": f"127.0.0.1:{static_port}"}]
        with open(path, "w") as f:
            json.dump(cfg, f)
        lb.signal(signal.SIGHUP)
        self.assertTrue(is_closed(s, 8), "the discovered backend's session is moved off")
        s.close()
        wait_until(lambda: up(mport, "static"), 10, what="static backend up")
        s, _ = mqtt_connect(lport, "dev-r")
        self.assertEqual({k: v for k, v in discovered(mport).items() if v}, {"static": 1})
        s.close()

    def test_check_reads_the_template_files(self):
        path = os.path.join(self.tmpdir(), "c.json")
        with open(path, "w") as f:
            json.dump({"listeners": [{"name": "m", "bind": "127.0.0.1:1883"}],
                       "discovery": [{"dns": NAME, "template": {"tls": {"ca": "/nonexistent.pem"}}}]},
                      f)
        r = subprocess.run([harness.binary("mqttlb"), "--check", "-c", path], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"^/discovery/0/template/tls/ca: CA '/nonexistent.pem'")


if __name__ == "__main__":
    harness.main()
