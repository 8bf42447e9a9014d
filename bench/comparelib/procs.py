"""Processes for bench/compare: starting the paths under test, measuring them
from /proc, and stopping every process started (by PID, at exit).

A path is one PathSpec line in PATHS (bench/compare): its key, label and a
starter. A starter takes (env, tag) and returns (Proc, plain port, TLS port or
None, error or None); it never raises for a balancer that is missing or does
not start, it says why.
"""
import json
import os
import resource
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

STARTED = []  # every process we started, stopped by PID at exit


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(cond, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


# ---------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, args, logdir, cwd=None):
        self.name = name
        self.logpath = os.path.join(logdir, f"{name}.log")
        self.logf = open(self.logpath, "ab")
        self.p = subprocess.Popen([str(a) for a in args], stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=cwd)
        self.pid = self.p.pid
        STARTED.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(5)
            except ProcessLookupError:
                pass
        self.logf.close()
        if self in STARTED:
            STARTED.remove(self)

    def tail(self, n=5):
        try:
            with open(self.logpath, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


def stop_all():
    for p in list(STARTED):
        p.stop()


def pids_with_children(pid):
    """pid plus its direct children (NGINX workers)."""
    out = [pid]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d))
        except (OSError, ValueError):
            pass
    return out


def _stat_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15), in ticks


def cpu_seconds(pids):
    """CPU time of the processes: the sum of their threads' scheduler run time
    (/proc/PID/task/TID/schedstat, nanoseconds), so that a figure of a few
    hundred connections is not rounded to the 10 ms clock tick of utime+stime.
    Threads that exited are not counted: the balancers' threads live as long as
    the process. Without schedstat, utime+stime."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            ns = 0
            for tid in tids:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            total += ns / 1e9
        except (OSError, ValueError, IndexError):
            try:
                total += _stat_cpu(pid)
            except (OSError, ValueError):
                pass
    return total


def kworker_cpu():
    """CPU seconds of the kernel's worker threads, by pid, all of them (so a
    little of the machine's other work too). In-kernel forwarding sends
    redirected skbs from kworkers (the psock backlog): that part of its cost is
    here, not in the balancer's process. Subtract with kworker_delta: kworkers
    come and go."""
    total = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        if not st[st.index("(") + 1:].startswith("kworker"):
            continue
        fields = st[st.rindex(")") + 2:].split()
        total[d] = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return total


def kworker_delta(before, after):
    """CPU seconds kworkers spent between two kworker_cpu() samples: a thread
    that exited in between is not counted (its last figure is unknown), one
    that started (or a reused pid) counts from zero; never negative."""
    total = 0.0
    for pid, cpu in after.items():
        was = before.get(pid, 0.0)
        total += cpu - was if cpu >= was else cpu
    return total


def children_cpu():
    """CPU seconds of our waited-for children: the finished mqttlb-bench runs."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def pss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def fd_count(pids):
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return n


# ------------------------------------------------------------------ targets

class Target:
    """One running path: where the bench connects (plain `port`, TLS `tls_port`
    when the path terminates TLS) and which processes to measure."""

    def __init__(self, key, label, port, proc=None, children=False, tls_port=None):
        self.key, self.label, self.port, self.proc, self.children = key, label, port, proc, children
        self.tls_port = tls_port

    def pids(self):
        if not self.proc:
            return []
        return pids_with_children(self.proc.pid) if self.children else [self.proc.pid]


class PathSpec:
    """One balancer row of the report. `start(env, tag)` -> (proc, port, tls_port, err);
    `tls`: the path also gets a TLS listener and runs the TLS scenarios;
    `binary`: the executable it needs (a missing one skips the row with the reason).
    Rows whose key starts with "mqttlb" get a ratio to HAProxy in every table."""

    def __init__(self, key, label, start, children=False, tls=True, binary=None, fds_per_session=2):
        self.key, self.label, self.start, self.children, self.tls = key, label, start, children, tls
        self.binary = binary
        # Descriptors the balancer holds per idle session: the idle scenarios
        # hold no more sessions than its open-files limit allows.
        self.fds_per_session = fds_per_session

    def ratio_row(self):
        return self.key.startswith("mqttlb")

    def run(self, env, tag):
        """Starts the path; a path without TLS scenarios gets no TLS listener."""
        if not self.tls and env.certs:
            env = Env(env.tmp, env.build, env.backend_port, env.workers, None)
        return self.start(env, tag)


class Env:
    """What every starter needs: the run's temp dir, build dir, backend port,
    worker count and the TLS files (None when TLS is unavailable)."""

    def __init__(self, tmp, build, backend_port, workers, certs):
        self.tmp, self.build, self.backend_port, self.workers, self.certs = tmp, build, backend_port, workers, certs


def _wait_started(p, port, name, tls_port=None):
    ports = [port] + ([tls_port] if tls_port else [])
    up = wait_until(lambda: all(port_open(x) for x in ports) or not p.alive(), 10)
    if not up or not p.alive():
        p.stop()
        return f"{name} did not start: {p.tail(3)}"
    return None


def start_mosquitto(tmp, name="mosquitto"):
    if not os.access("/usr/sbin/mosquitto", os.X_OK):
        raise SystemExit("/usr/sbin/mosquitto not installed (apt-get install mosquitto): nothing to measure")
    port = free_port()
    conf = os.path.join(tmp, f"{name}.conf")
    with open(conf, "w") as f:
        # set_tcp_nodelay: without it Nagle adds ~40 ms to acknowledgements,
        # which would measure TCP, not the paths.
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                f"set_tcp_nodelay true\nmax_keepalive 65535\nlog_dest none\n"
                # 2.0.11 sometimes drops QoS 1 messages to a subscriber fed by
                # several publishers well below the default limit of 1000 (it
                # logs "Outgoing messages are being dropped").
                f"max_queued_messages 1000000\n")
    p = Proc(name, ["/usr/sbin/mosquitto", "-c", conf], tmp)
    if not wait_until(lambda: port_open(port) or not p.alive(), 10) or not p.alive():
        raise SystemExit(f"mosquitto did not start: {p.tail()}")
    return p, port


def start_our_broker(tmp, binary):
    port = free_port()
    p = Proc("mqttlb-broker", [binary, "--port", port], tmp)
    if not wait_until(lambda: port_open(port) or not p.alive(), 10) or not p.alive():
        p.stop()
        return None, None, f"mqttlb-broker did not start: {p.tail(3)}"
    return p, port, None


def check_mqttlb_config(binary, conf):
    """`mqttlb --check -c conf`: None when valid, else its message."""
    try:
        r = subprocess.run([binary, "--check", "-c", conf], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if r.returncode == 0:
        return None
    return " ".join((r.stderr + r.stdout).split())[:300] or f"exit {r.returncode}"


def start_mqttlb(env, tag, extra=None):
    """mqttlb in front of the backend; `extra`: top-level config keys merged in
    (e.g. {"forwarding": "kernel"}), checked with `mqttlb --check` first so a
    key this build does not know skips the row with mqttlb's own message."""
    binary = os.path.join(env.build, "mqttlb")
    port = free_port()
    listeners = [{"name": "mqtt", "bind": f"127.0.0.1:{port}"}]
    tls_port = None
    if env.certs:
        tls_port = free_port()
        listeners.append({"name": "mqtts", "bind": f"127.0.0.1:{tls_port}",
                          "tls": {"cert": env.certs["server.crt"], "key": env.certs["server.key"]}})
    cfg = {"listeners": listeners, "backends": [{"name": "b1", "address": f"127.0.0.1:{env.backend_port}"}],
           "workers": env.workers}
    cfg.update(extra or {})
    conf = os.path.join(env.tmp, f"mqttlb-{tag}.json")
    with open(conf, "w") as f:
        json.dump(cfg, f, indent=2)
    if extra:
        err = check_mqttlb_config(binary, conf)
        if err:
            return None, None, None, f"`mqttlb --check` rejects {json.dumps(extra)}: {err}"
    p = Proc(f"mqttlb-{tag}", [binary, "-c", conf], env.tmp)
    err = _wait_started(p, port, "mqttlb", tls_port)
    return (None, None, None, err) if err else (p, port, tls_port, None)


def start_haproxy(env, tag):
    if not os.access("/usr/sbin/haproxy", os.X_OK):
        return None, None, None, "/usr/sbin/haproxy not installed (apt-get install haproxy)"
    port = free_port()
    tls_port = free_port() if env.certs else None
    tls_bind = ""
    if tls_port:
        # HAProxy wants the certificate and its key in one PEM file.
        pem = os.path.join(env.tmp, "haproxy-server.pem")
        if not os.path.exists(pem):
            with open(pem, "w") as out:
                for name in ("server.crt", "server.key"):
                    with open(env.certs[name]) as f:
                        out.write(f.read())
        tls_bind = f"  bind 127.0.0.1:{tls_port} ssl crt {pem}\n"
    cfg = os.path.join(env.tmp, f"haproxy-{tag}.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
  nbthread {env.workers}
  maxconn 9800
defaults
  mode tcp
  maxconn 9800
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend mqtt
  bind 127.0.0.1:{port}
{tls_bind}  tcp-request inspect-delay 5s
  tcp-request content accept if {{ req.payload(0,0),mqtt_is_valid }}
  default_backend brokers
backend brokers
  balance leastconn
  stick-table type string len 128 size 200k expire 30m
  stick on req.payload(0,0),mqtt_field_value(connect,client_identifier)
  server b1 127.0.0.1:{env.backend_port}
""")
    p = Proc(f"haproxy-{tag}", ["/usr/sbin/haproxy", "-db", "-f", cfg], env.tmp)
    err = _wait_started(p, port, "haproxy", tls_port)
    return (None, None, None, err) if err else (p, port, tls_port, None)


def start_nginx(env, tag):
    if not os.access("/usr/sbin/nginx", os.X_OK):
        return None, None, None, "/usr/sbin/nginx not installed (apt-get install nginx-light libnginx-mod-stream)"
    port = free_port()
    tls_port = free_port() if env.certs else None
    prefix = os.path.join(env.tmp, f"nginx-{tag}")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    cfg = os.path.join(prefix, "nginx.conf")
    # Debian builds the stream module as a dynamic module (libnginx-mod-stream),
    # with ngx_stream_ssl_module inside it.
    mod = "/usr/lib/nginx/modules/ngx_stream_module.so"
    if not os.path.exists(mod):
        return None, None, None, f"{mod} missing: apt-get install libnginx-mod-stream"
    tls_server = ""
    if tls_port:
        # 1.22 defaults to TLSv1 TLSv1.1 TLSv1.2; TLS 1.3 only when asked for (1.23.4+ adds it).
        tls_server = (f"  server {{ listen 127.0.0.1:{tls_port} ssl; ssl_protocols TLSv1.2 TLSv1.3;\n"
                      f"    ssl_certificate {env.certs['server.crt']}; ssl_certificate_key {env.certs['server.key']};\n"
                      f"    proxy_pass brokers; proxy_timeout 10m; }}\n")
    with open(cfg, "w") as f:
        f.write(f"""load_module {mod};
daemon off;
master_process on;
worker_processes {env.workers};
worker_rlimit_nofile 19800;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 10000; }}
stream {{
  upstream brokers {{ least_conn; server 127.0.0.1:{env.backend_port}; }}
  server {{ listen 127.0.0.1:{port}; proxy_pass brokers; proxy_timeout 10m; }}
{tls_server}}}
""")
    p = Proc(f"nginx-{tag}", ["/usr/sbin/nginx", "-p", prefix, "-e", f"{prefix}/error.log", "-c", cfg], env.tmp)
    err = _wait_started(p, port, "nginx", tls_port)
    return (None, None, None, err) if err else (p, port, tls_port, None)


def tls_version(port, cafile):
    """Protocol and cipher suite a default client negotiates, from openssl s_client."""
    try:
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief", "-CAfile", cafile],
                           capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"
    txt = r.stdout + r.stderr
    proto = [ln.split(":", 1)[1].strip() for ln in txt.splitlines() if ln.startswith("Protocol version:")]
    suite = [ln.split(":", 1)[1].strip() for ln in txt.splitlines() if ln.startswith("Ciphersuite:")]
    return f"{proto[0]} {suite[0]}" if proto and suite else "?"
