"""Shared helpers for integration tests: real processes on free loopback ports.

Rules (see README "Testing"): bind only to 127.0.0.1, pick free ports, bound every
wait in time, and stop what we started by PID (never by name).
"""
import fcntl
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BUILD_DIR = os.environ.get(
    "MQTTLB_BUILD_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
HERE = os.path.dirname(os.path.abspath(__file__))


def binary(name):
    """Path of one of our executables in the build directory under test."""
    path = os.path.join(BUILD_DIR, name)
    if not os.path.exists(path):
        raise unittest.SkipTest(f"{path} not built")
    return path


def sanitizer():
    """'asan' or 'tsan' when the build under test is a sanitizer build, else None
    (read from the mqttlb binary's NEEDED entries)."""
    try:
        out = subprocess.run(["readelf", "-d", binary("mqttlb")], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for name in ("asan", "tsan"):
        if f"lib{name}.so" in out:
            return name
    return None


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


_rng = random.Random(os.getpid() ^ int(time.time() * 1000))
_handed_out = set()  # never the same port twice in one test process
_LOCK_DIR = os.path.join(tempfile.gettempdir(), "mqttlb-test-ports")
_locks = []  # one flock per port handed out, held until this process ends


def _claim(port):
    """Claims `port` against the other test processes (ctest runs two at once):
    a port one test moves a listener away from and back to is free in
    between, and another test's free_port() must not take it then. The lock
    goes with the process, however it ends."""
    try:
        os.makedirs(_LOCK_DIR, exist_ok=True)
        fd = os.open(os.path.join(_LOCK_DIR, str(port)), os.O_CREAT | os.O_RDWR, 0o666)
    except OSError:
        return True  # no shared directory: the bind check alone, as before
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _locks.append(fd)
    return True


def free_port():
    """A TCP port free on 127.0.0.1 right now, outside the kernel's ephemeral
    range: a port the kernel handed out for bind(0) is just as likely to be
    taken next as the local port of some outgoing connection (the tests open
    thousands), and then the server meant for it cannot bind. Never the same
    port twice in one process: two picks before either is bound (a listener
    and the metrics port of one mqttlb) must differ."""
    lo, hi = _ephemeral_range()
    candidates = [(10000, lo - 1)] if lo > 11000 else [(hi + 1, 65535)]
    for _ in range(200):
        a, b = candidates[0]
        port = _rng.randint(a, b)
        if port in _handed_out:  # free again, but a caller may not have bound it yet
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _claim(port):  # another test process has it
            continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # fall back to the kernel's pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout=10.0, interval=0.02, what="condition"):
    """Polls cond() until it returns a truthy value; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def proc_kib(pid, name, field):
    """A KiB figure of a process from /proc/PID/<name> ("VmRSS" in "status",
    "Pss" in "smaps_rollup"); 0 when the field is absent. A process that is
    gone raises: a memory check must not pass on a crash."""
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    """Resident set size (VmRSS), KiB."""
    return proc_kib(pid, "status", "VmRSS")


def pss_kib(pid):
    """Proportional set size (Pss of smaps_rollup), KiB: shared pages counted once."""
    return proc_kib(pid, "smaps_rollup", "Pss")


def varint(n):
    """MQTT Variable Byte Integer encoding of n."""
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def lp_bytes(b):
    """Two-byte length prefix + bytes (MQTT UTF-8 string or binary data)."""
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Proc:
    """A child process whose output lines are collected in the background."""

    def __init__(self, args, name=None, env=None, cwd=None):
        self.args = [str(a) for a in args]
        self.name = name or os.path.basename(self.args[0])
        self.lines = []
        self._cv = threading.Condition()
        self.p = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        self.pid = self.p.pid
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if os.environ.get("MQTTLB_TEST_VERBOSE"):
                sys.stderr.write(f"[{self.name}] {line}\n")
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_for_line(self, pattern, timeout=10.0, start=0):
        """Returns the first match of regex `pattern` in lines[start:]."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.name}: no line matching {pattern!r} within {timeout}s; "
                        f"output:\n" + "\n".join(self.lines[-40:]))
                if self.p.poll() is not None and not self._t.is_alive():
                    raise AssertionError(
                        f"{self.name} exited ({self.p.returncode}) before printing {pattern!r}; "
                        f"output:\n" + "\n".join(self.lines[-40:]))
                self._cv.wait(min(left, 0.1))

    def output(self):
        with self._cv:
            return "\n".join(self.lines)

    def alive(self):
        return self.p.poll() is None

    def wait_exit(self, timeout, what=None):
        """Waits (bounded) for the process to exit and for its last output line
        to be collected; returns the exit code. Output read after alive() turns
        false may still be in the pipe: the reader thread lags the exit."""
        deadline = time.monotonic() + timeout
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what or self.name + ' to exit'}; output:\n"
                                 + "\n".join(self.lines[-40:]))
        # EOF follows the exit unless a child of the process still holds the pipe.
        self._t.join(max(1.0, deadline - time.monotonic()))
        if self._t.is_alive():
            raise AssertionError(f"{self.name} exited but its output did not end "
                                 f"(a child still holds the pipe?)")
        return self.p.returncode

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig=None, timeout=10.0):
        """Signals the process (by PID) and waits; SIGKILL after `timeout`."""
        # (Default set here: in the class body `signal` is the method above.)
        sig = signal.SIGTERM if sig is None else sig
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(5)
        self._t.join(2)
        if self.p.stdout and not self._t.is_alive():
            self.p.stdout.close()
        return self.p.returncode


class TestCase(unittest.TestCase):
    """Base class: tracks started processes and temp dirs, cleans them up."""

    def tmpdir(self):
        d = tempfile.TemporaryDirectory(prefix="mqttlb-it-")
        self.addCleanup(d.cleanup)
        return d.name

    def spawn(self, args, name=None, **kw):
        p = Proc(args, name=name, **kw)
        self.addCleanup(p.stop)
        return p

    def start_our_broker(self, port=None, name=None, extra=()):
        """Starts build/mqttlb-broker on a free port; returns (proc, port)."""
        port = port or free_port()
        args = [binary("mqttlb-broker"), "--port", port]
        if name:
            args += ["--name", name]
        p = self.spawn(args + list(extra), name=name or f"broker:{port}")
        wait_until(lambda: port_open(port) or not p.alive(), 10, what=f"broker on {port}")
        self.assertTrue(p.alive(), p.output())
        return p, port

    def start_mosquitto(self, port=None, extra_conf=""):
        """Starts Debian's mosquitto on 127.0.0.1:port; returns (proc, port)."""
        port = port or free_port()
        d = self.tmpdir()
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    f"persistence false\nmax_keepalive 65535\n{extra_conf}\n")
        p = self.spawn(["/usr/sbin/mosquitto", "-c", conf], name=f"mosquitto:{port}")
        wait_until(lambda: port_open(port) or not p.alive(), 10, what=f"mosquitto on {port}")
        self.assertTrue(p.alive(), p.output())
        return p, port


def main():
    unittest.main(verbosity=2)
