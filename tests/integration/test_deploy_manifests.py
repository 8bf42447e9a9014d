"""deploy/k8s (kustomize) and deploy/compose.yaml hold together: rendered by
the real tools (`kubectl kustomize`, `docker-compose config`; a missing tool
is a skip with its reason), every Service and PodDisruptionBudget selects the
pods it is meant for on ports they have, the probes and the preStop hook use
the admin API of the config that is shipped beside them, the grace periods
cover the drain, and the shipped configs validate with `mqttlb --check`."""
import json
import os
import shutil
import subprocess
import unittest

import harness
from deploy_helpers import DEPLOY, load_yaml, mqttlb_check, port_of, token_file, tool, yaml

K8S = os.path.join(DEPLOY, "k8s")
CONTAINERFILE = os.path.join(DEPLOY, "container", "Containerfile")


def render_k8s():
    """The objects `kubectl kustomize deploy/k8s` renders."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise unittest.SkipTest("kubectl not on PATH (not installed here: Debian's "
                                "kubernetes-client conflicts with the kubectl these machines have)")
    r = subprocess.run([kubectl, "kustomize", K8S], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"kubectl kustomize failed: {r.stderr}")
    return [o for o in yaml().safe_load_all(r.stdout) if o]


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


class KustomizeTree(harness.TestCase):
    """Without kubectl too: every file kustomization.yaml names parses, each
    object has apiVersion, kind and a name, and the generated files exist."""

    def test_files_parse(self):
        k = load_yaml(os.path.join(K8S, "kustomization.yaml"))
        self.assertEqual(k["kind"], "Kustomization")
        names = set()
        for res in k["resources"]:
            with open(os.path.join(K8S, res)) as f:
                for o in yaml().safe_load_all(f):
                    if not o:
                        continue
                    self.assertTrue(o.get("apiVersion") and o.get("kind"), res)
                    key = (o["kind"], o["metadata"]["name"])
                    self.assertNotIn(key, names, f"{res}: {key} twice")
                    names.add(key)
        for gen in k["configMapGenerator"]:
            for f in gen["files"]:
                with open(os.path.join(K8S, f)) as fh:
                    json.load(fh)
        self.assertIn(("Deployment", "mqttlb"), names)


class Kubernetes(harness.TestCase):
    def setUp(self):
        self.objs = render_k8s()
        self.workloads = {**by_kind(self.objs, "Deployment"), **by_kind(self.objs, "StatefulSet")}
        self.dep = self.workloads["mqttlb"]
        self.pod = self.dep["spec"]["template"]["spec"]
        self.ctr = self.pod["containers"][0]
        cm = next(iter(by_kind(self.objs, "ConfigMap").values()))
        self.cm = cm
        self.cfg = json.loads(cm["data"]["mqttlb.json"])

    def test_the_objects_the_issue_asks_for(self):
        kinds = sorted((o["kind"], o["metadata"]["name"]) for o in self.objs)
        for want in [("Deployment", "mqttlb"), ("Service", "mqttlb"), ("Service", "brokers"),
                     ("PodDisruptionBudget", "mqttlb"), ("Deployment", "redis"),
                     ("Service", "redis"), ("StatefulSet", "broker"), ("Namespace", "mqtt")]:
            self.assertIn(want, kinds)
        for o in self.objs:
            if o["kind"] != "Namespace":
                self.assertEqual(o["metadata"].get("namespace"), "mqtt", o["metadata"]["name"])
        svc = by_kind(self.objs, "Service")
        self.assertEqual(svc["mqttlb"]["spec"]["type"], "LoadBalancer")
        self.assertEqual(svc["mqttlb"]["spec"]["externalTrafficPolicy"], "Local")
        self.assertEqual(svc["brokers"]["spec"]["clusterIP"], "None")  # headless: one A per pod
        self.assertGreaterEqual(self.dep["spec"]["replicas"], 2)
        anti = self.pod["affinity"]["podAntiAffinity"]
        term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
        self.assertTrue(matches(term["labelSelector"]["matchLabels"],
                                self.dep["spec"]["template"]["metadata"]["labels"]))
        self.assertEqual(self.ctr["image"], "localhost/mqttlb:latest")  # kustomize images:
        self.assertTrue(self.pod["securityContext"]["runAsNonRoot"])

    def test_services_and_budgets_select_pods_on_ports_they_have(self):
        for kind in ("Service", "PodDisruptionBudget"):
            for name, o in by_kind(self.objs, kind).items():
                sel = o["spec"]["selector"]
                sel = sel.get("matchLabels", sel)
                hit = [w for w in self.workloads.values()
                       if matches(sel, w["spec"]["template"]["metadata"]["labels"])]
                self.assertEqual(len(hit), 1, f"{kind} {name} selects {len(hit)} workloads")
                if kind == "Service":
                    ports = {p["name"]: p["containerPort"]
                             for c in hit[0]["spec"]["template"]["spec"]["containers"]
                             for p in c.get("ports", [])}
                    for p in o["spec"]["ports"]:
                        self.assertIn(p["targetPort"], ports, f"Service {name}")
        for w in self.workloads.values():
            self.assertTrue(matches(w["spec"]["selector"]["matchLabels"],
                                    w["spec"]["template"]["metadata"]["labels"]))

    def test_probes_and_prestop_use_the_admin_api_of_the_shipped_config(self):
        ports = {p["name"]: p["containerPort"] for p in self.ctr["ports"]}
        self.assertEqual(ports["admin"], port_of(self.cfg["admin"]["bind"]))
        self.assertEqual(ports["metrics"], port_of(self.cfg["metrics"]["bind"]))
        self.assertEqual(ports["mqtt"], port_of(self.cfg["listeners"][0]["bind"]))
        self.assertEqual(self.ctr["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "admin"})
        self.assertEqual(self.ctr["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "admin"})
        hook = self.ctr["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(hook, ["/usr/local/bin/mqttlb-prestop"])
        with open(CONTAINERFILE) as f:
            self.assertIn("deploy/container/mqttlb-prestop", f.read())  # in the image
        env = env_of(self.ctr)
        self.assertEqual(port_of(env["MQTTLB_ADMIN"]), ports["admin"])
        # The kubelet's SIGKILL must not cut the drain short.
        drain = (int(env["MQTTLB_PRESTOP_DELAY_S"]) + int(env["MQTTLB_PRESTOP_DEADLINE_S"])
                 + self.cfg["limits"]["shutdown_grace_ms"] / 1000)
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], drain)
        # The token file of the config is the mounted Secret.
        mounts = {m["name"]: m["mountPath"] for m in self.ctr["volumeMounts"]}
        self.assertTrue(self.cfg["admin"]["token_file"].startswith(mounts["admin-token"] + "/"))
        self.assertEqual(mounts["config"], "/etc/mqttlb")
        vols = {v["name"]: v for v in self.pod["volumes"]}
        # kustomize's hashed ConfigMap name: a changed mqttlb.json rolls the pods.
        self.assertEqual(vols["config"]["configMap"]["name"], self.cm["metadata"]["name"])
        self.assertRegex(self.cm["metadata"]["name"], r"^mqttlb-config-[a-z0-9]{10}$")

    def test_shipped_config_validates_and_discovers_the_headless_service(self):
        r = mqttlb_check(self, self.cfg, {self.cfg["admin"]["token_file"]: token_file(self)})
        self.assertEqual(r.returncode, 0, r.stderr)
        d = self.cfg["discovery"][0]
        svc = by_kind(self.objs, "Service")["brokers"]
        self.assertEqual(d["dns"], "brokers")  # the namespace's search domain resolves it
        self.assertIn(d["port"], [p["port"] for p in svc["spec"]["ports"]])
        self.assertTrue(self.cfg["affinity_store"]["redis"].startswith("redis://redis:6379/"))
        broker = self.workloads["broker"]["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(env_of(broker)["MQTTLB_BROKER_PEERS_EXPECT"],
                         str(self.workloads["broker"]["spec"]["replicas"]))


class Compose(harness.TestCase):
    def setUp(self):
        dc = tool("docker-compose", "docker-compose")
        r = subprocess.run([dc, "-f", os.path.join(DEPLOY, "compose.yaml"), "config"],
                           capture_output=True, text=True, timeout=60, cwd=self.tmpdir())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.doc = yaml().safe_load(r.stdout)
        self.svc = self.doc["services"]

    def test_replicas_brokers_redis_prometheus(self):
        lbs = [n for n in self.svc if n.startswith("mqttlb-")]
        brokers = [n for n in self.svc if n.startswith("broker-")]
        self.assertEqual(len(lbs), 2)
        self.assertEqual(len(brokers), 3)
        for n in ("redis", "prometheus", "grafana"):
            self.assertIn(n, self.svc)
        with open(os.path.join(DEPLOY, "compose", "mqttlb.json")) as f:
            cfg = json.load(f)
        for n in lbs:
            s = self.svc[n]
            self.assertIn(os.path.join(DEPLOY, "compose", "mqttlb.json") + ":/etc/mqttlb/mqttlb.json:ro",
                          s["volumes"])
            for p in s.get("ports", []):  # published on the host's loopback only
                self.assertTrue(str(p.get("host_ip", p) if isinstance(p, dict) else p)
                                .startswith("127.0.0.1"), p)
            grace = float(s["stop_grace_period"].rstrip("s"))
            self.assertGreater(grace, cfg["limits"]["shutdown_grace_ms"] / 1000)
        for n in brokers:
            s = self.svc[n]
            self.assertIn(cfg["discovery"][0]["dns"], s["networks"]["mqtt"]["aliases"])
            self.assertIn("--port", s["command"])
            self.assertEqual(s["command"][s["command"].index("--port") + 1],
                             str(cfg["discovery"][0]["port"]))
            self.assertEqual(s["environment"]["MQTTLB_BROKER_PEERS_EXPECT"], str(len(brokers)))
        self.assertEqual(cfg["affinity_store"]["redis"], "redis://redis:6379/0")
        r = mqttlb_check(self, cfg)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Prometheus scrapes every replica's metrics port, with the rules.
        prom = load_yaml(os.path.join(DEPLOY, "compose", "prometheus.yml"))
        targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
        self.assertEqual(sorted(targets), sorted(f"{n}:{port_of(cfg['metrics']['bind'])}" for n in lbs))
        mounts = self.svc["prometheus"]["volumes"]
        self.assertIn(os.path.join(DEPLOY, "prometheus", "alerts.yaml") + ":" + prom["rule_files"][0]
                      + ":ro", mounts)

    def test_prometheus_config_passes_promtool(self):
        promtool = tool("promtool", "prometheus")
        prom = load_yaml(os.path.join(DEPLOY, "compose", "prometheus.yml"))
        prom["rule_files"] = [os.path.join(DEPLOY, "prometheus", "alerts.yaml")]
        path = os.path.join(self.tmpdir(), "prometheus.yml")
        with open(path, "w") as f:
            json.dump(prom, f)
        r = subprocess.run([promtool, "check", "config", path], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    harness.main()
