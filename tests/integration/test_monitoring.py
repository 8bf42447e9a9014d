"""deploy/prometheus/alerts.yaml and deploy/grafana/mqttlb.json stay true to
what mqttlb exports: promtool checks and unit-tests the rules (every alert
fires in a test case), a live mqttlb with every feature that creates series
(TLS listener, Redis store, DNS discovery, admin API, and a WebSocket listener
when the binary has one) exports every metric name and label the dashboard
and the rules read, its exposition passes `promtool check metrics`, and a real
Prometheus scraping it evaluates every rule without error, answers every
dashboard expression, and raises MqttlbBackendDown (pending) when a broker
stops."""
import json
import os
import subprocess
import urllib.request

import harness
from harness import free_port, wait_until
from lb_helpers import metric, paho_round_trip, start_mqttlb
from deploy_helpers import (DEPLOY, Full, Prometheus, alert_rules, dashboard_exprs,
                            exposition, grafana_to_promql, grouping_labels, load_yaml,
                            metric_names, selectors, tool)

PROM = os.path.join(DEPLOY, "prometheus")
DASHBOARD = os.path.join(DEPLOY, "grafana", "mqttlb.json")
# Labels Prometheus adds to every scraped series, and histogram buckets'.
SCRAPE_LABELS = {"job", "instance", "le"}
WEBSOCKET = "mqttlb_websocket_"


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def referenced():
    """[(where, PromQL expression)] of every dashboard target and alert rule."""
    out = [(f"dashboard panel {t!r}", grafana_to_promql(e)) for t, e in dashboard_exprs(dashboard())]
    out += [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    return out


def family(sample, families):
    """The metric family of a sample or histogram/summary series name."""
    if sample in families:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix) and sample[:-len(suffix)] in families:
            return sample[:-len(suffix)]
    return None


def scrape(mport):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        return r.read().decode()


def binary_has_websocket(tc):
    """Whether the mqttlb under test knows websocket listeners (mqttlb --check)."""
    path = os.path.join(tc.tmpdir(), "ws.json")
    with open(path, "w") as f:
        json.dump({"listeners": [{"name": "ws", "bind": "127.0.0.1:1", "websocket": {}}],
                   "backends": [{"name": "b", "address": "127.0.0.1:1"}]}, f)
    r = subprocess.run([harness.binary("mqttlb"), "--check", "-c", path], capture_output=True,
                       text=True, timeout=30)
    return r.returncode == 0


class Rules(harness.TestCase):
    def test_promtool_checks_and_unit_tests_the_rules(self):
        promtool = tool("promtool", "prometheus")
        r = subprocess.run([promtool, "check", "rules", "alerts.yaml"], cwd=PROM,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run([promtool, "test", "rules", "alerts_test.yaml"], cwd=PROM,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)

    def test_every_alert_fires_and_stays_quiet_in_a_unit_test(self):
        tests = load_yaml(os.path.join(PROM, "alerts_test.yaml"))["tests"]
        fired, quiet = set(), set()
        for t in tests:
            for a in t.get("alert_rule_test", []):
                (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
        for rule in alert_rules():
            self.assertIn(rule["alert"], fired, "no unit test where it fires")
            self.assertIn(rule["alert"], quiet, "no unit test where it stays quiet")
            self.assertIn(rule["labels"]["severity"], ("critical", "warning"))
            self.assertTrue(rule["annotations"]["summary"] and rule["annotations"]["description"])

    def test_every_alert_is_documented(self):
        with open(os.path.join(harness.HERE, "..", "..", "docs", "monitoring.md")) as f:
            doc = f.read()
        for rule in alert_rules():
            self.assertIn(f"`{rule['alert']}`", doc)


class Dashboard(harness.TestCase):
    def test_panels_are_well_formed(self):
        d = dashboard()
        ids, cells = set(), set()

        def walk(panels):
            for p in panels:
                self.assertNotIn(p["id"], ids, f"panel id {p['id']} twice")
                ids.add(p["id"])
                g = p["gridPos"]
                self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
                for x in range(g["x"], g["x"] + g["w"]):
                    for y in range(g["y"], g["y"] + g["h"]):
                        self.assertNotIn((x, y), cells, f"{p['title']!r} overlaps another panel")
                        cells.add((x, y))
                if p["type"] != "row":
                    self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
                    self.assertTrue(p["targets"], p["title"])
                walk(p.get("panels", []))
        walk(d["panels"])
        names = {v["name"] for v in d["templating"]["list"]}
        self.assertEqual(names, {"datasource", "job", "instance"})
        for title, expr in dashboard_exprs(d):
            self.assertIn('instance=~"$instance"', expr, title)  # the replica picker applies


class Live(harness.TestCase):
    """One mqttlb with every feature, after a CONNECT round trip on the plain
    and on the TLS listener (so the per-code CONNACK series exist)."""

    def start(self):
        self.full = Full(self)
        rc, got = paho_round_trip(self.full.port, "mon-plain", "mon/t", b"x")
        self.assertEqual((rc, got), (0, [b"x"]))
        rc, got = paho_round_trip(self.full.tls_port, "mon-tls", "mon/t", b"y",
                                  ca=self.full.pki["ca.crt"])
        self.assertEqual((rc, got), (0, [b"y"]))
        wait_until(lambda: metric(self.full.mport, "mqttlb_connections_active") == 0, 10,
                   what="sessions closed")
        return scrape(self.full.mport)

    def test_every_referenced_metric_and_label_is_exported(self):
        text = self.start()
        types, labels = exposition(text)
        missing = []
        for where, expr in referenced():
            for name in sorted(metric_names(expr)):
                if name == "up" or name.startswith(WEBSOCKET):
                    continue  # up: Prometheus's own; WebSocket: test below
                fam = family(name, types)
                if fam is None or name not in labels:
                    missing.append(f"{where}: {name}")
                    continue
                used = {l for n, ls in selectors(expr) if n == name for l in ls}
                for label in used - SCRAPE_LABELS - labels[name]:
                    missing.append(f"{where}: {name} has no label {label!r}")
            # A grouping label must exist on some series the expression reads.
            have = set().union(*(labels.get(n, set()) for n in metric_names(expr)))
            for label in grouping_labels(expr) - SCRAPE_LABELS - have:
                missing.append(f"{where}: no series it reads has label {label!r}")
        self.assertEqual(missing, [])

    def test_exposition_passes_promtool_check_metrics(self):
        promtool = tool("promtool", "prometheus")
        text = self.start()
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        # exposer_request_latencies is prometheus-cpp's own summary (no unit
        # suffix): the one lint finding allowed, and only it.
        problems = [l for l in (r.stdout + r.stderr).splitlines()
                    if l.strip() and not l.startswith("exposer_request_latencies")]
        self.assertEqual(problems, [], r.stdout + r.stderr)

    def test_websocket_metrics_are_exported(self):
        if not binary_has_websocket(self):
            self.skipTest("this mqttlb has no websocket listener yet: the dashboard's "
                          "mqttlb_websocket_* panels are unchecked")
        _, b1 = self.start_our_broker(name="b1")
        p, _port, mport, _path = start_mqttlb(
            self, [("b1", b1)],
            listeners=[{"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"},
                       {"name": "ws", "bind": f"127.0.0.1:{free_port()}",
                        "websocket": {"path": "/mqtt"}}])
        types, labels = exposition(scrape(mport))
        wanted = {n for _, e in referenced() for n in metric_names(e) if n.startswith(WEBSOCKET)}
        self.assertTrue(wanted)
        self.assertEqual(sorted(n for n in wanted if n not in labels), [])
        for where, expr in referenced():
            for name, used in selectors(expr):
                if name.startswith(WEBSOCKET):
                    self.assertEqual(set(used) - SCRAPE_LABELS - labels[name], set(), where)
            for name in metric_names(expr):
                if name.startswith(WEBSOCKET):
                    self.assertEqual(grouping_labels(expr) - SCRAPE_LABELS - labels[name], set(),
                                     where)


class WithPrometheus(harness.TestCase):
    def test_prometheus_scrapes_evaluates_rules_and_answers_the_dashboard(self):
        tool("prometheus", "prometheus")
        full = Full(self)
        prom = Prometheus(self, [f"127.0.0.1:{full.mport}"],
                          rule_files=[os.path.join(PROM, "alerts.yaml")])

        def value(expr):
            r = prom.query(expr)
            self.assertEqual(r["status"], "success", f"{expr}: {r}")
            return r["data"]["result"]
        wait_until(lambda: [s["value"][1] for s in value('up{job="mqttlb"}')] == ["1"], 20,
                   what="mqttlb scraped")
        backends = {s["metric"]["backend"]: s["value"][1] for s in value("mqttlb_backend_up")}
        self.assertEqual(set(backends.values()), {"1"})
        self.assertEqual(len(backends), 2)
        # Every rule evaluated (the groups run every second here) without error.
        nrules = len(alert_rules())

        def rules():
            groups = prom.api("rules")["data"]["groups"]
            return [r for g in groups for r in g["rules"]]
        wait_until(lambda: len(rules()) == nrules and all(r.get("lastEvaluation", "").startswith("20")
                                                          and r["health"] != "unknown"
                                                          for r in rules()), 20,
                   what="every rule evaluated")
        self.assertEqual([(r["name"], r.get("lastError")) for r in rules() if r["health"] != "ok"],
                         [])
        for title, expr in dashboard_exprs(dashboard()):
            value(grafana_to_promql(expr))  # status success: PromQL Prometheus accepts
        # A broker stops: its backend goes down, MqttlbBackendDown is pending.
        full.brokers["b1"].stop()
        wait_until(lambda: any(a["labels"].get("alertname") == "MqttlbBackendDown"
                               and a["labels"].get("backend") == "b1"
                               and a["state"] == "pending"
                               for a in prom.api("alerts")["data"]["alerts"]), 20,
                   what="MqttlbBackendDown pending for b1")


if __name__ == "__main__":
    harness.main()
