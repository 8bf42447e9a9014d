"""A real browser through mqttlb: a page using MQTT.js (the `mqtt` package from
npm, its browser bundle dist/mqtt.min.js) in headless Chromium connects over
ws:// and wss:// to mqttlb listeners in both to_backend modes (brokers: Debian
mosquitto with a websockets listener), subscribes, publishes at QoS 1 and
receives its message. The page writes the outcome into its DOM and posts it
back to the test's HTTP server, which is what the test waits for.

The wss:// certificate comes from the test CA: Chromium trusts it through
--ignore-certificate-errors-spki-list with the server key's SPKI hash (no
blanket --ignore-certificate-errors).

SKIPs (with the reason) when chromium or npm is missing or the npm registry
cannot be reached; deploy/deps.sh installs both for the suite. MQTT.js is
fetched once per build directory (npm pack, cached in build/npm-cache)."""
import base64
import glob
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import tarfile
import threading
import urllib.parse

import harness
from harness import free_port, wait_until
from lb_helpers import start_mqttlb
from tls_certs import make_certs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MQTT_JS_VERSION = "5"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>mqttlb websocket</title>
<script src="/mqtt.min.js"></script></head>
<body><h1>MQTT over WebSocket through mqttlb</h1><pre id="result">running</pre>
<script>
const urls = JSON.parse(decodeURIComponent(location.hash.slice(1)));
function one(url, i) {
  return new Promise((resolve) => {
    const topic = "browser/" + i + "/" + Date.now();
    const c = mqtt.connect(url, {clientId: "browser-" + i + "-" + Date.now(),
                                 protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 8000});
    const done = (r) => { clearTimeout(t); try { c.end(true); } catch (e) {} resolve(r); };
    const t = setTimeout(() => done("timeout"), 12000);
    c.on("connect", () => c.subscribe(topic, {qos: 1}, (err) => {
      if (err) return done("suback error " + err);
      c.publish(topic, "hello from chromium via " + url, {qos: 1});
    }));
    c.on("message", (tp, m) => done("ok:" + m.toString()));
    c.on("error", (e) => done("error:" + e.message));
    c.on("close", () => done("closed"));
  });
}
(async () => {
  const out = {};
  for (let i = 0; i < urls.length; i++) out[urls[i]] = await one(urls[i], i);
  document.getElementById("result").textContent = JSON.stringify(out, null, 1);
  fetch("/result", {method: "POST", body: JSON.stringify(out)});
})();
</script></body></html>
"""


def mqtt_js(cache_root):
    """dist/mqtt.min.js of the npm `mqtt` package (cached), or None and why."""
    cache = os.path.join(cache_root, "npm-cache", f"mqtt-{MQTT_JS_VERSION}")
    path = os.path.join(cache, "package", "dist", "mqtt.min.js")
    if os.path.exists(path):
        return path, None
    if not shutil.which("npm"):
        return None, "npm is not installed (deploy/deps.sh installs it)"
    os.makedirs(cache, exist_ok=True)
    try:
        r = subprocess.run(["npm", "pack", f"mqtt@{MQTT_JS_VERSION}", "--pack-destination", cache,
                            "--silent"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "npm pack mqtt timed out (registry unreachable?)"
    tgz = glob.glob(os.path.join(cache, "mqtt-*.tgz"))
    if r.returncode != 0 or not tgz:
        return None, f"npm pack mqtt failed: {r.stderr.strip()[-300:]}"
    with tarfile.open(tgz[0]) as t:
        t.extract("package/dist/mqtt.min.js", cache)
    return path, None


def spki_hash(cert):
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium wants it."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], check=True,
                         capture_output=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True, timeout=30).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class PageServer:
    """Serves the page and mqtt.min.js on 127.0.0.1; records the posted result."""

    def __init__(self, tc, script):
        self.result = None
        server = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/mqtt.min.js"):
                    with open(script, "rb") as f:
                        body, ctype = f.read(), "text/javascript"
                else:
                    body, ctype = PAGE.encode(), "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                server.result = json.loads(self.rfile.read(n))
                self.send_response(204)
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        tc.addCleanup(self.httpd.server_close)
        tc.addCleanup(self.httpd.shutdown)


class Browser(harness.TestCase):
    def test_mqtt_js_in_chromium_over_ws_and_wss(self):
        if not CHROMIUM:
            self.skipTest("chromium is not installed (deploy/deps.sh installs it)")
        script, why = mqtt_js(harness.BUILD_DIR)
        if not script:
            self.skipTest(why)
        pki = make_certs(self.tmpdir())
        backends = []
        for i in range(2):
            wsp = free_port()
            _, port = self.start_mosquitto(extra_conf=f"listener {wsp} 127.0.0.1\n"
                                                      "protocol websockets")
            backends.append({"name": f"b{i + 1}", "address": f"127.0.0.1:{port}",
                             "websocket_port": wsp})
        tls = {"cert": pki["server.crt"], "key": pki["server.key"]}
        ports = {n: free_port() for n in ("ws", "wss", "ws-ws", "wss-ws")}

        def ws(name, mode, with_tls):
            l = {"name": name, "bind": f"127.0.0.1:{ports[name]}",
                 "websocket": {"path": "/mqtt", "to_backend": mode}}
            if with_tls:
                l["tls"] = tls
            return l

        ls = [{"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"},
              ws("ws", "mqtt", False), ws("wss", "mqtt", True),
              ws("ws-ws", "websocket", False), ws("wss-ws", "websocket", True)]
        start_mqttlb(self, backends, listeners=ls)
        urls = [f"ws://127.0.0.1:{ports['ws']}/mqtt", f"wss://127.0.0.1:{ports['wss']}/mqtt",
                f"ws://127.0.0.1:{ports['ws-ws']}/mqtt",
                f"wss://127.0.0.1:{ports['wss-ws']}/mqtt"]
        page = PageServer(self, script)
        profile = self.tmpdir()
        url = (f"http://127.0.0.1:{page.port}/#" + urllib.parse.quote(json.dumps(urls)))
        chrome = self.spawn([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-quic", "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={profile}",
                             f"--ignore-certificate-errors-spki-list={spki_hash(pki['server.crt'])}",
                             url], name="chromium")
        try:
            wait_until(lambda: page.result is not None or not chrome.alive(), 90,
                       what="the page's result")
        finally:
            chrome.stop()  # by PID (harness.Proc)
        self.assertIsNotNone(page.result, f"chromium exited early:\n{chrome.output()[-2000:]}")
        for u in urls:
            self.assertEqual(page.result.get(u), f"ok:hello from chromium via {u}", page.result)


if __name__ == "__main__":
    harness.main()
