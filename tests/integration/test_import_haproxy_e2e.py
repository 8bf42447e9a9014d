"""HAProxy 2.6 and its `mqttlb import-haproxy` translation, in front of the same
three Mosquitto brokers, must place the same clients the same way.

One guide-style HAProxy config (sticky client ids with inspect-delay, leastconn,
an MQTT CONNECT health check written in hex, on-marked-down
shutdown-sessions, the Prometheus exporter) runs first; then mqttlb runs
with the JSON the importer made from that very file, on the same ports. The
same client script is played against each:

  spread    30 clients with distinct ids: 10 per broker;
  affinity  a client id reconnects to its broker even when leastconn would
            pick another (the other brokers made lighter first);
  down      broker b2 is frozen (SIGSTOP: TCP still accepted, no MQTT): the
            balancer marks it down, closes its clients and leaves the others;
            those clients reconnect evenly to b1 and b3;
  back      b2 resumes: a moved client stays where it now is (its affinity
            moved with it), a new client goes to the empty b2.

What each balancer did is recorded and the two records must be equal (and
equal to what the config means).

Routed: a multi-tenant config (use_backend on a client-id prefix, a user
name and a source address; a default backend; the same brokers in several
backend sections, as separate servers with their own counts) and its
translation into mqttlb routes place the same clients on the same brokers:

  acme      10 clients "acme/..." spread 5/5 over the tenant's b1, b2;
  other     6 clients without a rule spread 3/3 over the default b2, b3
            (b2 again, but counted apart from the tenant's b2, as HAProxy
            counts servers per backend);
  ops       clients logging in as "ops" land on b3, the lab's address
            127.0.0.7 on b1, and "ops" from the lab on b3 (the first rule
            that matches wins).

Both together run in about 20 s.
"""
import json
import os
import signal
import socket
import subprocess

import harness
import lb_helpers
from harness import TestCase, binary, free_port, port_open, wait_until
from lb_helpers import DISCONNECT, Probes, connect_packet, is_closed, metric, mqtt_connect

HAPROXY = "/usr/sbin/haproxy"
NAMES = ("b1", "b2", "b3")


def head(title, port, sock):
    """global, defaults and the MQTT frontend up to its routing rules."""
    return f"""# {title}
global
    nbthread 2
    hard-stop-after 1s
    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 10m
    timeout server 10m

frontend mqtt
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 5s
    tcp-request content reject unless {{ req.payload(0,0),mqtt_is_valid }}
"""


def haproxy_cfg(port, mport, sock, brokers):
    check = connect_packet("haproxy-hc", 4, 60).hex()
    servers = "".join(f"    server {n} 127.0.0.1:{p}\n" for n, p, _ in brokers)
    title = "Sticky MQTT load balancing, as the broker vendors' guides write it."
    return head(title, port, sock) + f"""    default_backend brokers

backend brokers
    balance leastconn
    stick-table type string len 64 size 100k expire 30m
    stick on req.payload(0,0),mqtt_field_value(connect,client_identifier)
    option tcp-check
    tcp-check connect
    # CONNECT 3.1.1, clean session, keep-alive 60 s, client id "haproxy-hc"
    tcp-check send-binary {check}
    tcp-check expect binary 20020000
    tcp-check send-binary e000
    default-server check inter 250ms rise 2 fall 2 on-marked-down shutdown-sessions
{servers}
frontend prometheus
    bind 127.0.0.1:{mport}
    mode http
    http-request use-service prometheus-exporter if {{ path /metrics }}
"""


def routed_cfg(port, sock, brokers):
    p = {n: port_ for n, port_, _ in brokers}
    title = "Tenants on their own brokers, as the multi-tenant guides write it."
    return head(title, port, sock) + f"""    acl tenant_acme req.payload(0,0),mqtt_field_value(connect,client_identifier) -m beg acme/
    acl is_ops req.payload(0,0),mqtt_field_value(connect,username) -m str ops
    acl from_lab src 127.0.0.7/32
    use_backend acme if tenant_acme
    use_backend ops if is_ops
    use_backend lab if from_lab
    default_backend shared

backend shared
    balance leastconn
    server b2 127.0.0.1:{p["b2"]}
    server b3 127.0.0.1:{p["b3"]}

backend acme
    balance leastconn
    server b1 127.0.0.1:{p["b1"]}
    server b2 127.0.0.1:{p["b2"]}

backend ops
    balance leastconn
    server b3 127.0.0.1:{p["b3"]}

backend lab
    balance leastconn
    server b1 127.0.0.1:{p["b1"]}
"""


class HAProxyStates:
    """Server states from HAProxy's stats socket (`show stat`)."""

    def __init__(self, path):
        self.path = path

    def __call__(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(self.path)
            s.sendall(b"show stat\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        finally:
            s.close()
        states = {}
        for line in out.decode().splitlines():
            f = line.split(",")
            if len(f) > 17 and f[0] == "brokers" and f[1] in NAMES:
                states[f[1]] = "up" if f[17] == "UP" else "down" if f[17] == "DOWN" else f[17]
        return states


class MqttlbStates:
    def __init__(self, mport):
        self.mport = mport

    def __call__(self):
        return {n: "up" if metric(self.mport, f'mqttlb_backend_up{{backend="{n}"}}') == 1 else "down"
                for n in NAMES}


class SideBySide(TestCase):
    """Three Mosquitto brokers; HAProxy runs self.cfg, then mqttlb its translation."""

    def setUp(self):
        if not os.access(HAPROXY, os.X_OK):
            self.skipTest("haproxy not installed")
        self.brokers = []
        for n in NAMES:
            p, port = self.start_mosquitto()
            self.brokers.append((n, port, p))
        d = self.tmpdir()
        self.port, self.mport = free_port(), free_port()
        self.sock = os.path.join(d, "haproxy.sock")
        self.cfg = os.path.join(d, "haproxy.cfg")
        self.json = os.path.join(d, "mqttlb.json")

    def write_cfg(self, text):
        with open(self.cfg, "w") as f:
            f.write(text)

    def both(self, through_haproxy, through_mqttlb):
        """Runs each balancer in turn on self.port; returns what each play recorded."""
        h = self.spawn([HAPROXY, "-db", "-f", self.cfg], name="haproxy")
        wait_until(lambda: port_open(self.port) or not h.alive(), 10, what="haproxy port")
        self.assertTrue(h.alive(), h.output())
        by_haproxy = through_haproxy()
        h.stop()

        m = self.spawn([binary("mqttlb"), "-c", self.json], name="mqttlb")
        self.addCleanup(lb_helpers._stopped_cleanly, self, m)
        m.wait_for_line(r"listening: mqtt on", timeout=20)
        wait_until(lambda: port_open(self.port), 10, what="mqttlb port")
        return by_haproxy, through_mqttlb()


class Compare(SideBySide):
    def setUp(self):
        super().setUp()
        self.write_cfg(haproxy_cfg(self.port, self.mport, self.sock, self.brokers))

    def broker(self, name):
        return next(p for n, _, p in self.brokers if n == name)

    def play(self, states):
        """The client script; returns what the balancer did."""
        wait_until(lambda: states() == dict.fromkeys(NAMES, "up"), 15, what="all brokers up")
        probes = Probes(self.brokers)
        self.addCleanup(probes.close)
        seen, socks = {}, {}
        for i in range(30):
            cid = f"dev-{i}"
            socks[cid], _ = mqtt_connect(self.port, cid)
            seen[cid] = probes.which(socks[cid], cid)
        rec = {"spread": sorted(list(seen.values()).count(n) for n in NAMES)}

        # Affinity: each round, one client of each other broker leaves, so
        # leastconn alone would not choose the sticky client's broker.
        s, _ = mqtt_connect(self.port, "sticky")
        home = probes.which(s, "sticky-0")
        s.sendall(DISCONNECT)
        s.close()
        stuck, back_home = [], []
        for r in range(3):
            leavers = [next(c for c, b in seen.items() if b == other and c in socks)
                       for other in NAMES if other != home]
            for c in leavers:
                socks.pop(c).close()
            s, _ = mqtt_connect(self.port, "sticky")
            stuck.append(probes.which(s, f"sticky-{r + 1}") == home)
            s.sendall(DISCONNECT)
            s.close()
            for c in leavers:  # and they come back to their own brokers
                socks[c], _ = mqtt_connect(self.port, c)
                back_home.append(probes.which(socks[c], f"{c}-back-{r}") == seen[c])
        rec["affinity"] = (all(stuck), all(back_home))

        # b2 freezes: it still accepts TCP but answers nothing.
        frozen = [c for c, b in seen.items() if b == "b2"]
        self.broker("b2").signal(signal.SIGSTOP)
        self.addCleanup(self.broker("b2").signal, signal.SIGCONT)
        wait_until(lambda: states()["b2"] == "down", 10, what="b2 marked down")
        rec["closed_when_down"] = sum(is_closed(socks[c], 5) for c in frozen)
        rec["others_kept"] = sum(not is_closed(socks[c], 0.05) for c in socks if c not in frozen)
        for c in frozen:
            socks[c].close()
            socks[c], _ = mqtt_connect(self.port, c)
            seen[c] = probes.which(socks[c], f"{c}-moved")
        rec["moved_to"] = sorted([seen[c] for c in frozen].count(n) for n in ("b1", "b3"))

        # b2 comes back.
        self.broker("b2").signal(signal.SIGCONT)
        wait_until(lambda: states()["b2"] == "up", 10, what="b2 up again")
        probes.close()
        probes = Probes(self.brokers)
        self.addCleanup(probes.close)
        moved = frozen[0]
        socks.pop(moved).close()
        s, _ = mqtt_connect(self.port, moved)
        rec["moved_client_stays"] = probes.which(s, f"{moved}-again") == seen[moved]
        n, _ = mqtt_connect(self.port, "newcomer")
        rec["newcomer_on"] = probes.which(n, "newcomer")
        for x in [s, n, *socks.values()]:
            x.close()
        return rec

    def test_haproxy_and_its_translation_place_clients_alike(self):
        imp = subprocess.run([binary("mqttlb"), "import-haproxy", self.cfg, "-o", self.json],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(imp.returncode, 1, imp.stderr)  # stats socket, check client id ...
        chk = subprocess.run([binary("mqttlb"), "--check", "-c", self.json], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(chk.returncode, 0, chk.stdout + chk.stderr)

        by_haproxy, by_mqttlb = self.both(lambda: self.play(HAProxyStates(self.sock)),
                                          lambda: self.play(MqttlbStates(self.mport)))

        expected = {"spread": [10, 10, 10], "affinity": (True, True), "closed_when_down": 10,
                    "others_kept": 20, "moved_to": [5, 5], "moved_client_stays": True,
                    "newcomer_on": "b2"}
        self.assertEqual(by_haproxy, expected, "HAProxy itself did not behave as its config says")
        self.assertEqual(by_mqttlb, by_haproxy)


class Routed(SideBySide):
    def setUp(self):
        super().setUp()
        self.write_cfg(routed_cfg(self.port, self.sock, self.brokers))

    def play(self):
        probes = Probes(self.brokers)
        self.addCleanup(probes.close)
        held = []

        def land(cid, **kw):
            s, _ = mqtt_connect(self.port, cid, **kw)
            held.append(s)  # held open: leastconn counts it
            return probes.which(s, cid.replace("/", "_"))

        def counts(names):
            return {n: names.count(n) for n in sorted(set(names))}

        rec = {"acme": counts([land(f"acme/dev-{i}") for i in range(10)]),
               "other": counts([land(f"other-{i}") for i in range(6)]),
               "ops": sorted({land(f"tool-{i}", username="ops") for i in range(2)}),
               "lab": sorted({land(f"lab-{i}", source="127.0.0.7") for i in range(2)}),
               "ops_from_lab": land("tool-lab", username="ops", source="127.0.0.7")}
        for s in held:
            s.close()
        return rec

    def test_routed_clients_land_alike(self):
        imp = subprocess.run([binary("mqttlb"), "import-haproxy", self.cfg, "-o", self.json],
                             capture_output=True, text=True, timeout=30)
        self.assertIn(imp.returncode, (0, 1), imp.stderr)
        self.assertNotIn("routing not translated", imp.stderr)
        with open(self.json) as f:
            routes = json.load(f)["routes"]
        self.assertEqual([r["match"] for r in routes],
                         [{"client_id_prefix": "acme/"}, {"username": "ops"},
                          {"source": "127.0.0.7"}])

        by_haproxy, by_mqttlb = self.both(self.play, self.play)

        expected = {"acme": {"b1": 5, "b2": 5}, "other": {"b2": 3, "b3": 3}, "ops": ["b3"],
                    "lab": ["b1"], "ops_from_lab": "b3"}
        self.assertEqual(by_haproxy, expected, "HAProxy itself did not route as its config says")
        self.assertEqual(by_mqttlb, by_haproxy)


if __name__ == "__main__":
    harness.main()
