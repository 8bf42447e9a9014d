#!/usr/bin/python3
"""bench/broker_vs_mosquitto.py: mqttlb-broker against Debian's mosquitto.

1. Idle memory: starts each broker on a free loopback port, opens N idle MQTT
   3.1.1 connections to it (raw sockets from this one process: CONNECT, wait
   for CONNACK, keep-alive 0), and reports the growth of the broker's PSS
   (/proc/PID/smaps_rollup) per connection.
2. Throughput: if BUILD/mqttlb-bench exists, runs the same QoS 0, 64-byte
   pubsub (publishers and subscribers in one client process, closed loop)
   against each broker, alternating, and reports messages received per second.
3. Cluster (--cluster): publishers (one `mqttlb-bench pub` process, open loop
   at each --cluster-rates rate) on node 1 of a 3-node mqttlb-broker cluster,
   one subscriber process on node 2 and one on node 3 (each gets every
   message); side by side, alternating, the same processes against one
   mqttlb-broker and against one mosquitto. Reports msgs/s received, p99
   end-to-end latency and losses.

Usage: bench/broker_vs_mosquitto.py [--build DIR] [--connections N]
                                    [--duration S] [--runs N] [--skip-throughput]
                                    [--skip-idle] [--cluster] [--cluster-rates R,R]
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
    def __init__(self, kind, build, nodelay=False):
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
                        "log_dest none\n" + ("set_tcp_nodelay true\n" if nodelay else ""))
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


class ClusterNodes:
    """Three mqttlb-broker nodes, full mesh (broker/cluster*.cpp)."""

    def __init__(self, build, n=3):
        self.tmp = tempfile.TemporaryDirectory(prefix="bvm-cluster-")
        secret = os.path.join(self.tmp.name, "secret")
        with open(secret, "w") as f:
            f.write(os.urandom(16).hex())
        os.chmod(secret, 0o600)
        self.ports = [free_port() for _ in range(n)]
        cports = [free_port() for _ in range(n)]
        self.procs = []
        for i in range(n):
            peers = ",".join(f"127.0.0.1:{cports[j]}" for j in range(n) if j != i)
            args = [os.path.join(build, "mqttlb-broker"), "--port", str(self.ports[i]),
                    "--name", f"n{i + 1}", "--cluster-bind", f"127.0.0.1:{cports[i]}",
                    "--peers", peers, "--cluster-secret", secret]
            log = open(os.path.join(self.tmp.name, f"n{i + 1}.log"), "w")
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        for i, p in enumerate(self.procs):
            wait_port(self.ports[i], p)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # every node logs its n-1 links up
            if all(open(os.path.join(self.tmp.name, f"n{i + 1}.log")).read().count(" up\n") >= n - 1
                   for i in range(n)):
                return
            time.sleep(0.1)
        raise RuntimeError("cluster links did not come up")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        self.tmp.cleanup()


def measure_split(kind, build, duration, pubs, rate):
    """Publishers on one broker, two subscriber processes (each receives every
    message) on the same broker, or on nodes 2 and 3 of a cluster."""
    bench = os.path.join(build, "mqttlb-bench")
    if kind == "cluster (3 nodes)":
        b = ClusterNodes(build)
        pub_port, sub_ports = b.ports[0], b.ports[1:]
    else:
        # Latency is compared here: mosquitto without Nagle (else ~40 ms p99).
        b = Broker(kind, build, nodelay=True)
        pub_port, sub_ports = b.port, [b.port, b.port]
    try:
        subs = [subprocess.Popen([bench, "sub", "-p", str(p), "-c", "1", "-t", "bench/#", "-q", "0",
                                  "-d", str(duration + 4), "--json", "--quiet",
                                  "-i", f"bsub{k}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for k, p in enumerate(sub_ports)]
        time.sleep(1.5)  # subscribed (SUBACK is sent once every node has the route)
        cmd = [bench, "pub", "-p", str(pub_port), "-c", str(pubs), "-t", "bench/%i", "-q", "0",
               "-s", "64", "-r", str(rate), "-d", str(duration), "--json", "--quiet"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        if r.returncode not in (0, 1):
            raise RuntimeError(f"mqttlb-bench pub failed ({r.returncode}): {r.stderr.strip()}")
        pj = json.loads(r.stdout)
        sent, publish_s = pj["messages"]["sent"], pj["messages"]["publish_s"]
        received, lost, p99 = 0, 0, []
        for sp in subs:
            out, err = sp.communicate(timeout=duration + 60)
            if sp.returncode not in (0, 1):
                raise RuntimeError(f"mqttlb-bench sub failed ({sp.returncode}): {err.strip()}")
            j = json.loads(out)
            received += j["messages"]["unique"]
            lost += sent - j["messages"]["unique"]  # exact: each subscriber gets all
            p99.append(j["latency_ms"]["p99"])
        return {"broker": kind, "sent": sent, "received_per_s": received / publish_s,
                "offered_per_s": len(sub_ports) * sent / publish_s,
                "lost": lost, "p99_ms": max(p99), "command": " ".join(cmd)}
    finally:
        b.stop()


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
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--cluster", action="store_true", help="also the 3-node cluster comparison")
    ap.add_argument("--cluster-rates", default="2500,10000",
                    help="messages/s per publisher, comma separated (4 publishers)")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.connections + 100:
        sys.exit(f"open-files hard limit {hard} is below {a.connections} connections")

    kinds = ["mqttlb-broker", "mosquitto"]
    if not a.skip_idle:
        print(f"## Idle connections ({a.connections} MQTT 3.1.1 connections, keep-alive 0)\n")
        print("| broker | PSS before (KiB) | PSS after (KiB) | bytes per connection |")
        print("|---|---:|---:|---:|")
        for k in kinds:
            r = measure_idle(k, a.build, a.connections)
            print(f"| {k} | {r['pss_before_kib']} | {r['pss_after_kib']} | "
                  f"{r['bytes_per_connection']:.0f} |", flush=True)
    if a.cluster:
        cluster_table(a)

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


def cluster_table(a):
    kinds = ["cluster (3 nodes)", "mqttlb-broker", "mosquitto"]
    pubs = 4
    print(f"\n## Cluster: {pubs} publishers on node 1, a subscriber on node 2 and one on node 3 "
          f"(QoS 0, 64 B, open loop, {a.duration:g} s, {a.runs} alternating runs)\n")
    print("| setup | publishers' target | offered msg/s | received msg/s, median (min-max) | "
          "p99 ms, median | lost (sum) |")
    print("|---|---:|---:|---:|---:|---:|")
    cmd = None
    for rate in (int(x) for x in a.cluster_rates.split(",")):
        results = {k: [] for k in kinds}
        for i in range(a.runs):
            order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
            for k in order:
                r = measure_split(k, a.build, a.duration, pubs, rate)
                results[k].append(r)
                cmd = r["command"]
        for k in kinds:
            rates = sorted(r["received_per_s"] for r in results[k])
            p99 = sorted(r["p99_ms"] for r in results[k])
            offered = sorted(r["offered_per_s"] for r in results[k])
            print(f"| {k} | {pubs} x {rate}/s | {offered[len(offered) // 2]:.0f} | "
                  f"{rates[len(rates) // 2]:.0f} "
                  f"({rates[0]:.0f}-{rates[-1]:.0f}) | {p99[len(p99) // 2]:.2f} | "
                  f"{sum(r['lost'] for r in results[k])} |", flush=True)
    print(f"\n(offered = messages actually published per s x 2 subscribers; single broker: all three "
          f"processes on it; mosquitto with set_tcp_nodelay true)\n"
          f"publisher command (PORT = node 1's): `{cmd}`")


if __name__ == "__main__":
    main()
