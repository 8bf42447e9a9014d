#!/usr/bin/python3
"""bench/broker_vs_mosquitto.py: mqttlb-broker against Debian's mosquitto.

1. Idle memory: starts each broker on a free loopback port, opens N idle MQTT
   3.1.1 connections to it (raw sockets from this one process: CONNECT, wait
   for CONNACK, keep-alive 0), and reports the growth of the broker's PSS
   (/proc/PID/smaps_rollup) per connection.
2. Throughput: if BUILD/mqttlb-bench exists, runs the same QoS 0, 64-byte
   pubsub (publishers and subscribers in one client process, closed loop)
   against each broker, alternating, and reports messages received per second.

Usage: bench/broker_vs_mosquitto.py [--build DIR] [--connections N]
                                    [--duration S] [--runs N] [--skip-throughput]
Every process started here is stopped by PID. Prints a Markdown table.
"""
import argparse
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError("no Pss in smaps_rollup")


def connect_packet(cid):
    cid = cid.encode()
    var = struct.pack("!H", 4) + b"MQTT" + bytes([4, 0x02]) + struct.pack("!H", 0)
    body = var + struct.pack("!H", len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def open_idle(port, n, batch=200):
    """n connections with CONNACK received; returns the sockets."""
    socks = []
    for start in range(0, n, batch):
        group = []
        for i in range(start, min(n, start + batch)):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(connect_packet(f"idle-{i}"))
            group.append(s)
        for s in group:
            got = b""
            while len(got) < 4:
                chunk = s.recv(4 - len(got))
                if not chunk:
                    raise RuntimeError("connection closed before CONNACK")
                got += chunk
            if got[0] != 0x20 or got[3] != 0:
                raise RuntimeError(f"bad CONNACK {got!r}")
        socks.extend(group)
    return socks


class Broker:
    def __init__(self, kind, build):
        self.kind = kind
        self.port = free_port()
        self.tmp = tempfile.TemporaryDirectory(prefix="bvm-")
        if kind == "mqttlb-broker":
            args = [os.path.join(build, "mqttlb-broker"), "--port", str(self.port)]
        else:
            conf = os.path.join(self.tmp.name, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_connections -1\nmax_keepalive 65535\n"
                        "log_dest none\n")
            args = ["/usr/sbin/mosquitto", "-c", conf]
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.p)

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self.tmp.cleanup()


def measure_idle(kind, build, n):
    b = Broker(kind, build)
    try:
        # Warm up allocator pools and code pages with a few connections first.
        warm = open_idle(b.port, 20)
        for s in warm:
            s.close()
        time.sleep(0.5)
        before = pss_kib(b.p.pid)
        socks = open_idle(b.port, n)
        time.sleep(1.0)  # let the broker settle (no traffic: keep-alive 0)
        after = pss_kib(b.p.pid)
        for s in socks:
            s.close()
        return {"broker": kind, "connections": n, "pss_before_kib": before,
                "pss_after_kib": after,
                "bytes_per_connection": (after - before) * 1024 / n}
    finally:
        b.stop()


def measure_throughput(kind, build, duration, pubs):
    bench = os.path.join(build, "mqttlb-bench")
    b = Broker(kind, build)
    try:
        cmd = [bench, "pubsub", "-p", str(b.port), "-c", str(pubs), "-S", str(pubs), "-q", "0",
               "-s", "64", "-w", "64", "-d", str(duration), "--json", "--quiet"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        if r.returncode not in (0, 1):
            raise RuntimeError(f"mqttlb-bench failed ({r.returncode}): {r.stderr.strip()}")
        j = json.loads(r.stdout)
        m = j["messages"]
        return {"broker": kind, "received_per_s": m["received_per_s"],
                "sent_per_s": m["sent_per_s"], "lost": m["lost"], "command": " ".join(cmd)}
    finally:
        b.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.connections + 100:
        sys.exit(f"open-files hard limit {hard} is below {a.connections} connections")

    kinds = ["mqttlb-broker", "mosquitto"]
    print(f"## Idle connections ({a.connections} MQTT 3.1.1 connections, keep-alive 0)\n")
    print("| broker | PSS before (KiB) | PSS after (KiB) | bytes per connection |")
    print("|---|---:|---:|---:|")
    for k in kinds:
        r = measure_idle(k, a.build, a.connections)
        print(f"| {k} | {r['pss_before_kib']} | {r['pss_after_kib']} | "
              f"{r['bytes_per_connection']:.0f} |", flush=True)

    if a.skip_throughput:
        return
    if not os.path.exists(os.path.join(a.build, "mqttlb-bench")):
        print("\n(mqttlb-bench not built: throughput skipped)")
        return
    print(f"\n## QoS 0, 64-byte pubsub ({a.publishers} publishers -> {a.publishers} "
          f"subscribers, one client process, {a.duration:g} s, {a.runs} alternating runs)\n")
    results = {k: [] for k in kinds}
    cmd = None
    for i in range(a.runs):
        for k in (kinds if i % 2 == 0 else kinds[::-1]):
            r = measure_throughput(k, a.build, a.duration, a.publishers)
            results[k].append(r)
            cmd = r["command"]
    print("| broker | received msg/s (median) | min | max | lost (sum) |")
    print("|---|---:|---:|---:|---:|")
    for k in kinds:
        rates = sorted(r["received_per_s"] for r in results[k])
        print(f"| {k} | {rates[len(rates) // 2]:.0f} | {rates[0]:.0f} | {rates[-1]:.0f} | "
              f"{sum(r['lost'] for r in results[k])} |")
    print(f"\ncommand (PORT = the broker's): `{cmd}`")


if __name__ == "__main__":
    main()
