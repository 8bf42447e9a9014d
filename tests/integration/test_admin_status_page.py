"""The status page (GET /) in headless Chromium (Debian's `chromium`): the page
is opened as /?token=T against a real mqttlb (one backend up with sessions,
one down, one being evacuated, one reload behind it), and the test asserts on
the DOM the page's script built (--dump-dom after it ran), not on the HTML
source; the screenshot is kept as an artifact and must be a real PNG."""
import html.parser
import os
import shutil
import signal
import struct
import subprocess
import tempfile

import harness
from harness import free_port, wait_until
from lb_helpers import mqtt_connect
from admin_helpers import client_path, start_lb_admin

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.environ.get("MQTTLB_ARTIFACTS",
                           os.path.join(tempfile.gettempdir(), "mqttlb-artifacts"))


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children, self.texts = [], []

    def text(self):
        return "".join(self.texts) + "".join(c.text() for c in self.children)

    def find_all(self, pred):
        out = [self] if pred(self) else []
        for c in self.children:
            out += c.find_all(pred)
        return out

    def by_id(self, id_):
        found = self.find_all(lambda n: n.attrs.get("id") == id_)
        assert found, f"no element #{id_} in the rendered DOM"
        return found[0]

    def rows(self):
        """The <tr>s of this table's <tbody>."""
        body = [c for c in self.children if c.tag == "tbody"]
        return [c for c in body[0].children if c.tag == "tr"] if body else []


class Dom(html.parser.HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr"}

    def __init__(self, text):
        super().__init__()
        self.root = self.cur = Node("#root", {}, None)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        if tag not in self.VOID:
            self.cur = n

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.texts.append(data)


def chromium(url, *extra, budget_ms=7000):
    """Runs headless Chromium on url; returns its stdout. Its process group is
    killed (by the PID we started) if it hangs."""
    profile = tempfile.mkdtemp(prefix="mqttlb-chromium-")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}", *extra, url]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = p.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError(f"chromium did not finish: {' '.join(args)}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert p.returncode == 0, f"chromium exited {p.returncode}: {err.decode()[-2000:]}"
    return out.decode("utf-8", "replace")


class StatusPage(harness.TestCase):
    def test_rendered_status_page(self):
        self.assertTrue(os.path.exists(CHROMIUM), "chromium is not installed (deploy/deps.sh)")
        _, b1 = self.start_our_broker(name="b1")
        _, b3 = self.start_mosquitto()
        p, port, a, path, cfg = start_lb_admin(
            self, [("b1", b1), {"name": "b2", "address": f"127.0.0.1:{free_port()}"},
                   ("b3", b3)], token=True)
        # Two sessions on b1, one on b3 (placement steered with drains).
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        a.post("/api/v1/backends/b3", {"state": "drain"})
        socks += [mqtt_connect(port, f"page-{i}")[0] for i in range(2)]
        a.post("/api/v1/backends/b3", {"state": "ready"})
        a.post("/api/v1/backends/b1", {"state": "drain"})
        socks.append(mqtt_connect(port, "page-b3")[0])
        a.post("/api/v1/backends/b1", {"state": "ready"})
        self.assertEqual(a.get(client_path("page-b3")).json["backend"], "b3")
        # b3 evacuated slowly (nothing moves during the test), one reload noted.
        r = a.post("/api/v1/backends/b3/evacuate", {"rate_per_s": 0.001, "deadline_s": 600})
        self.assertEqual(r.status, 202)
        wait_until(lambda: a.backend("b3")["evacuation"]["sessions"] == 1, 5, what="evacuation")
        self.assertEqual(a.post("/api/v1/reload").status, 200)
        status = a.get("/api/v1/status").json

        url = f"http://{a.addr}/?token={a.token}"
        dom = Dom(chromium(url, "--dump-dom")).root
        body = dom.find_all(lambda n: n.tag == "body")[0]
        # The script ran and refreshed by itself (every 2 s of the 7 s budget).
        self.assertGreaterEqual(int(body.attrs.get("data-renders", "0")), 3, "no refreshes")
        self.assertEqual(dom.by_id("version").text(), status["version"])
        self.assertEqual(dom.by_id("ready").text(), "ready")
        self.assertEqual(dom.by_id("connections").text(), "3")
        self.assertIn("display: none", dom.by_id("error").attrs.get("style", ""))

        rows = {r.attrs["data-backend"]: r for r in dom.by_id("backends").rows()}
        self.assertEqual(list(rows), ["b1", "b2", "b3"])

        def cell(row, cls):
            found = row.find_all(lambda n: n.tag == "td" and cls in n.attrs.get("class", ""))
            self.assertTrue(found, f"no {cls} cell")
            return found[0]

        expect = {"b1": ("up", "2", "pass"), "b2": ("down", "0", "fail"),
                  "b3": ("drain", "1", "pass")}
        for name, (state, sessions, check) in expect.items():
            badge = cell(rows[name], "state").children[0]
            self.assertEqual((badge.text(), badge.attrs["class"]), (state, f"badge {state}"))
            self.assertEqual(cell(rows[name], "sessions").text(), sessions)
            self.assertTrue(cell(rows[name], "check").text().startswith(check), name)
            self.assertRegex(cell(rows[name], "latency").text(), r"^\d+\.\d ms$")
        self.assertEqual(cell(rows["b3"], "evacuation").text().strip(), "running 0/1")
        self.assertEqual(cell(rows["b1"], "evacuation").text(), "–")

        listeners = dom.by_id("listeners").rows()
        self.assertEqual([c.text() for c in listeners[0].children],
                         ["mqtt", cfg["listeners"][0]["bind"], "no"])
        evs = dom.by_id("evacuations").rows()
        self.assertEqual((evs[0].attrs["data-backend"], evs[0].children[1].text()),
                         ("b3", "running"))
        reloads = dom.by_id("reloads").rows()
        self.assertEqual([c.text() for c in reloads[0].children[1:]],
                         ["api", "ok", "nothing changed"])

        # The screenshot: a real PNG of the rendered page, kept for people to look at.
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "status_page.png")
        if os.path.exists(shot):
            os.unlink(shot)
        chromium(url, "--window-size=1280,900", f"--screenshot={shot}", "--hide-scrollbars")
        with open(shot, "rb") as f:
            png = f.read()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(struct.unpack("!II", png[16:24]), (1280, 900))
        self.assertGreater(len(png), 20000, "a blank page compresses to far less")
        print(f"status page screenshot: {shot}")


if __name__ == "__main__":
    harness.main()
