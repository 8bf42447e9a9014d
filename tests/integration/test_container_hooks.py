"""The container image's scripts (deploy/container/), run on the host against
real processes: the HEALTHCHECK follows /readyz, the Kubernetes preStop hook
drains a replica through the admin API (every backend evacuated, paced, MQTT 5
clients told 0x8B) before its SIGTERM, and falls back to SIGTERM alone without
an admin API; mqttlb-broker-peers turns names into --peers so two real brokers
form one cluster."""
import os
import subprocess
import threading
import time

import harness
from harness import free_port, wait_until
from admin_helpers import read_disconnect, start_lb_admin
from broker_helpers import Paho
from lb_helpers import mqtt_connect, start_mqttlb
from deploy_helpers import DEPLOY

SCRIPTS = os.path.join(DEPLOY, "container")


def script(name):
    return os.path.join(SCRIPTS, name)


def hook_env(**kw):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update({k: str(v) for k, v in kw.items()})
    return env


class Healthcheck(harness.TestCase):
    def test_exit_code_follows_readyz(self):
        broker, bport = self.start_our_broker(name="b1")
        p, _port, admin, _path, _cfg = start_lb_admin(
            self, [("b1", bport)], health={"interval_ms": 100, "timeout_ms": 100, "rise": 1,
                                           "fall": 1})
        env = hook_env(MQTTLB_ADMIN=admin.addr)

        def check():
            return subprocess.run([script("mqttlb-healthcheck")], env=env, capture_output=True,
                                  text=True, timeout=10)
        wait_until(lambda: check().returncode == 0, 10, what="healthy while b1 is up")
        broker.stop()
        wait_until(lambda: check().returncode == 1, 10, what="unhealthy once no backend is up")
        r = check()
        self.assertIn("readyz: HTTP 503", r.stdout)
        # Nothing listens: unhealthy, within the script's own time bound.
        r = subprocess.run([script("mqttlb-healthcheck")], capture_output=True, text=True,
                           env=hook_env(MQTTLB_ADMIN=f"127.0.0.1:{free_port()}"), timeout=10)
        self.assertEqual(r.returncode, 1)


class PreStop(harness.TestCase):
    def run_hook(self, p, path, **env):
        return self.spawn([script("mqttlb-prestop")], name="prestop",
                          env=hook_env(MQTTLB_PID=p.pid, MQTTLB_BIN=harness.binary("mqttlb"),
                                       MQTTLB_CONFIG=path, MQTTLB_PRESTOP_WAIT_S=30, **env))

    def test_evacuates_every_backend_paced_then_stops(self):
        _, b1 = self.start_our_broker(name="b1")
        _, b2 = self.start_our_broker(name="b2")
        p, port, admin, path, _cfg = start_lb_admin(
            self, [("b1", b1), ("b2", b2)], token=True, limits={"shutdown_grace_ms": 20000})
        clients = [mqtt_connect(port, f"dev-{i}", level=5)[0] for i in range(30)]
        hook = self.run_hook(p, path, MQTTLB_PRESTOP_DELAY_S=2, MQTTLB_PRESTOP_RATE=10,
                             MQTTLB_PRESTOP_DEADLINE_S=20)
        # The delay: the replica still takes and places new clients.
        p.wait_for_line(r"mqttlb-prestop: serving 2s more", timeout=10)
        late, code = mqtt_connect(port, "late", level=5)
        self.assertEqual(code, 0)
        clients.append(late)
        got = {}

        def read(i, s):
            d = read_disconnect(s, timeout=30)
            got[i] = (d, time.monotonic())
        readers = [threading.Thread(target=read, args=(i, s)) for i, s in enumerate(clients)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(40)
        for s in clients:
            s.close()
        self.assertEqual(len(got), len(clients))
        # 0x8B server shutting down: the evacuation's reason, not the close of
        # a SIGTERM drain (which sends no DISCONNECT first).
        self.assertEqual([d and d[0] for d, _ in got.values()], [0x8B] * len(clients))
        ends = [t for _, t in got.values()]
        # 31 sessions over 2 backends at 10/s each: paced over more than a second.
        self.assertGreater(max(ends) - min(ends), 1.0)
        self.assertEqual(hook.p.wait(40), 0, hook.output())
        self.assertEqual(p.p.wait(10), 0, p.output())
        out = p.output()
        for b in ("b1", "b2"):
            self.assertRegex(out, rf"audit: POST /api/v1/backends/{b}/evacuate .*status=202")
        # SIGTERM only after the evacuation emptied the replica.
        self.assertLess(out.index("evacuating every backend"), out.index("mqttlb-prestop: SIGTERM"))
        self.assertNotIn("session(s) left", out)

    def test_without_admin_api_sigterm_alone_drains(self):
        _, b1 = self.start_our_broker(name="b1")
        p, port, _mport, path = start_mqttlb(self, [("b1", b1)])
        s, _ = mqtt_connect(port, "dev", level=4)
        hook = self.run_hook(p, path, MQTTLB_PRESTOP_DELAY_S=0)
        self.assertEqual(hook.p.wait(30), 0, hook.output())
        self.assertEqual(p.p.wait(10), 0, p.output())
        self.assertIn("draining by SIGTERM alone", p.output())
        s.close()


class BrokerPeers(harness.TestCase):
    def test_two_brokers_found_by_name_form_one_cluster(self):
        secret = os.path.join(self.tmpdir(), "cluster.secret")
        with open(secret, "w") as f:
            f.write(os.urandom(16).hex())
        os.chmod(secret, 0o600)
        links = [free_port(), free_port()]
        peers = " ".join(f"localhost:{c}" for c in links)
        ports = []
        for i, c in enumerate(links):
            port = free_port()
            node = self.spawn([script("mqttlb-broker-peers"), "--port", port, "--bind", "127.0.0.1",
                               "--name", f"n{i}", "--cluster-bind", f"127.0.0.1:{c}",
                               "--cluster-secret", secret], name=f"n{i}",
                              env=hook_env(MQTTLB_BROKER=harness.binary("mqttlb-broker"),
                                           MQTTLB_BROKER_PEERS=peers,
                                           MQTTLB_BROKER_PEERS_EXPECT=2))
            node.wait_for_line(rf"2 peer address\(es\): 127\.0\.0\.1:{links[0]},127\.0\.0\.1:{links[1]}")
            wait_until(lambda: harness.port_open(port), 10, what=f"n{i} listening")
            ports.append(port)
        sub = Paho(ports[1], client_id="sub")
        sub.sub("cl/#", qos=1)
        pub = Paho(ports[0], client_id="pub")
        # Until the link is up a publish may not cross: publish until one does.
        deadline = time.monotonic() + 15
        got = None
        while got is None and time.monotonic() < deadline:
            pub.pub("cl/x", b"across", qos=1)
            got = sub.get(timeout=0.5)
        self.assertIsNotNone(got, "no message crossed the cluster")
        self.assertEqual(got.payload, b"across")
        pub.stop()
        sub.stop()

    def test_no_names_is_a_usage_error(self):
        r = subprocess.run([script("mqttlb-broker-peers")], env=hook_env(), capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("MQTTLB_BROKER_PEERS is empty", r.stderr)


if __name__ == "__main__":
    harness.main()
