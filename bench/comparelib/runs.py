"""One measured run of one scenario against one path (bench/compare).

Every function returns a dict of figures, or {"error": why} (possibly with the
failure counts that were reported before the run gave up); never raises for a
path that misbehaves.
"""
import json
import subprocess
import time

from comparelib.procs import (children_cpu, cpu_seconds, fd_count, kworker_cpu, kworker_delta, pss_bytes,
                              wait_until)

# Connection attempts in flight during storms. Mosquitto listens with a backlog
# of 100: above that, SYNs are dropped and retried after 1 s, which would
# measure the broker's backlog rather than the path.
STORM_PENDING = 64


def tls_args(cafile):
    """mqttlb-bench flags for TLS: verify against the run's CA. No --resume, so
    every connection is a full handshake (the bench offers no session)."""
    return ["--tls", "--cafile", cafile]


def parse_bench(code, stdout, stderr):
    """(record, error): the bench's JSON line and, when it exited non-zero, why."""
    try:
        r = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"bench exit {code}: {stderr.strip()[:200]}"
    if code != 0:
        why = f"exit {code}: {r.get('error') or stderr.strip()[:200]}"
        kinds = r.get("failures") or {}
        if kinds:  # what the bench's report says, not only that it failed
            why += " (" + ", ".join(f"{n} × {k}" for k, n in sorted(kinds.items())) + ")"
        return r, why
    return r, None


def run_bench(bench, port, args, timeout):
    cmd = [bench] + args[:1] + ["-h", "127.0.0.1", "-p", str(port), "--json", "--quiet"] + \
        [str(a) for a in args[1:]]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "bench timed out"
    return parse_bench(p.returncode, p.stdout, p.stderr)


def smoke(bench, port, extra=()):
    r, err = run_bench(bench, port, ["conn", "-c", 2, "--connect-timeout", 5] + list(extra), 20)
    return err


def msg_run(bench, target, broker_target, scen, d, tls=None):
    """pubsub through the path (over TLS when `tls` holds the bench's TLS flags)."""
    pids = target.pids()
    bpids = broker_target.pids() if broker_target else []
    port = target.tls_port if tls else target.port
    c0, b0, g0, k0 = cpu_seconds(pids), cpu_seconds(bpids), children_cpu(), kworker_cpu()
    r, err = run_bench(bench, port, scen["args"] + ["-d", d] + list(tls or []), d + 60)
    c1, b1, g1, k1 = cpu_seconds(pids), cpu_seconds(bpids), children_cpu(), kworker_cpu()
    if err:
        return {"error": err}
    m = r["messages"]
    n = max(m["received"], 1)
    out = {"msgs": m["received_per_s"], "sent": m["sent_per_s"], "lost": m["lost"],
           "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"],
           "p999": r["latency_ms"]["p999"], "max": r["latency_ms"]["max"]}
    if pids:
        out["cpu"] = (c1 - c0) / n * 1e6
    if bpids:
        out["bcpu"] = (b1 - b0) / n * 1e6
    out["gcpu"] = (g1 - g0) / n * 1e6
    out["kcpu"] = kworker_delta(k0, k1) / n * 1e6
    return out


def classify_failures(failures, lost=0):
    """The bench's {reason: count} as refused (CONNACK with a non-zero code),
    timeouts (TCP connect, TLS handshake or CONNACK deadline), lost (closed
    after CONNACK) and other connect errors (refused or reset TCP connects,
    closed before CONNACK, TLS errors, bad CONNACKs)."""
    refused = sum(n for why, n in failures.items() if why.startswith("CONNACK refused"))
    timeouts = sum(n for why, n in failures.items() if why.startswith("timeout:"))
    total = sum(failures.values())
    return {"refused": refused, "timeouts": timeouts, "lost": lost,
            "errors": max(total - refused - timeouts - lost, 0)}


def storm_run(bench, target, n, tls=None):
    """n new connections, at most STORM_PENDING in flight: rate, latency,
    balancer CPU per connection, and every failed connection by kind."""
    pids = target.pids()
    port = target.tls_port if tls else target.port
    fd0 = fd_count(pids)
    c0, g0 = cpu_seconds(pids), children_cpu()
    r, err = run_bench(bench, port, ["conn", "-c", n, "--max-pending", STORM_PENDING, "--connect-timeout", 20] +
                       list(tls or []), 120)
    if pids:
        # The balancer is still closing the last sessions' broker sides when the
        # bench exits: count that CPU too (at most 5 s).
        wait_until(lambda: fd_count(pids) <= fd0 + 2, 5)
    c1, g1 = cpu_seconds(pids), children_cpu()
    if r is None:
        return {"error": err}
    conns = r["connections"]
    out = classify_failures(r.get("failures", {}), conns.get("lost", 0))
    out["reasons"] = dict(r.get("failures", {}))
    out["failed"] = conns["failed"]
    out["attempted"] = conns["attempted"]
    if conns["connected"] == 0 or r.get("exit_code", 0) >= 2:
        out["error"] = err or "no connection completed"
        return out
    out.update({"rate": conns["per_s"], "p50": r["handshake_ms"]["p50"], "p99": r["handshake_ms"]["p99"],
                "connected": conns["connected"]})
    if tls:
        out["resumed"] = conns.get("tls_resumed", 0)
        out["full"] = conns["connected"] - out["resumed"]
    # µs per connection attempted (= ms per 1000; refused ones cost CPU too);
    # TLS: per attempt that was not a resumption.
    per = max(conns["attempted"] - out.get("resumed", 0), 1)
    if pids:
        out["cpu"] = (c1 - c0) / per * 1e6
    out["gcpu"] = (g1 - g0) / per * 1e6
    return out


def idle_run(bench, target, n, sources, tls=None, fds_per_session=2):
    """PSS of the path's process before and while n idle connections are held
    (over TLS when `tls` holds the bench's TLS flags). The sample is taken once
    the process holds fds_per_session descriptors for each of them."""
    pids = target.pids()
    fd0 = fd_count(pids)
    pss0 = pss_bytes(pids)
    port = target.tls_port if tls else target.port
    args = ["conn", "-c", n, "--hold", 3, "--max-pending", STORM_PENDING, "--connect-timeout", 30, "-h", "127.0.0.1",
            "-p", port, "--json", "--quiet"] + list(tls or [])
    if sources:
        args += ["--source-addresses", ",".join(sources)]
    p = subprocess.Popen([bench] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, stdin=subprocess.DEVNULL)
    per_conn_fds = fds_per_session if target.proc and target.key != "direct" else 1
    want = fd0 + per_conn_fds * n
    peak = 0
    deadline = time.monotonic() + 90
    # Sample while the bench holds its connections (it holds them 3 s once all are up).
    while p.poll() is None and time.monotonic() < deadline:
        if pids and fd_count(pids) >= want * 0.98:
            time.sleep(0.5)  # let the last CONNACKs finish their buffers
            peak = max(peak, pss_bytes(pids))
            break
        time.sleep(0.05)
    try:
        out, errs = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        out, errs = p.communicate()
        return {"error": "bench timed out"}
    r, err = parse_bench(p.returncode, out, errs)
    if err:
        return {"error": err}
    res = {"connected": r["connections"]["connected"]}
    if tls:
        res["resumed"] = r["connections"].get("tls_resumed", 0)
    if pids:
        if not peak:
            return {"error": "connections never all reached the process"}
        res["pss"] = (peak - pss0) / n
    return res
