"""`mqttlb ctl` against a real mqttlb (docs/admin-api.md "mqttlb ctl"): every
command, human tables and --json, the admin address and token read from the
config file (TCP and unix socket), and the exit codes scripts rely on:
0 done, 1 refused by the server, 2 usage, 3 admin API unreachable."""
import json
import os
import re
import subprocess

import harness
from harness import binary, free_port, wait_until
from lb_helpers import mqtt_connect, start_backends
from admin_helpers import client_path, ctl, read_disconnect, rewrite, start_lb_admin, stop_pid


class AdminCtl(harness.TestCase):
    def setUp(self):
        (_, self.b1, _), (_, self.b2, _) = start_backends(self, 2)

    def lb(self, **kw):
        return start_lb_admin(self, [("b1", self.b1), ("b2", self.b2)], **kw)

    def test_reads_and_tables_and_json(self):
        kw = {"health": {"username": "u", "password": "s3cret"}}
        # b2 unreachable: its row says down.
        p, port, a, path, cfg = start_lb_admin(
            self, [("b1", self.b1), {"name": "b2", "address": f"127.0.0.1:{free_port()}"}],
            token=True, **kw)
        rc, out, err = ctl("-c", path, "backends")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "ADDRESS", "STATE", "ADMIN", "WEIGHT",
                                            "EFFECTIVE", "SESSIONS", "CHECK", "LATENCY",
                                            "EVACUATION"])
        rows = {l.split()[0]: l.split() for l in lines[1:]}
        self.assertEqual((rows["b1"][2], rows["b1"][3], rows["b1"][7]), ("up", "ready", "pass"))
        self.assertEqual((rows["b2"][2], rows["b2"][7]), ("down", "fail"))
        rc, out, err = ctl("-c", path, "--json", "backends")
        self.assertEqual(rc, 0, err)
        self.assertEqual([b["name"] for b in json.loads(out)["backends"]], ["b1", "b2"])
        rc, out, err = ctl("-c", path, "status")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out.splitlines()[0], r"^mqttlb \d+\.\d+\.\d+  up \d+m \d\ds  ready  0 conn")
        self.assertIn("listeners:", out)
        self.assertRegex(out, r"\n  mqtt +127\.0\.0\.1:\d+ +no\n")
        rc, out, err = ctl("-c", path, "config")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["health"]["password"], "<redacted>")
        # The token comes from the config's token_file; without it the server refuses.
        rc, out, err = ctl("--admin", a.addr, "-c", os.devnull, "backends")
        self.assertEqual(rc, 1)
        self.assertIn("bearer token", err)
        self.assertIn("(HTTP 401)", err)

    def test_backend_commands(self):
        p, port, a, path, cfg = self.lb()
        rc, out, err = ctl("-c", path, "drain", "b1")
        self.assertEqual((rc, out.split(",")[0]), (0, "b1: admin drain"), err)
        self.assertEqual(a.backend("b1")["admin"], "drain")
        self.assertEqual(ctl("-c", path, "maint", "b1")[0], 0)
        wait_until(lambda: a.backend("b1")["state"] == "maint", 5, what="maint")
        self.assertEqual(ctl("-c", path, "ready", "b1")[0], 0)
        self.assertEqual(a.backend("b1")["admin"], "ready")
        rc, out, err = ctl("-c", path, "weight", "b2", "7")
        self.assertEqual(rc, 0, err)
        self.assertIn("weight 7", out)
        self.assertEqual(a.backend("b2")["weight"], 7)
        rc, out, err = ctl("-c", path, "drain", "nope")
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err.strip(), 'mqttlb ctl: no backend named "nope" (HTTP 404)')
        rc, out, err = ctl("-c", path, "--json", "drain", "nope")
        self.assertEqual((rc, json.loads(out)), (1, {"error": 'no backend named "nope"'}))
        self.assertEqual(ctl("-c", path, "weight", "b2", "0")[0], 1)  # the server's 400
        self.assertEqual(ctl("-c", path, "weight", "b2", "x")[0], 2)  # not even sent

    def test_evacuate_and_cancel(self):
        p, port, a, path, cfg = self.lb()
        rc, out, err = ctl("-c", path, "evacuate", "b1", "--rate", "0.5", "--deadline", "300",
                           "--reason", "server-shutting-down", "--server-reference", "other:1883")
        self.assertEqual(rc, 0, err)
        self.assertIn("evacuation of b1 started: 0.5/s, deadline 300 s, reason server-shutting-down"
                      ", server reference other:1883", out)
        ev = a.backend("b1")["evacuation"]
        self.assertEqual((ev["state"], ev["rate_per_s"], ev["deadline_s"]), ("running", 0.5, 300))
        rc, out, err = ctl("-c", path, "backends")
        self.assertRegex(out, r"\nb1 .* running 0/0\n")
        self.assertEqual(ctl("-c", path, "evacuate", "b1")[0], 1)  # one is running: 409
        rc, out, err = ctl("-c", path, "cancel-evacuation", "b1")
        self.assertEqual((rc, out), (0, "evacuation of b1 cancelled: 0 of 0 sessions moved\n"), err)
        self.assertEqual(ctl("-c", path, "cancel-evacuation", "b1")[0], 1)
        self.assertEqual(ctl("-c", path, "evacuate", "b1", "--rate", "-1")[0], 2)
        self.assertEqual(ctl("-c", path, "evacuate", "b1", "--reason", "bored")[0], 1)
        self.assertEqual(ctl("-c", path, "drain", "b1", "--rate", "5")[0], 2)

    def test_client_and_kick(self):
        p, port, a, path, cfg = self.lb()
        cid = "-dev/1 ü"  # a leading '-', a '/', a space, non-ASCII
        s, _ = mqtt_connect(port, cid, level=5)
        self.addCleanup(s.close)
        rc, out, err = ctl("-c", path, "client", cid)
        self.assertEqual(rc, 0, err)
        fields = dict(l.split(":", 1) for l in out.splitlines())
        self.assertEqual(fields["client_id"].strip(), cid)
        self.assertIn(fields["backend"].strip(), ("b1", "b2"))
        self.assertEqual(fields["protocol_version"].strip(), "5.0")
        self.assertEqual(fields["tls"].strip(), "no")
        rc, out, err = ctl("-c", path, "--json", "client", cid)
        self.assertEqual(json.loads(out)["client_id"], cid)
        rc, out, err = ctl("-c", path, "kick", cid)
        self.assertEqual((rc, out), (0, f"kicked {cid}\n"), err)
        self.assertEqual(read_disconnect(s), (0x98, {}))
        wait_until(lambda: a.get(client_path(cid)).status == 404, 5, what="client gone")
        self.assertEqual(ctl("-c", path, "client", cid)[0], 1)
        self.assertEqual(ctl("-c", path, "kick", cid)[0], 1)

    def test_reload(self):
        p, port, a, path, cfg = self.lb()
        self.assertEqual(ctl("-c", path, "reload")[:2], (0, "reloaded: nothing changed\n"))
        cfg["backends"].append({"name": "b3", "address": f"127.0.0.1:{self.b1}"})
        rewrite(path, cfg)
        self.assertEqual(ctl("-c", path, "reload")[:2], (0, "reloaded:\n  /backends/b3: added\n"))
        cfg["backends"][2]["weight"] = 1000
        cfg["workers"] = -1
        rewrite(path, cfg)
        check = subprocess.run([binary("mqttlb"), "--check", "-c", path], capture_output=True,
                               timeout=30).stderr.decode().splitlines()
        self.assertGreaterEqual(len(check), 2)
        # ctl still finds the API in a file that does not validate, and prints
        # the errors as --check does.
        rc, out, err = ctl("-c", path, "reload")
        self.assertEqual(rc, 1)
        self.assertEqual(err.splitlines(), check + [
            "mqttlb ctl: reload rejected (HTTP 400); the running config stays"])

    def test_unix_socket_and_explicit_address(self):
        p, port, a, path, cfg = self.lb(unix=True, token=True)
        self.assertEqual(ctl("-c", path, "backends")[0], 0)
        tf = cfg["admin"]["token_file"]
        rc, out, err = ctl("-c", "/nonexistent.json", "--admin", a.addr, "--token-file", tf,
                           "backends")
        self.assertEqual(rc, 2, "an explicit -c that cannot be read is an error")
        rc, out, err = ctl("--admin", a.addr, "--token-file", tf, "-c", os.devnull, "backends")
        self.assertEqual(rc, 0, err)
        self.assertEqual(ctl("--admin", a.addr, "-c", os.devnull, "backends")[0], 1)  # 401

    def test_exit_codes(self):
        p, port, a, path, cfg = self.lb()
        self.assertEqual(ctl()[0], 2)
        self.assertEqual(ctl("-c", path, "frobnicate")[0], 2)
        self.assertEqual(ctl("-c", path, "drain")[0], 2)
        self.assertEqual(ctl("-c", path, "backends", "extra")[0], 2)
        self.assertEqual(ctl("--bogus", "backends")[0], 2)
        no_admin = os.path.join(self.tmpdir(), "no-admin.json")
        with open(no_admin, "w") as f:
            json.dump({k: v for k, v in cfg.items() if k != "admin"}, f)
        rc, out, err = ctl("-c", no_admin, "backends")
        self.assertEqual(rc, 2)
        self.assertIn("has no admin.bind", err)
        if not os.path.exists("/etc/mqttlb/mqttlb.json"):
            rc, out, err = ctl("backends")
            self.assertEqual(rc, 2)
            self.assertIn("/etc/mqttlb/mqttlb.json", err)
        rc, out, err = ctl("--admin", f"127.0.0.1:{free_port()}", "-c", os.devnull, "backends")
        self.assertEqual(rc, 3)
        self.assertIn("cannot reach the admin API", err)
        rc, out, err = ctl("--admin", f"unix:{self.tmpdir()}/none.sock", "-c", os.devnull,
                           "status")
        self.assertEqual(rc, 3)
        # An HTTP server that is not the admin API (here: the metrics endpoint).
        mport = cfg["metrics"]["bind"].rsplit(":", 1)[1]
        rc, out, err = ctl("--admin", f"127.0.0.1:{mport}", "-c", os.devnull, "backends")
        self.assertEqual(rc, 3, err)
        rc, out, err = ctl("-c", path, "--help")
        self.assertEqual(rc, 2)
        self.assertIn("exit: 0 done, 1 refused by the server", err)

    def test_upgrade(self):
        p, port, a, path, cfg = self.lb(upgrade={"deadline_s": 5})
        rc, out, err = ctl("-c", path, "upgrade")
        self.assertEqual(rc, 0, err)
        m = re.fullmatch(r"upgrade started: new generation pid (\d+)\n", out)
        self.assertTrue(m, out)
        self.addCleanup(stop_pid, int(m.group(1)))
        wait_until(lambda: not p.alive(), 20, what="the old generation exits")
        wait_until(lambda: ctl("-c", path, "status")[0] == 0, 10, what="the new one answers")


if __name__ == "__main__":
    harness.main()
