"""Helpers for the admin API tests (test_admin_*.py): start mqttlb with an
"admin" section (TCP or unix socket, with or without a token), speak HTTP to
it (http.client; AF_UNIX too), run `mqttlb ctl`, read MQTT 5 DISCONNECTs.
Built on harness.py / lb_helpers.py; same rules (loopback, free ports,
bounded waits, stop by PID)."""
import http.client
import json
import os
import socket
import struct
import subprocess
import urllib.parse

import harness
from harness import binary, free_port, wait_until
from lb_helpers import start_mqttlb, read_packet


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Reply:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    @property
    def json(self):
        return json.loads(self.raw.decode("utf-8", "replace"))

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<HTTP {self.status} {self.raw[:300]!r}>"


class Admin:
    """The admin API of one mqttlb: addr is "127.0.0.1:PORT" or "unix:PATH"."""

    def __init__(self, addr, token=None):
        self.addr, self.token = addr, token

    def conn(self, timeout=30):
        if self.addr.startswith("unix:"):
            return UnixHTTPConnection(self.addr[5:], timeout)
        host, port = self.addr.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=timeout)

    def request(self, method, path, body=None, token=None, headers=None, raw=None,
                auth=True, chunked=False):
        """One request on a new connection. body: JSON-encoded; raw: bytes as they are
        (an iterable of chunks when chunked). token: overrides self.token."""
        h = dict(headers or {})
        tok = self.token if token is None else token
        if auth and tok:
            h["Authorization"] = f"Bearer {tok}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c = self.conn()
        try:
            c.request(method, path, body=data, headers=h, encode_chunked=chunked)
            r = c.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def backend(self, name):
        for b in self.get("/api/v1/backends").json["backends"]:
            if b["name"] == name:
                return b
        raise AssertionError(f"no backend {name}")


def client_path(client_id):
    return "/api/v1/clients/" + urllib.parse.quote(client_id, safe="")


def write_token(tc, token="t0k3n-" + os.urandom(6).hex()):
    path = os.path.join(tc.tmpdir(), "admin.token")
    with open(path, "w") as f:
        f.write(token + "\n")
    return path, token


def start_lb_admin(tc, backends, unix=False, token=False, admin_extra=None, **sections):
    """mqttlb in front of `backends` with the admin API on a free TCP port (or a
    unix socket in a temp dir), optionally with a token file.
    Returns (proc, mqtt_port, Admin, config_path, config_dict)."""
    admin = {}
    tok = None
    if unix:
        admin["bind"] = "unix:" + os.path.join(tc.tmpdir(), "admin.sock")
    else:
        admin["bind"] = f"127.0.0.1:{free_port()}"
    if token:
        admin["token_file"], tok = write_token(tc)
    admin.update(admin_extra or {})
    p, port, _mport, path = start_mqttlb(tc, backends, admin=admin, **sections)
    a = Admin(admin["bind"], tok)
    wait_until(lambda: _answers(a), 10, what="admin API up")
    with open(path) as f:
        cfg = json.load(f)
    return p, port, a, path, cfg


def _answers(a):
    try:
        return a.get("/healthz").status == 200
    except OSError:
        return False


def rewrite(path, cfg):
    with open(path + ".tmp", "w") as f:
        json.dump(cfg, f)
    os.replace(path + ".tmp", path)


def ctl(*args, timeout=90):
    """Runs `mqttlb ctl ARGS`; returns (exit code, stdout, stderr)."""
    r = subprocess.run([binary("mqttlb"), "ctl", *[str(a) for a in args]], capture_output=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def stop_pid(pid, timeout=20):
    """SIGTERM to a process we did not spawn ourselves (a new generation a
    binary upgrade started), then waits until it is gone (or a zombie)."""
    import signal
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return

    def gone():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] == "Z"
        except OSError:
            return True

    wait_until(gone, timeout, what=f"pid {pid} stopped")


def audit_lines(proc, start=0):
    return [l for l in proc.lines[start:] if " audit: " in l]


# ---------------------------------------------------------------- MQTT 5 DISCONNECT
def parse_disconnect(body):
    """A 5.0 DISCONNECT's body -> (reason code, {property id: value}); Server
    Reference (0x1C) and Reason String (0x1F) decoded as str."""
    if not body:
        return 0, {}
    code = body[0]
    props = {}
    if len(body) > 1:
        n, mult, i = 0, 1, 1
        while True:
            b = body[i]
            n += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        end = i + n
        while i < end:
            pid = body[i]
            i += 1
            if pid in (0x1C, 0x1F):
                ln = struct.unpack("!H", body[i:i + 2])[0]
                props[pid] = body[i + 2:i + 2 + ln].decode()
                i += 2 + ln
            elif pid == 0x11:  # session expiry interval
                props[pid] = struct.unpack("!I", body[i:i + 4])[0]
                i += 4
            else:
                raise AssertionError(f"unexpected DISCONNECT property {pid:#x}")
    return code, props


def read_disconnect(sock, timeout=5.0):
    """Reads packets until a DISCONNECT (returns (code, props)) or EOF (returns None)."""
    import lb_helpers
    while True:
        try:
            first, body = read_packet(sock, timeout)
        except lb_helpers.Closed:
            return None
        if first == 0xE0:
            return parse_disconnect(body)


__all__ = ["Admin", "Reply", "client_path", "write_token", "start_lb_admin", "rewrite", "ctl",
           "stop_pid", "audit_lines", "parse_disconnect", "read_disconnect", "harness"]
