"""Helpers for the scale-out tests (test_lb_replicas.py, test_lb_discovery.py):
a real Redis (Debian's redis-server) and a real DNS server (Debian's dnsmasq),
each started on a free loopback port and stopped by PID. Built on harness.py
and lb_helpers.py; same rules (loopback only, bounded waits)."""
import os
import signal
import socket

from harness import free_port, port_open, wait_until

REDIS = "/usr/bin/redis-server"
DNSMASQ = "/usr/sbin/dnsmasq"


def have(path):
    return os.path.exists(path)


def start_redis(tc, port=None, extra=()):
    """redis-server on 127.0.0.1:port without persistence. Returns (proc, port)."""
    port = port or free_port()
    p = tc.spawn([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--protected-mode", "no", "--dir", tc.tmpdir()] +
                 list(extra), name=f"redis:{port}")
    wait_until(lambda: port_open(port) or not p.alive(), 10, what=f"redis on {port}")
    tc.assertTrue(p.alive(), p.output())
    return p, port


def redis_cmd(port, *args, timeout=5.0, password=None):
    """One command over RESP (after AUTH when `password`); returns the raw
    reply bytes of that command (enough for tests)."""
    def resp(cmd):
        out = b"*%d\r\n" % len(cmd)
        for a in cmd:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        return out
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if password:
            s.sendall(resp(["AUTH", password]))
            assert s.recv(65536).startswith(b"+OK")
        s.sendall(resp(args))
        return s.recv(65536)


class Dnsmasq:
    """dnsmasq answering for *.test from a hosts file on 127.0.0.1:port
    (names it does not hold get NXDOMAIN: --local=/test/). Records change with
    set_hosts(), which rewrites the file and sends SIGHUP to this dnsmasq (by
    PID). TTL of every answer: `ttl` seconds."""

    def __init__(self, tc, ttl=1, extra=()):
        self.tc = tc
        self.port = free_port()
        self.ttl = ttl
        d = tc.tmpdir()
        self.hosts = os.path.join(d, "hosts")
        open(self.hosts, "w").close()
        self._start(extra)
        self.reloads = 0

    def _start(self, extra):
        self.proc = self.tc.spawn([DNSMASQ, f"--port={self.port}", "--listen-address=127.0.0.1",
                                   "--bind-interfaces", "--no-daemon", "--no-resolv",
                                   "--no-hosts", "--local=/test/", f"--addn-hosts={self.hosts}",
                                   f"--local-ttl={self.ttl}", "--log-queries", "--pid-file=",
                                   "--user=root"] + list(extra), name=f"dnsmasq:{self.port}")
        self.proc.wait_for_line(r"started, version", timeout=10)

    def restart(self, extra):
        """Command-line records (--srv-host) are not re-read on SIGHUP: stops
        this dnsmasq (by PID) and starts one with `extra` on the same port and
        hosts file. Lookups in between fail (clients keep their last answer)."""
        self.proc.stop()
        self._start(extra)

    @staticmethod
    def srv_hosts(name, records):
        """--srv-host options: records [(target, port, priority, weight)]."""
        return [f"--srv-host={name},{t},{port},{prio},{weight}"
                for t, port, prio, weight in records]

    def set_hosts(self, records):
        """records: [(ip, name)]. Waits until dnsmasq has read the new file."""
        with open(self.hosts, "w") as f:
            for ip, name in records:
                f.write(f"{ip} {name}\n")
        start = len(self.proc.lines)
        self.proc.signal(signal.SIGHUP)
        self.proc.wait_for_line(r"read .*hosts", timeout=10, start=start)
