"""Helpers for the mqttlb-broker cluster tests (test_broker_cluster*.py).

Cluster: N real mqttlb-broker nodes on free loopback ports, full mesh, one
shared secret; nodes can be killed, stopped and started again. Relay: a TCP
relay the tests can cut and restore, to break one peer link while both nodes
keep running. FakePeer: a peer that speaks the handshake (Python hmac, same
proof as broker/peer_auth.cpp) and then does what a test wants (subscribe to
everything and stop reading, send garbage). Every wait has a deadline.
"""
import hashlib
import hmac
import os
import re
import signal
import socket
import struct
import threading
import time

import harness
from harness import free_port, port_open, wait_until
from broker_helpers import Paho

SECRET = b"test-cluster-secret-0123456789abcdef"


class Cluster:
    def __init__(self, tc, n=3, extra=(), peers_via=None):
        """peers_via(i, j) -> port: where node i dials node j (default j's own)."""
        self.tc, self.n, self.extra = tc, n, list(extra)
        self.names = [f"n{i + 1}" for i in range(n)]
        self.ports = [free_port() for _ in range(n)]
        self.cports = [free_port() for _ in range(n)]
        self.peers_via = peers_via
        d = tc.tmpdir()
        self.secret = os.path.join(d, "secret")
        with open(self.secret, "wb") as f:
            f.write(SECRET + b"\n")
        os.chmod(self.secret, 0o600)
        self.procs = [None] * n
        tc.addCleanup(self.stop_all)

    def args(self, i, extra=()):
        peers = []
        for j in range(self.n):
            if j != i:
                port = self.peers_via(i, j) if self.peers_via else self.cports[j]
                peers.append(f"127.0.0.1:{port}")
        return [harness.binary("mqttlb-broker"), "--port", self.ports[i], "--name", self.names[i],
                "--cluster-bind", f"127.0.0.1:{self.cports[i]}", "--peers", ",".join(peers),
                "--cluster-secret", self.secret] + self.extra + list(extra)

    def start(self, i, extra=()):
        p = harness.Proc(self.args(i, extra), name=self.names[i])
        self.procs[i] = p
        wait_until(lambda: port_open(self.ports[i]) or not p.alive(), 10,
                   what=f"{self.names[i]} listening")
        self.tc.assertTrue(p.alive(), p.output())
        return p

    def start_all(self):
        for i in range(self.n):
            self.start(i)
        self.wait_mesh()
        return self

    def links_up(self, i):
        """Names of the peers node i currently has a link to, from its log."""
        state = {}
        for line in self.procs[i].lines:
            m = re.search(r"link to (\S+) \(\S+\) (up|down)", line)
            if m:
                state[m.group(1)] = m.group(2)
        return {k for k, v in state.items() if v == "up"}

    def wait_mesh(self, nodes=None, timeout=15):
        nodes = range(self.n) if nodes is None else nodes
        for i in nodes:
            want = {self.names[j] for j in nodes if j != i}
            wait_until(lambda: want <= self.links_up(i), timeout,
                       what=f"{self.names[i]} linked to {sorted(want)}")

    def kill(self, i):
        self.procs[i].stop(signal.SIGKILL)

    def stop(self, i):
        """SIGTERM; asserts a clean exit; returns the output."""
        p = self.procs[i]
        rc = p.stop()
        out = p.output()
        self.tc.assertEqual(rc, 0, out)
        self.tc.assertNotIn("Sanitizer", out)
        return out

    def stop_all(self):
        for i, p in enumerate(self.procs):
            if p and p.alive():
                self.stop(i)

    def counters(self, out, node):
        """Cluster counters from a node's final line (after stop())."""
        m = re.search(rf"cluster {node}: .*forwarded (\d+), received (\d+), dropped \(link queue "
                      rf"full\) (\d+)", out)
        self.tc.assertIsNotNone(m, out)
        return {"forwarded": int(m.group(1)), "received": int(m.group(2)),
                "dropped": int(m.group(3))}

    def client(self, i, cid, **kw):
        c = Paho(self.ports[i], cid, **kw)
        self.tc.addCleanup(c.stop)
        return c


class Relay:
    """127.0.0.1:port -> 127.0.0.1:target; cut() drops every connection and
    refuses new ones until restore()."""

    def __init__(self, tc, target):
        self.target = target
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.open = True
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()
        tc.addCleanup(self.close)

    def _accept(self):
        while not self.stopping:
            try:
                a, _ = self.ls.accept()
            except OSError:
                return
            if not self.open:
                a.close()
                continue
            try:
                b = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(x, y), daemon=True).start()

    def _pump(self, x, y):
        try:
            while True:
                data = x.recv(65536)
                if not data:
                    break
                y.sendall(data)
        except OSError:
            pass
        for s in (x, y):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open = False
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self):
        self.open = True

    def close(self):
        self.stopping = True
        self.cut()
        self.ls.close()


# ---- a peer in Python (broker/peer_proto.hpp, broker/peer_auth.cpp)
def frame(t, body=b""):
    return struct.pack(">IB", len(body) + 1, t) + body


def s16(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">H", len(b)) + b


def proof(secret, dialer, frm, to, to_nonce, from_nonce):
    m = b"mqttlb-cluster-v1" + (b"D" if dialer else b"A") + s16(frm) + s16(to) + to_nonce + from_nonce
    return hmac.new(secret, m, hashlib.sha256).digest()


class FakePeer:
    """Dials a node's cluster port as peer `name` and completes the handshake
    (with `secret`); read_frames() returns what the node sent."""

    def __init__(self, port, name="fake", secret=SECRET):
        self.name, self.secret = name, secret
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.nonce = os.urandom(32)
        self.buf = b""
        self.sock.sendall(frame(1, bytes([1]) + s16(name) + struct.pack(">Q", 7) + self.nonce))

    def _frame(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    t, body = self.buf[4], self.buf[5:4 + n]
                    self.buf = self.buf[4 + n:]
                    return t, body
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def handshake(self):
        """Returns True when the node accepted our proof (its own was valid)."""
        t, body = self._frame()
        assert t == 1, t
        nl = struct.unpack(">H", body[1:3])[0]
        node = body[3:3 + nl].decode()
        their_nonce = body[3 + nl + 8:3 + nl + 8 + 32]
        self.sock.sendall(frame(2, proof(self.secret, True, self.name, node, their_nonce,
                                         self.nonce)))
        # A node that reads our Hello and our wrong proof in one read closes
        # before its own proof (queued in the same loop iteration) goes out.
        got = self._frame()
        if got is None:
            return False
        t, body = got
        assert t == 2, t
        ok = hmac.compare_digest(body, proof(self.secret, False, node, self.name, self.nonce,
                                             their_nonce))
        return ok

    def send(self, data):
        self.sock.sendall(data)

    def closed_within(self, timeout):
        """True when the node closes the link within `timeout` s."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._frame(deadline - time.monotonic()) is None:
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
