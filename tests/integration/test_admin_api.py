"""The admin API over HTTP (docs/admin-api.md), against a real mqttlb in front
of real brokers: every endpoint, the error paths (400/401/404/405/409/413),
the token, TCP and unix sockets, audit lines, operator overrides across
reloads, client lookup and kick, reload results, readyz reasons, and the
admin server itself moving on reload."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time

import harness
from harness import binary, free_port, wait_until
from lb_helpers import _stopped_cleanly, is_closed, mqtt_connect, start_backends
from admin_helpers import (Admin, audit_lines, client_path, read_disconnect, rewrite,
                           start_lb_admin, stop_pid, write_token)

AUDIT = re.compile(r"audit: (POST|DELETE) (\S+) peer=(\S+) status=(\d+)")


def refused(admin):
    try:
        admin.get("/healthz")
        return False
    except OSError:
        return True


class AdminApi(harness.TestCase):
    def test_every_endpoint_and_error_path_without_token(self):
        _, bport = self.start_mosquitto()
        down = free_port()  # nothing listens: that backend is down
        p, port, a, path, cfg = start_lb_admin(
            self, [("b1", bport), {"name": "b2", "address": f"127.0.0.1:{down}"}],
            health={"interval_ms": 500, "username": "hc", "password": "hunter2"})
        r = a.get("/healthz")
        self.assertEqual((r.status, r.json), (200, {"status": "ok"}))
        self.assertTrue(r.header("content-type").startswith("application/json"))
        self.assertEqual(a.request("HEAD", "/healthz").raw, b"")
        self.assertEqual(a.get("/readyz").json, {"ready": True})

        bs = {b["name"]: b for b in a.get("/api/v1/backends").json["backends"]}
        self.assertEqual(set(bs), {"b1", "b2"})
        self.assertEqual((bs["b1"]["state"], bs["b2"]["state"]), ("up", "down"))
        for key in ("address", "admin", "weight", "effective_weight", "sessions", "last_check",
                    "evacuation"):
            self.assertIn(key, bs["b1"])
        self.assertEqual(bs["b1"]["last_check"]["result"], "pass")
        self.assertEqual(bs["b2"]["last_check"]["result"], "fail")
        self.assertEqual(bs["b2"]["last_check"]["reason"], "connect: connection refused")
        self.assertGreater(bs["b1"]["last_check"]["latency_s"], 0)

        s = a.get("/api/v1/status").json
        self.assertEqual([l["name"] for l in s["listeners"]], ["mqtt"])
        self.assertTrue(s["ready"])
        self.assertEqual(len(s["backends"]), 2)

        r = a.get("/api/v1/config")
        self.assertEqual(r.json["health"]["password"], "<redacted>")
        self.assertNotIn(b"hunter2", r.raw)
        self.assertEqual(r.json["admin"]["bind"], cfg["admin"]["bind"])

        r = a.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type").startswith("text/plain; version=0.0.4"))
        self.assertRegex(r.raw.decode(), r'mqttlb_connections_accepted_total\{listener="mqtt"\}')

        r = a.get("/")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type").startswith("text/html"))
        self.assertIn("default-src 'none'", r.header("content-security-policy"))
        self.assertIn(b"/api/v1/status", r.raw)

        def err(r, status):
            self.assertEqual(r.status, status, r)
            self.assertIsInstance(r.json["error"], str)
            return r

        err(a.get("/nope"), 404)
        err(a.get("/api/v1"), 404)
        err(a.get("/api/v1/backends/b1/evacuate/x"), 404)
        self.assertEqual(err(a.get("/api/v1/backends/b1"), 405).header("allow"), "POST")
        self.assertEqual(err(a.get("/api/v1/reload"), 405).header("allow"), "POST")
        self.assertEqual(err(a.get("/api/v1/upgrade"), 405).header("allow"), "POST")
        self.assertEqual(err(a.get("/api/v1/backends/b1/evacuate"), 405).header("allow"),
                         "POST, DELETE")
        self.assertEqual(err(a.post("/healthz"), 405).header("allow"), "GET, HEAD")
        self.assertEqual(err(a.request("PUT", "/api/v1/clients/x"), 405).header("allow"),
                         "GET, HEAD, DELETE")
        self.assertEqual(err(a.delete("/api/v1/config"), 405).header("allow"), "GET, HEAD")
        err(a.post("/api/v1/backends/nope", {"state": "drain"}), 404)
        err(a.post("/api/v1/backends/b1", raw=b"{nope"), 400)
        err(a.post("/api/v1/backends/b1", {"state": "sleep"}), 400)
        err(a.post("/api/v1/backends/b1", {}), 400)
        err(a.post("/api/v1/backends/b1", {"weight": 0}), 400)
        err(a.post("/api/v1/backends/b1", {"weight": 2, "colour": "red"}), 400)
        err(a.post("/api/v1/backends/b1"), 400)  # no body at all
        err(a.get("/api/v1/clients/%zz"), 400)
        err(a.get("/api/v1/clients/nobody"), 404)
        # The body cap: 64 KiB is taken, one byte more is 413 (declared or chunked).
        self.assertEqual(a.post("/api/v1/reload", raw=b" " * 65536).status, 200)
        err(a.post("/api/v1/reload", raw=b" " * 65537), 413)
        err(a.request("POST", "/api/v1/reload", raw=iter([b" " * 40000] * 3), chunked=True), 413)
        self.assertEqual(a.get("/healthz").status, 200)  # still serving

    def test_token_is_required_on_every_path_but_the_probes(self):
        _, bport = self.start_mosquitto()
        p, port, a, path, cfg = start_lb_admin(self, [("b1", bport)], token=True)
        n = len(p.lines)
        for method, path_ in [("GET", "/"), ("GET", "/metrics"), ("GET", "/api/v1/status"),
                              ("GET", "/api/v1/backends"), ("GET", "/api/v1/config"),
                              ("GET", "/api/v1/clients/x"), ("GET", "/nope"),
                              ("POST", "/api/v1/reload"), ("POST", "/api/v1/backends/b1"),
                              ("DELETE", "/api/v1/backends/b1/evacuate")]:
            for tok in ("", "x" * len(a.token), a.token[:-1], a.token + "x"):
                r = a.request(method, path_, token=tok or "", auth=bool(tok))
                self.assertEqual(r.status, 401, (method, path_, tok, r))
                self.assertTrue(r.header("www-authenticate").startswith("Bearer"))
        r = a.get("/api/v1/status", auth=False, headers={"Authorization": "Basic " + a.token})
        self.assertEqual(r.status, 401)
        # Refused mutations are audited too.
        wait_until(lambda: len(audit_lines(p, n)) >= 12, 5, what="audit lines")
        refused_lines = [AUDIT.search(l).groups() for l in audit_lines(p, n)]
        self.assertEqual(len(refused_lines), 3 * 4)
        self.assertTrue(all(g[3] == "401" for g in refused_lines))
        for probe in ("/healthz", "/readyz"):
            self.assertEqual(a.get(probe, auth=False).status, 200)
        self.assertEqual(a.get("/api/v1/status").status, 200)
        r = a.get("/api/v1/status", auth=False, headers={"Authorization": "bearer  " + a.token})
        self.assertEqual(r.status, 200)  # the scheme is case-insensitive
        # The status page (only) also takes the token as ?token=.
        self.assertEqual(a.get("/?token=" + a.token, auth=False).status, 200)
        self.assertEqual(a.get("/?token=wrong", auth=False).status, 401)
        self.assertEqual(a.get("/api/v1/status?token=" + a.token, auth=False).status, 401)
        self.assertEqual(a.get("/metrics").status, 200)

    def test_a_missing_or_empty_token_file_stops_the_start(self):
        _, bport = self.start_mosquitto()
        d = self.tmpdir()
        empty = os.path.join(d, "empty")
        with open(empty, "w") as f:
            f.write("\n")
        for token_file, msg in [(os.path.join(d, "missing"), "cannot read token file"),
                                (empty, "is empty")]:
            cfg = {"listeners": [{"name": "mqtt", "bind": f"127.0.0.1:{free_port()}"}],
                   "backends": [{"name": "b1", "address": f"127.0.0.1:{bport}"}],
                   "admin": {"bind": f"127.0.0.1:{free_port()}", "token_file": token_file}}
            path = os.path.join(d, "mqttlb.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            r = subprocess.run([binary("mqttlb"), "-c", path], capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 1, r)
            out = r.stderr.decode() + r.stdout.decode()
            self.assertRegex(out, "/admin/token_file: .*" + msg)
            self.assertNotIn("listening:", out, "it listened before failing")
            r = subprocess.run([binary("mqttlb"), "--check", "-c", path], capture_output=True,
                               timeout=30)
            self.assertEqual(r.returncode, 1)
            self.assertRegex(r.stderr.decode(), "^/admin/token_file: .*" + msg)

    def test_unix_socket(self):
        _, bport = self.start_mosquitto()
        p, port, a, path, cfg = start_lb_admin(self, [("b1", bport)], unix=True, token=True)
        sock_path = a.addr[5:]
        st = os.stat(sock_path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(a.get("/api/v1/status").status, 200)
        self.assertEqual(a.get("/api/v1/status", auth=False).status, 401)
        n = len(p.lines)
        self.assertEqual(a.post("/api/v1/backends/b1", {"weight": 3}).status, 200)
        wait_until(lambda: audit_lines(p, n), 5, what="audit line")
        self.assertEqual(AUDIT.search(audit_lines(p, n)[0]).groups(),
                         ("POST", "/api/v1/backends/b1", "unix", "200"))
        self.assertEqual(p.stop(), 0)
        self.assertFalse(os.path.exists(sock_path), "the socket file stays after the stop")

        # A stale socket file (nobody listens) is replaced at the start...
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sock_path)
        s.close()
        p2 = self.spawn([binary("mqttlb"), "-c", path], name="mqttlb-2")
        p2.wait_for_line(r"listening: mqtt on", 20)
        wait_until(lambda: not refused(a), 10, what="admin on the replaced socket")
        _stopped_cleanly(self, p2)  # exit 0, no sanitizer report
        # ...a live one, or a file that is not a socket, stops the start.
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        live.bind(sock_path)
        live.listen(1)
        self.addCleanup(live.close)
        r = subprocess.run([binary("mqttlb"), "-c", path], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"another process listens on unix:", r.stdout + r.stderr)
        live.close()
        os.unlink(sock_path)
        with open(sock_path, "w") as f:
            f.write("precious")
        r = subprocess.run([binary("mqttlb"), "-c", path], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"is not a socket", r.stdout + r.stderr)
        with open(sock_path) as f:
            self.assertEqual(f.read(), "precious")

    def test_one_audit_line_per_mutation(self):
        _, bport = self.start_mosquitto()
        p, port, a, path, cfg = start_lb_admin(self, [("b1", bport)])
        n = len(p.lines)
        calls = [("POST", "/api/v1/backends/b1", {"state": "drain"}, 200),
                 ("POST", "/api/v1/backends/b1", {"state": "ready"}, 200),
                 ("DELETE", "/api/v1/backends/b1/evacuate", None, 409),
                 ("POST", "/api/v1/backends/nope", {"weight": 2}, 404),
                 ("POST", "/healthz", None, 405),
                 ("DELETE", "/api/v1/clients/some%20one", None, 404),
                 ("POST", "/api/v1/reload", None, 200)]
        for method, path_, body, status in calls:
            self.assertEqual(a.request(method, path_, body=body).status, status)
        for path_ in ("/api/v1/backends", "/api/v1/status", "/api/v1/reload", "/"):
            a.get(path_)  # reads (and a refused GET) are not audited
        wait_until(lambda: len(audit_lines(p, n)) >= len(calls), 5, what="audit lines")
        got = [AUDIT.search(l).groups() for l in audit_lines(p, n)]
        self.assertEqual([(m, pa, st) for m, pa, _, st in got],
                         [(m, pa, str(st)) for m, pa, _, st in calls])
        self.assertTrue(all(re.fullmatch(r"127\.0\.0\.1:\d+", g[2]) for g in got))
        self.assertIn('body="{\\"state\\": \\"drain\\"}"', audit_lines(p, n)[0])

    def test_operator_overrides_survive_a_reload_unless_the_file_sets_the_key(self):
        (_, b1, _), (_, b2, _) = start_backends(self, 2)
        p, port, a, path, cfg = start_lb_admin(self, [("b1", b1), ("b2", b2)],
                                               health={"interval_ms": 300, "rise": 1})
        self.assertEqual(a.post("/api/v1/backends/b1", {"state": "drain"}).json["admin"], "drain")
        r = a.post("/api/v1/backends/b2", {"weight": 5})
        self.assertEqual((r.json["weight"], r.json["admin"]), (5, "ready"))
        socks = [mqtt_connect(port, f"ovr-{i}")[0] for i in range(4)]
        self.addCleanup(lambda: [s.close() for s in socks])
        wait_until(lambda: a.backend("b2")["sessions"] == 4, 5, what="clients on b2 only")
        self.assertEqual(a.backend("b1")["sessions"], 0)
        wait_until(lambda: a.backend("b1")["state"] == "drain", 5, what="b1 drain state")

        # The file does not set these keys: the overrides stay.
        p.signal(signal.SIGHUP)
        wait_until(lambda: a.get("/api/v1/status").json["reloads"], 10, what="reload noted")
        self.assertEqual((a.backend("b1")["admin"], a.backend("b2")["weight"]), ("drain", 5))
        self.assertEqual(a.backend("b2")["sessions"], 4, "a reload dropped sessions")
        # The file sets them: the file wins.
        cfg["backends"][0]["admin"] = "ready"
        cfg["backends"][1]["weight"] = 2
        rewrite(path, cfg)
        r = a.post("/api/v1/reload")
        self.assertEqual(r.status, 200, r)
        self.assertEqual((a.backend("b1")["admin"], a.backend("b2")["weight"]), ("ready", 2))
        wait_until(lambda: a.backend("b1")["state"] == "up", 5, what="b1 up again")
        # maint takes it out of rotation (no checks); ready brings it back.
        self.assertEqual(a.post("/api/v1/backends/b1", {"state": "maint"}).status, 200)
        wait_until(lambda: a.backend("b1")["state"] == "maint", 5, what="b1 maint")
        self.assertEqual(a.post("/api/v1/backends/b1", {"state": "ready"}).status, 200)
        wait_until(lambda: a.backend("b1")["state"] == "up", 5, what="b1 up after maint")

    def test_a_drain_applies_to_the_next_client_once_answered(self):
        (_, b1, _), (_, b2, _) = start_backends(self, 2)
        p, port, a, path, cfg = start_lb_admin(self, [("b1", b1), ("b2", b2)])
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for i in range(10):
            drained, other = ("b1", "b2") if i % 2 else ("b2", "b1")
            self.assertEqual(a.post(f"/api/v1/backends/{drained}", {"state": "drain"}).status, 200)
            socks.append(mqtt_connect(port, f"next-{i}")[0])  # at once: no wait for the health thread
            self.assertEqual(a.get(client_path(f"next-{i}")).json["backend"], other,
                             f"round {i}: placed on the backend drained just before")
            self.assertEqual(a.post(f"/api/v1/backends/{drained}", {"state": "ready"}).status, 200)

    def test_client_lookup_and_kick(self):
        _, bport = self.start_mosquitto()
        p, port, a, path, cfg = start_lb_admin(self, [("b1", bport)])
        cid = "dev/α β/1+%"
        s5, _ = mqtt_connect(port, cid, level=5, keepalive=42)
        s3, _ = mqtt_connect(port, "plain-311", level=4)
        self.addCleanup(s5.close)
        self.addCleanup(s3.close)
        r = a.get(client_path(cid))
        self.assertEqual(r.status, 200, r)
        j = r.json
        self.assertEqual((j["client_id"], j["backend"], j["listener"], j["protocol_version"],
                          j["keep_alive_s"], j["tls"]), (cid, "b1", "mqtt", "5.0", 42, None))
        self.assertRegex(j["peer"], r"^127\.0\.0\.1:\d+$")
        self.assertRegex(j["connected_since"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        # '/' may also come unencoded: the id is the rest of the path.
        raw = "/api/v1/clients/dev/" + "%CE%B1%20%CE%B2" + "/1+%25"
        self.assertEqual(a.get(raw).json["client_id"], cid)
        self.assertEqual(a.get(client_path("plain-311")).json["protocol_version"], "3.1.1")

        r = a.delete(client_path(cid))
        self.assertEqual((r.status, r.json), (200, {"kicked": cid}))
        self.assertEqual(read_disconnect(s5), (0x98, {}))  # 5.0: DISCONNECT 0x98, then closed
        self.assertTrue(is_closed(s5))
        self.assertEqual(a.delete(client_path("plain-311")).status, 200)
        self.assertIsNone(read_disconnect(s3), "a 3.1.1 client got a DISCONNECT")
        wait_until(lambda: a.get(client_path(cid)).status == 404, 5, what="kicked client gone")
        self.assertEqual(a.delete(client_path(cid)).status, 404)

    def test_reload_reports_changes_or_every_error(self):
        _, bport = self.start_mosquitto()
        p, port, a, path, cfg = start_lb_admin(self, [("b1", bport)])
        r = a.post("/api/v1/reload")
        self.assertEqual((r.status, r.json["ok"], r.json["changed"], r.json["trigger"]),
                         (200, True, [], "api"))
        cfg["backends"].append({"name": "b2", "address": f"127.0.0.1:{bport}"})
        rewrite(path, cfg)
        r = a.post("/api/v1/reload")
        self.assertEqual(r.status, 200, r)
        self.assertIn("/backends/b2: added", r.json["changed"])
        self.assertEqual([b["name"] for b in a.get("/api/v1/backends").json["backends"]],
                         ["b1", "b2"])
        cfg["backends"][1]["address"] = "127.0.0.1:70000"
        cfg["balance"] = {"algorithm": "fastest"}
        rewrite(path, cfg)
        check = subprocess.run([binary("mqttlb"), "--check", "-c", path], capture_output=True,
                               timeout=30)
        expected = check.stderr.decode().splitlines()
        self.assertGreaterEqual(len(expected), 2)
        r = a.post("/api/v1/reload")
        self.assertEqual(r.status, 400, r)
        self.assertEqual((r.json["ok"], r.json["errors"]), (False, expected))
        self.assertEqual(len(a.get("/api/v1/backends").json["backends"]), 2, "half applied")
        p.signal(signal.SIGHUP)
        wait_until(lambda: len(a.get("/api/v1/status").json["reloads"]) == 4, 10,
                   what="the SIGHUP noted")
        newest = a.get("/api/v1/status").json["reloads"][0]
        self.assertEqual((newest["trigger"], newest["ok"], newest["errors"]),
                         ("SIGHUP", False, expected))

    def test_readyz_reasons(self):
        p, port, a, path, cfg = start_lb_admin(
            self, [{"name": "gone", "address": f"127.0.0.1:{free_port()}"}])
        r = a.get("/readyz")
        self.assertEqual((r.status, r.json), (503, {"ready": False, "reason": "no backend is up"}))
        self.assertEqual(a.get("/healthz").status, 200)
        self.assertEqual(p.stop(), 0)

        _, bport = self.start_mosquitto()
        p, port, a, path, cfg = start_lb_admin(self, [("b1", bport)],
                                               limits={"shutdown_grace_ms": 20000})
        self.assertEqual(a.get("/readyz").status, 200)
        s, _ = mqtt_connect(port, "holder")
        wait_until(lambda: a.backend("b1")["sessions"] == 1, 5, what="held session")
        p.signal(signal.SIGTERM)
        p.wait_for_line(r"stop accepting", 5)
        r = a.get("/readyz")
        self.assertEqual(r.status, 503)
        self.assertIn("draining", r.json["reason"])
        s.close()  # the drain ends with the last session
        wait_until(lambda: not p.alive(), 10, what="exit after the drain")
        self.assertEqual(p.p.returncode, 0)

    def test_evacuate_endpoint(self):
        (_, b1, _), (_, b2, _) = start_backends(self, 2)
        p, port, a, path, cfg = start_lb_admin(self, [("b1", b1), ("b2", b2)])
        a.post("/api/v1/backends/b2", {"state": "drain"})
        socks = [mqtt_connect(port, f"ev-{i}")[0] for i in range(3)]
        self.addCleanup(lambda: [s.close() for s in socks])
        a.post("/api/v1/backends/b2", {"state": "ready"})
        wait_until(lambda: a.backend("b1")["sessions"] == 3, 5, what="3 sessions on b1")
        body = {"rate_per_s": 0.01, "deadline_s": 600, "reason": "server-shutting-down",
                "server_reference": "other:1883"}
        r = a.post("/api/v1/backends/b1/evacuate", body)
        self.assertEqual(r.status, 202, r)
        self.assertEqual((r.json["state"], r.json["reason"], r.json["server_reference"]),
                         ("running", "server-shutting-down", "other:1883"))
        wait_until(lambda: (a.backend("b1")["evacuation"] or {}).get("sessions") == 3, 5,
                   what="progress in /api/v1/backends")
        b = a.backend("b1")
        self.assertEqual((b["evacuation"]["state"], b["evacuation"]["moved"], b["admin"]),
                         ("running", 0, "drain"))
        self.assertEqual(a.post("/api/v1/backends/b1/evacuate", {}).status, 409)
        r = a.delete("/api/v1/backends/b1/evacuate")
        self.assertEqual((r.status, r.json["state"]), (200, "cancelled"))
        self.assertEqual(a.backend("b1")["admin"], "ready", "cancel restores the admin state")
        self.assertEqual(a.delete("/api/v1/backends/b1/evacuate").status, 409)
        self.assertEqual(a.post("/api/v1/backends/nope/evacuate", {}).status, 404)
        self.assertEqual(a.delete("/api/v1/backends/nope/evacuate").status, 404)
        for bad in ({"rate_per_s": -1}, {"reason": "bored"}, {"deadline_s": 0}, {"x": 1}, [1]):
            self.assertEqual(a.post("/api/v1/backends/b1/evacuate", bad).status, 400, bad)
        self.assertEqual(a.backend("b1")["sessions"], 3, "a cancelled evacuation moved clients")

    def test_the_admin_server_follows_reloads(self):
        _, bport = self.start_mosquitto()
        p, port, a, path, cfg = start_lb_admin(self, [("b1", bport)])
        # Moved by a reload asked over the API itself: answered, then the old one stops.
        cfg["admin"]["bind"] = f"127.0.0.1:{free_port()}"
        rewrite(path, cfg)
        t0 = time.monotonic()
        r = a.post("/api/v1/reload")
        self.assertEqual(r.status, 200, r)
        self.assertIn("/admin: changed", r.json["changed"])
        self.assertLess(time.monotonic() - t0, 10)
        b = Admin(cfg["admin"]["bind"])
        self.assertEqual(b.get("/healthz").status, 200)
        wait_until(lambda: refused(a), 10, what="the old admin address closed")
        # A token added, then rotated in place (same file, new content).
        cfg["admin"]["token_file"], b.token = write_token(self)
        rewrite(path, cfg)
        self.assertEqual(b.post("/api/v1/reload").status, 200)
        self.assertEqual(b.get("/api/v1/status", auth=False).status, 401)
        self.assertEqual(b.get("/api/v1/status").status, 200)
        old = b.token
        with open(cfg["admin"]["token_file"], "w") as f:
            f.write("rotated-token\n")
        self.assertEqual(b.post("/api/v1/reload").status, 200)
        self.assertEqual(b.get("/api/v1/status", token=old).status, 401)
        self.assertEqual(b.get("/api/v1/status", token="rotated-token").status, 200)
        b.token = "rotated-token"
        # An emptied token file fails the reload whole; the token stays.
        with open(cfg["admin"]["token_file"], "w") as f:
            f.write("\n")
        r = b.post("/api/v1/reload")
        self.assertEqual(r.status, 400, r)
        self.assertRegex(r.json["errors"][0], r"^/admin/token_file: token file .* is empty$")
        self.assertEqual(b.get("/api/v1/status").status, 200)
        with open(cfg["admin"]["token_file"], "w") as f:
            f.write("rotated-token\n")
        # An address someone else holds: the reload is refused whole.
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        cfg["admin"]["bind"] = "127.0.0.1:%d" % busy.getsockname()[1]
        rewrite(path, cfg)
        r = b.post("/api/v1/reload")
        self.assertEqual(r.status, 400, r)
        self.assertTrue(any(e.startswith("/admin/bind: ") for e in r.json["errors"]), r.json)
        # A unix socket that cannot be created: the reload applies, the API stays where it was.
        cfg["admin"]["bind"] = "unix:" + os.path.join(self.tmpdir(), "no", "such", "dir.sock")
        rewrite(path, cfg)
        n = len(p.lines)
        self.assertEqual(b.post("/api/v1/reload").status, 200)
        p.wait_for_line(r"the admin API stays on http://" + re.escape(b.addr), 5, start=n)
        self.assertEqual(b.get("/api/v1/status").status, 200)
        # No admin section: the API stops.
        del cfg["admin"]
        rewrite(path, cfg)
        p.signal(signal.SIGHUP)
        wait_until(lambda: refused(b), 10, what="admin API stopped")

    def test_a_binary_upgrade_over_the_api_hands_the_admin_api_over(self):
        _, bport = self.start_mosquitto()
        for unix in (False, True):
            p, port, a, path, cfg = start_lb_admin(self, [("b1", bport)], unix=unix, token=True,
                                                   upgrade={"deadline_s": 5})
            self.assertEqual(a.post("/api/v1/reload").status, 200)  # the old one's history
            r = a.post("/api/v1/upgrade")
            self.assertEqual(r.status, 202, r)
            new_pid = r.json["pid"]
            self.addCleanup(stop_pid, new_pid)
            wait_until(lambda: not p.alive(), 20, what="the old generation exits")
            self.assertEqual(p.p.returncode, 0)

            # The same address, now served by the new generation (no reload behind it).
            def new_one_answers():
                try:
                    r = a.get("/api/v1/status")
                except OSError:
                    return False
                return r.status == 200 and r.json["reloads"] == []

            wait_until(new_one_answers, 10, what="the new generation's admin API")
            self.assertEqual(a.get("/readyz").status, 200)
            self.assertEqual(a.get("/api/v1/status", auth=False).status, 401)
            if unix:
                self.assertEqual(stat.S_IMODE(os.stat(a.addr[5:]).st_mode), 0o660)
            stop_pid(new_pid)


if __name__ == "__main__":
    harness.main()
