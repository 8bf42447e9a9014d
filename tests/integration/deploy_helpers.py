"""Helpers for the packaging tests (test_k8s_manifests.py, test_compose.py,
test_monitoring.py, test_container_*.py): the deploy/ files, PromQL names,
and an mqttlb with every metric family present (TLS listener, Redis affinity
store, DNS discovery, admin API). Built on harness.py, lb_helpers.py and
scale_helpers.py; same rules (loopback only, free ports, stop by PID)."""
import json
import os
import re
import shutil
import subprocess
import unittest
import urllib.parse
import urllib.request

import harness
import scale_helpers
from harness import free_port, wait_until
from lb_helpers import metric, start_mqttlb
from scale_helpers import Dnsmasq, start_redis
from tls_certs import make_certs

ROOT = os.path.abspath(os.path.join(harness.HERE, "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
DISCOVERY_NAME = "brokers.test"


def yaml():
    """Debian's python3-yaml, or the test is skipped."""
    try:
        import yaml as y
    except ImportError:
        raise unittest.SkipTest("python3-yaml not installed")
    return y


def load_yaml(path):
    with open(path) as f:
        return yaml().safe_load(f)


def tool(name, package):
    """Path of an installed tool, or the test is skipped with a clear line."""
    path = shutil.which(name)
    if not path:
        raise unittest.SkipTest(f"{name} not on PATH (Debian package {package})")
    return path


def mqttlb_check(tc, cfg, replace=None):
    """mqttlb --check on `cfg` (a dict), paths in `replace` {old: new} rewritten
    (files that exist only in the container). Returns the CompletedProcess."""
    text = json.dumps(cfg)
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    path = os.path.join(tc.tmpdir(), "check.json")
    with open(path, "w") as f:
        f.write(text)
    return subprocess.run([harness.binary("mqttlb"), "--check", "-c", path],
                          capture_output=True, text=True, timeout=30)


def token_file(tc):
    path = os.path.join(tc.tmpdir(), "token")
    with open(path, "w") as f:
        f.write("t0k3n-" + os.urandom(8).hex() + "\n")
    return path


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


# ---------------------------------------------------------------- PromQL
# Words in a PromQL expression that are not metric names.
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "count_values", "topk", "bottomk", "quantile",
    "stddev", "stdvar", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "histogram_quantile", "time", "abs", "clamp_min", "clamp_max", "label_replace", "vector",
    "scalar", "absent", "resets", "changes", "deriv", "predict_linear", "round", "sort",
    "sort_desc", "timestamp", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
    "count_over_time", "last_over_time", "humanize",
}


def strip_strings(expr):
    """The expression with every "..." string emptied (label values, regexes)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr):
    """The metric names an expression reads (`up` and mqttlb_* families)."""
    e = strip_strings(expr)
    e = re.sub(r"\{[^}]*\}", "{}", e)            # selectors' label names
    e = re.sub(r"\[[^\]]*\]", "[]", e)           # range durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for w in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if w in _PROMQL_WORDS or w.startswith("__"):
            continue
        names.add(w)
    return names


def selectors(expr):
    """[(metric name, [label names matched])] of every `name{...}` selector."""
    out = []
    for name, body in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}", expr):
        body = strip_strings(body)
        out.append((name, re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", body)))
    return out


def grouping_labels(expr):
    """Label names in by(...), without(...), on(...), ignoring(...), group_x(...)."""
    out = set()
    for body in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                           strip_strings(expr)):
        out.update(x.strip() for x in body.split(",") if x.strip())
    return out


def exposition(text):
    """Parses Prometheus text: ({family: type}, {sample name: set of label names})."""
    types, labels = {}, {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s", line)
        if m:
            names = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(3) or ""))
            labels.setdefault(m.group(1), set()).update(names)
    return types, labels


def dashboard_exprs(dash):
    """Every target expression of the dashboard (rows' nested panels too)."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if "expr" in t:
                    out.append((p.get("title"), t["expr"]))
            walk(p.get("panels", []))
    walk(dash["panels"])
    return out


def alert_rules():
    doc = load_yaml(os.path.join(DEPLOY, "prometheus", "alerts.yaml"))
    return [r for g in doc["groups"] for r in g["rules"]]


def grafana_to_promql(expr):
    """A dashboard expression as Prometheus can run it: Grafana's variables
    replaced by what "All" and a 1 m interval give."""
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
            .replace("$__range", "5m").replace('"$job"', '".*"').replace('"$instance"', '".*"'))


class Prometheus:
    """Debian's prometheus on a free loopback port, scraping `targets`
    (job mqttlb) every second and evaluating `rule_files` every second."""

    def __init__(self, tc, targets, rule_files=()):
        binary = tool("prometheus", "prometheus")
        self.port = free_port()
        d = tc.tmpdir()
        cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
               "rule_files": list(rule_files),
               "scrape_configs": [{"job_name": "mqttlb",
                                   "static_configs": [{"targets": list(targets)}]}]}
        path = os.path.join(d, "prometheus.yml")
        with open(path, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        self.proc = tc.spawn([binary, f"--config.file={path}", f"--storage.tsdb.path={d}/tsdb",
                              f"--web.listen-address=127.0.0.1:{self.port}"],
                             name=f"prometheus:{self.port}")
        self.proc.wait_for_line(r"Server is ready to receive web requests", timeout=60)

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 400/422 carry the error as JSON
            return json.load(e)

    def query(self, expr):
        return self.api("query", query=expr)


# ---------------------------------------------------------------- a full mqttlb
class Full:
    """mqttlb with every family registered: a plain and a TLS listener (test
    certificates, valid 2 days), one static backend and one from DNS (a real
    dnsmasq), a real Redis affinity store, metrics and the admin API (TCP,
    loopback, no token). Two reference brokers behind it."""

    def __init__(self, tc):
        if not scale_helpers.have(scale_helpers.REDIS) or not scale_helpers.have(scale_helpers.DNSMASQ):
            raise unittest.SkipTest("redis-server or dnsmasq not installed")
        self.pki = make_certs(tc.tmpdir())
        self.brokers = {}
        self.brokers["b1"], self.b1 = tc.start_our_broker(name="b1")
        self.brokers["b2"], self.b2 = tc.start_our_broker(name="b2")
        _, self.redis = start_redis(tc)
        self.dns = Dnsmasq(tc, ttl=1)
        self.dns.set_hosts([("127.0.0.1", DISCOVERY_NAME)])
        self.tls_port = free_port()
        self.admin_port = free_port()
        self.proc, self.port, self.mport, self.config = start_mqttlb(
            tc, [("b1", self.b1)],
            listeners=[{"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"},
                       {"name": "mqtts", "bind": f"127.0.0.1:{self.tls_port}",
                        "tls": {"cert": self.pki["server.crt"], "key": self.pki["server.key"]}}],
            discovery=[{"dns": DISCOVERY_NAME, "port": self.b2, "interval_ms": 60000,
                        "resolvers": [f"127.0.0.1:{self.dns.port}"]}],
            affinity_store={"redis": f"redis://127.0.0.1:{self.redis}/0"},
            admin={"bind": f"127.0.0.1:{self.admin_port}"},
            health={"interval_ms": 200, "timeout_ms": 150, "rise": 1})
        wait_until(lambda: metric(self.mport, "mqttlb_affinity_store_up") == 1, 10,
                   what="affinity store connected")
        discovered = f"{DISCOVERY_NAME}-127.0.0.1-{self.b2}"
        wait_until(lambda: metric(self.mport, f'mqttlb_backend_up{{backend="{discovered}"}}') == 1,
                   10, what="discovered backend up")
