"""In-kernel forwarding ("forwarding": "kernel", docs/forwarding.md), against
raw TCP peers: a placed session idle after its CONNACK is joined in the
kernel, and then
- a take-back in the middle of two busy streams (an evacuation: DISCONNECT
  injected at packet boundaries both ways) loses and duplicates nothing:
  each peer gets an exact prefix of the other's numbered packets, then the
  DISCONNECT, then EOF;
- a stalled client keeps the kernel's queues bounded (the session goes back
  to the userspace pump's backpressure) and then gets every byte in order;
- so does a frozen broker (SIGSTOP) under a publishing client: the client
  is held back, and after SIGCONT every message reaches a subscriber once,
  in order;
- the idle timeout holds while only the kernel forwards;
- a reset and a half-close reach the other side; the byte counters count
  what crossed, once.
Skipped (with the reason) where the BPF programs cannot load; there,
WithoutPrivileges still runs: "auto" falls back to the pump, "kernel" does
not start."""
import os
import random
import signal
import socket
import struct
import threading
import time

import harness
from harness import rss_kib, wait_until
from admin_helpers import start_lb_admin
from broker_helpers import publish, raw_connect, subscribe
from lb_helpers import connect_packet, kernel_forwarding_or_skip, metric, start_mqttlb
from stream_peers import _varint, first_packet_len
from test_lb_forwarding import CONNACK, FakeBroker

CONNACK5 = b"\x20\x03\x00\x00\x00"


def numbered(seq, level=5):
    """PUBLISH number `seq`: its size (10 B .. 9 KB) and content follow from seq."""
    r = random.Random(seq)
    size = r.choice((10, 60, 300, 1500, 9000))
    body = b"\x00\x01n" + (b"\x00" if level == 5 else b"") + struct.pack("!I", seq) + \
        bytes([seq % 251]) * size
    return b"\x30" + _varint(len(body)) + body


def tcp_max(which):
    """The largest TCP receive ("rmem") or send ("wmem") buffer autotuning may reach."""
    with open(f"/proc/sys/net/ipv4/tcp_{which}") as f:
        return int(f.read().split()[2])


def split_packets(data):
    """The whole packets at the start of data (views: no copies), and the
    length of a partial rest."""
    data, out, i = memoryview(data), [], 0
    while True:
        n = first_packet_len(data[i:])
        if n is None or i + n > len(data):
            return out, len(data) - i
        out.append(data[i:i + n])
        i += n


class Peer:
    """One side of a session: writes numbered PUBLISHes (in random cuts) until
    told to stop or the socket fails, and records everything it reads."""

    def __init__(self, sock, seed):
        self.sock, self.rng = sock, random.Random(seed)
        self.got = bytearray()
        self.eof = threading.Event()
        self.sent_packets = 0
        self.stop = threading.Event()

    def start_reader(self):
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        self.sock.settimeout(30)
        try:
            while True:
                b = self.sock.recv(1 << 16)
                if not b:
                    break
                self.got.extend(b)
        except OSError:
            pass
        self.eof.set()

    def start_writer(self):
        threading.Thread(target=self._write, daemon=True).start()

    def _write(self):
        seq = 0
        try:
            while not self.stop.is_set() and seq < 100000:
                p = numbered(seq)
                i = 0
                while i < len(p):
                    n = self.rng.randrange(1, 20000)
                    self.sock.sendall(p[i:i + n])
                    i += n
                seq += 1
                self.sent_packets = seq
                # About 1 MB/s: a reader stalled 100 ms by a busy machine stays
                # under the kernel's backlog bound (that take-back is tested apart).
                time.sleep(0.002)
        except OSError:
            pass


def check_prefix(tc, what, packets, first):
    """packets: the numbered PUBLISHes 0..k exactly, then one DISCONNECT."""
    tc.assertGreater(len(packets), 1, f"{what}: nothing flowed")
    tc.assertEqual(packets[-1][0], 0xE0, f"{what}: does not end with a DISCONNECT")
    for seq, p in enumerate(packets[:-1]):
        tc.assertEqual(p, numbered(seq), f"{what}: packet {seq} of {len(packets) - 1} differs")
    return len(packets) - 1


def session_fds(pid, lb_port, broker_port):
    """mqttlb's descriptors on its established client (local port lb_port) and
    broker (remote port broker_port) connections: a duplicate of a socket
    shows as a second descriptor on the same inode."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            col = line.split()
            lport, rport = int(col[1].split(":")[1], 16), int(col[2].split(":")[1], 16)
            if col[3] == "01" and (lport == lb_port or rport == broker_port):
                inodes.add(col[9])
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            n += 1
    return n


class KernelForwarding(harness.TestCase):
    def setUp(self):
        kernel_forwarding_or_skip(self)

    def test_take_back_mid_stream_loses_and_duplicates_nothing(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        self.addCleanup(srv.close)
        bport = srv.getsockname()[1]
        _, port, a, _, _ = start_lb_admin(self, [("b1", bport)], health={"enabled": False},
                                          workers=1, forwarding="kernel")
        c = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(c.close)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sendall(connect_packet("mid-stream", 5))
        srv.settimeout(10)
        b, _ = srv.accept()
        self.addCleanup(b.close)
        got = bytearray()
        b.settimeout(10)
        while first_packet_len(bytes(got)) is None:
            got.extend(b.recv(4096))
        b.sendall(CONNACK5)
        c.settimeout(10)
        self.assertEqual(c.recv(5), CONNACK5)
        wait_until(lambda: a.get("/api/v1/clients/mid-stream").json.get("forwarding") == "kernel",
                   10, what="session joined in the kernel")
        client, broker = Peer(c, 1), Peer(b, 2)
        broker.got.extend(got)
        for p in (client, broker):
            p.start_reader()
            p.start_writer()
        wait_until(lambda: client.sent_packets > 200 and broker.sent_packets > 200, 20,
                   what="both streams flowing")
        path = a.get("/api/v1/clients/mid-stream").json.get("forwarding")
        self.assertEqual(path, "kernel", "taken back before the evacuation")
        r = a.post("/api/v1/backends/b1/evacuate", {"rate_per_s": 1000, "deadline_s": 10})
        self.assertEqual(r.status, 202, r)
        self.assertTrue(client.eof.wait(15), "the client was not ended")
        self.assertTrue(broker.eof.wait(15), "the broker was not ended")
        client.stop.set()
        broker.stop.set()
        # The client: numbered packets 0..k, the DISCONNECT, EOF.
        pk, rest = split_packets(bytes(client.got))
        self.assertEqual(rest, 0, "the client got a partial packet")
        k = check_prefix(self, "client", pk, 0)  # (the CONNACK was read before)
        # The broker: the CONNECT, numbered packets 0..m, a normal DISCONNECT, EOF.
        pk, rest = split_packets(bytes(broker.got))
        self.assertEqual(rest, 0, "the broker got a partial packet")
        self.assertEqual(pk[0][0], 0x10)
        m = check_prefix(self, "broker", pk[1:], 0)
        print(f"evacuated mid-stream ({path} path then) after {k} packets to the client, {m} to "
              "the broker", flush=True)

    def joined_session(self, fb, port, mport, cid, keepalive=60, buf=None):
        """A client session joined in the kernel; buf: (SO_RCVBUF or SO_SNDBUF, bytes)."""
        s = socket.socket()
        if buf:
            s.setsockopt(socket.SOL_SOCKET, *buf)
        s.connect(("127.0.0.1", port))
        self.addCleanup(s.close)
        s.sendall(connect_packet(cid, 4, keepalive))
        s.settimeout(5)
        self.assertEqual(s.recv(4), CONNACK)
        wait_until(lambda: metric(mport, 'mqttlb_sessions_forwarding{path="kernel"}') == 1, 10,
                   what="session joined in the kernel")
        return s

    def fake_and_lb(self, **sections):
        fb = FakeBroker()
        self.addCleanup(fb.close)
        p, port, mport, _ = start_mqttlb(
            self, [{"name": "fake", "address": f"127.0.0.1:{fb.port}"}], workers=1,
            health={"enabled": False}, forwarding="kernel", **sections)
        return fb, p, port, mport

    def test_stalled_client_bounds_the_kernel_queues_and_loses_nothing(self):
        fb, p, port, mport = self.fake_and_lb()
        s = self.joined_session(fb, port, mport, "slow-reader", 0, (socket.SO_RCVBUF, 64 * 1024))
        rss0 = rss_kib(p.pid)
        total = 64 * 1024 * 1024
        # 1 MiB of whole PUBLISHes (16 x 64 KiB), repeated: the kernel path
        # forwards MQTT (bytes that are not go back to userspace: tested below).
        body = b"\x00\x01t" + os.urandom(65536 - 4 - 3)
        chunk = (b"\x30" + _varint(len(body)) + body) * 16
        self.assertEqual(len(chunk), 1 << 20)
        fb.peer.settimeout(2.0)
        sent = 0
        try:
            while sent < total:
                sent += fb.peer.send(chunk)
        except socket.timeout:
            pass
        # Without a bound the verdict would redirect all 64 MiB into the
        # client's psock queue (measured: it does, on 6.18). With it: the
        # socket buffers on the way, a few MiB.
        print(f"stalled client: the broker could send {sent / 2**20:.1f} MiB", flush=True)
        self.assertLess(sent, 16 * 1024 * 1024, "the broker was not slowed down")
        self.assertEqual(metric(mport, 'mqttlb_kernel_fallbacks_total{reason="backpressure"}'), 1)
        grown = rss_kib(p.pid) - rss0
        self.assertLess(grown, 16 * 1024, f"mqttlb grew by {grown} KiB while the client stalled")
        got = bytearray()
        done = threading.Event()

        def drain():
            s.settimeout(10)
            try:
                while len(got) < total:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    got.extend(b)
            except OSError:
                pass
            done.set()

        threading.Thread(target=drain, daemon=True).start()
        fb.peer.settimeout(30)
        view = memoryview(chunk)
        off = sent % len(chunk)
        while sent < total:
            n = fb.peer.send(view[off:])
            sent += n
            off = (off + n) % len(chunk)
        self.assertTrue(done.wait(60), "client did not receive everything")
        # A failure here with overreads 1 is the kernel's, docs/forwarding.md
        # "Known defect": mqttlb closed the session it could not trust.
        why = f"overreads {metric(mport, 'mqttlb_kernel_overreads_total')}"
        self.assertEqual(len(got), total, why)
        self.assertEqual(bytes(got), chunk * 64, why)
        self.assertEqual(metric(mport, "mqttlb_kernel_overreads_total"), 0)

    def test_frozen_broker_bounds_the_kernel_queues_and_delivers_once_in_order(self):
        """The client->broker direction of the cap: the broker process is
        stopped (its socket still takes bytes until its buffers are full)
        while the client publishes as fast as it can."""
        broker, bport = self.start_our_broker(extra=("--max-queued", "100000"))  # drops none
        lb, port, mport, _ = start_mqttlb(self, [("b1", bport)], workers=1,
                                          health={"enabled": False}, forwarding="kernel")
        sub, _ = raw_connect(bport, "frozen-sub")  # at the broker itself: only the publisher joins
        self.addCleanup(sub.close)
        sub.send(subscribe([("frozen/t", 0)]))
        self.assertEqual(sub.recv()[0], 0x90)
        reader = Peer(sub.sock, 0)  # records what the subscriber reads
        reader.got.extend(sub.buf)
        reader.start_reader()
        got, got_eof = reader.got, reader.eof
        # Held back, the bytes wait in sockets: mqttlb's client socket (its
        # receive buffer autotunes up to tcp_rmem's maximum: 18 MiB measured,
        # with 32 allowed), its backend socket's send queue (tcp_wmem), the
        # broker's and the client's. Without the cap the client sends it all.
        bound = tcp_max("rmem") + tcp_max("wmem") + 8 * 1024 * 1024
        slow = 100  # the first 100 paced
        n = max(6000, (bound + 16 * 1024 * 1024) // 8192)  # 8 KiB messages

        def msg(seq):
            return publish("frozen/t", struct.pack("!I", seq) + bytes([seq % 251]) * 8188)

        c = self.joined_session(None, port, mport, "frozen-pub", 60, (socket.SO_SNDBUF, 64 * 1024))
        size = len(msg(0))
        sent, go_fast, pub_done = [0], threading.Event(), threading.Event()

        def publisher():
            c.settimeout(60)
            try:
                for seq in range(n):
                    if seq == slow:
                        go_fast.wait(30)
                    c.sendall(msg(seq))
                    sent[0] = seq + 1
                    if seq < slow:
                        time.sleep(0.005)  # 1.6 MB/s: under the cap on a busy machine
            except OSError:
                pass
            pub_done.set()

        threading.Thread(target=publisher, daemon=True).start()
        wait_until(lambda: len(got) >= slow * size, 20, what="the paced messages at the subscriber")
        self.assertEqual(metric(mport, 'mqttlb_sessions_forwarding{path="kernel"}'), 1,
                         "taken back before the broker froze")
        rss0 = rss_kib(lb.pid)
        broker.signal(signal.SIGSTOP)
        try:
            go_fast.set()
            last = [sent[0], time.monotonic()]

            def stalled():
                if sent[0] != last[0]:
                    last[:] = [sent[0], time.monotonic()]
                return time.monotonic() - last[1] > 1.0 or pub_done.is_set()

            wait_until(stalled, 30, interval=0.05, what="the publisher held back")
            frozen = (sent[0] - slow) * size
            print(f"frozen broker: the client could send {frozen / 2**20:.1f} MiB "
                  f"(bound {bound / 2**20:.0f})", flush=True)
            self.assertFalse(pub_done.is_set(), "the client sent everything to a frozen broker")
            self.assertLess(frozen, bound, "the client was not held back")
            self.assertEqual(
                metric(mport, 'mqttlb_kernel_fallbacks_total{reason="backpressure"}'), 1)
            grown = rss_kib(lb.pid) - rss0
            self.assertLess(grown, 16 * 1024, f"mqttlb grew by {grown} KiB while the broker froze")
        finally:
            broker.signal(signal.SIGCONT)
        self.assertTrue(pub_done.wait(60), "the publisher did not finish after SIGCONT")
        self.assertEqual(sent[0], n)
        wait_until(lambda: len(got) >= n * size or got_eof.is_set(), 60,
                   what="every message at the subscriber")
        pk, rest = split_packets(bytes(got))
        self.assertEqual(rest, 0, "the subscriber got a partial packet")
        self.assertEqual(len(pk), n, "messages lost or duplicated")
        for seq, p in enumerate(pk):
            if p != msg(seq):
                self.fail(f"message {seq} of {n} differs (out of order, lost or duplicated)")
        c2b = len(connect_packet("frozen-pub", 4, 60)) + n * size
        wait_until(lambda: metric(mport, 'mqttlb_bytes_total{direction="client_to_backend"}') ==
                   c2b, 5, what="client->backend bytes counted once")

    def test_idle_timeout_holds_while_the_kernel_forwards(self):
        # keep-alive 1 s: idle timeout 1.5 s + 500 ms grace.
        fb, _, port, mport = self.fake_and_lb(limits={"idle_grace_ms": 500})
        s = self.joined_session(fb, port, mport, "idler", keepalive=1)
        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < 4.0:  # twice the idle timeout, traffic every 0.3 s
            s.sendall(b"\xc0\x00")  # PINGREQ
            sent += 2
            fb.peer.sendall(b"\xd0\x00")  # PINGRESP
            self.assertEqual(s.recv(2), b"\xd0\x00")
            time.sleep(0.3)
        self.assertEqual(metric(mport, 'mqttlb_sessions_forwarding{path="kernel"}'), 1,
                         "the session did not stay in the kernel while busy")
        quiet = time.monotonic()
        s.settimeout(10)
        self.assertEqual(s.recv(1), b"", "not closed when idle")
        waited = time.monotonic() - quiet
        self.assertGreater(waited, 1.5)
        self.assertLess(waited, 5.0)
        self.assertEqual(metric(mport, 'mqttlb_sessions_closed_total{reason="idle_timeout"}'), 1)
        wait_until(lambda: len(fb.data) >= sent, 5, what="pings at the broker")
        self.assertTrue(fb.data.endswith(b"\xc0\x00" * (sent // 2)))

    def test_busy_sessions_are_not_idle(self):
        """24 sessions pinging as fast as they can through the kernel for
        3.5 s (three counter/idle ticks): none is closed. bench/compare's QoS 1
        rate runs lost a connection now and then before two fixes (a redirect
        later than the loop's cached time underflowed the idle check; a
        per-CPU scan buffer shared by a verdict and a softirq nested in it);
        this holds the property, it does not reproduce those races every time."""
        _, bport = self.start_our_broker()
        _, port, mport, _ = start_mqttlb(self, [("b1", bport)], workers=2,
                                         health={"enabled": False}, forwarding="kernel")
        n, errors = 24, []

        def pinger(i):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(connect_packet(f"busy-{i}", 4, 60))
                if s.recv(4) != CONNACK:
                    raise AssertionError("no CONNACK")
                end = time.monotonic() + 3.5  # three sync ticks (one a second)
                while time.monotonic() < end:
                    s.sendall(b"\xc0\x00")
                    got = b""
                    while len(got) < 2:
                        b = s.recv(2 - len(got))
                        if not b:
                            raise AssertionError("closed while busy")
                        got += b
                s.close()
            except Exception as e:  # reported below, in the test's thread
                errors.append(f"session {i}: {e!r}")

        threads = [threading.Thread(target=pinger, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(metric(mport, "mqttlb_kernel_joins_total"), n)
        self.assertEqual(metric(mport, 'mqttlb_sessions_closed_total{reason="idle_timeout"}'), 0)

    def test_half_close_and_counters(self):
        fb, _, port, mport = self.fake_and_lb()
        s = self.joined_session(fb, port, mport, "halfer")
        s.sendall(b"\x30\x05\x00\x01tAB")
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(fb.eof.wait(5), "the client's FIN did not reach the broker")
        self.assertTrue(fb.data.endswith(b"\x30\x05\x00\x01tAB"))
        # The other direction still flows, then its FIN closes the session.
        fb.peer.sendall(b"\x30\x04\x00\x01zz")
        fb.peer.shutdown(socket.SHUT_WR)
        got = bytearray()
        s.settimeout(5)
        while True:
            b = s.recv(100)
            if not b:
                break
            got.extend(b)
        self.assertEqual(bytes(got), b"\x30\x04\x00\x01zz")
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 0, 5, what="closed")
        c2b = len(fb.data)
        self.assertEqual(metric(mport, 'mqttlb_bytes_total{direction="client_to_backend"}'), c2b)
        self.assertEqual(metric(mport, 'mqttlb_bytes_total{direction="backend_to_client"}'), 4 + 6)
        # Packets the kernel forwarded: the client's PUBLISH (the CONNECT and
        # CONNACK crossed before the join; the broker's PUBLISH after the
        # client's FIN took the session back to the pump).
        self.assertEqual(metric(mport, 'mqttlb_kernel_packets_total{direction="client_to_backend"}'), 1)
        self.assertEqual(metric(mport, 'mqttlb_kernel_packets_total{direction="backend_to_client"}'), 0)
        self.assertEqual(metric(mport, 'mqttlb_sessions_forwarding{path="kernel"}'), 0)
        self.assertEqual(metric(mport, 'mqttlb_sessions_forwarding{path="userspace"}'), 0)

    def test_malformed_stream_goes_back_to_userspace_byte_for_byte(self):
        fb, _, port, mport = self.fake_and_lb()
        s = self.joined_session(fb, port, mport, "garbage")
        # A 5-byte Remaining Length: the kernel stops there; the userspace pump
        # forwards every byte as it always did.
        junk = b"\x30\x02ab" + b"\x30\xff\xff\xff\xff\x7f" + os.urandom(3000)
        fb.peer.sendall(junk)
        got = bytearray()
        s.settimeout(5)
        while len(got) < len(junk):
            b = s.recv(65536)
            if not b:
                break
            got.extend(b)
        self.assertEqual(bytes(got), junk)
        self.assertEqual(metric(mport, 'mqttlb_kernel_fallbacks_total{reason="malformed"}'), 1)

    def test_a_joined_session_holds_two_descriptors_and_a_broker_reset_reaches_the_client(self):
        fb, p, port, mport = self.fake_and_lb()
        s = self.joined_session(fb, port, mport, "two-fds")
        # The ends of both streams are watched on the sockets themselves (the
        # worker's epoll set), not on a duplicate of each.
        self.assertEqual(session_fds(p.pid, port, fb.port), 2)
        # The fake broker's reader thread sits in recv() on this socket, and a
        # close() would not release it before that returns: wake it first
        # (SHUT_RD sends nothing), then close with linger 0, which sends the RST.
        fb.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        fb.peer.shutdown(socket.SHUT_RD)
        self.assertTrue(fb.eof.wait(5), "the fake broker's reader did not return")
        fb.peer.close()
        s.settimeout(5)
        try:
            self.assertEqual(s.recv(100), b"", "the client's connection outlived its broker's reset")
        except ConnectionResetError:
            pass
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 0, 5, what="closed")
        wait_until(lambda: session_fds(p.pid, port, fb.port) == 0, 5, what="descriptors closed")

    def test_reset_propagates(self):
        fb, _, port, mport = self.fake_and_lb()
        s = self.joined_session(fb, port, mport, "resetter")
        s.sendall(b"\x30\x03\x00\x01t")
        wait_until(lambda: fb.data.endswith(b"\x30\x03\x00\x01t"), 5, what="bytes at the broker")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        self.assertTrue(fb.eof.wait(5), "client reset not propagated to the broker")
        wait_until(lambda: metric(mport, "mqttlb_connections_active") == 0, 5, what="closed")


class WithoutPrivileges(harness.TestCase):
    """Where the BPF programs cannot load (here: mqttlb started without any
    capability): "auto" says so once and forwards in the pump; "kernel"
    refuses to start and says why. Runs wherever the suite runs as root."""
    DROP = ("/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all")

    def setUp(self):
        if os.geteuid() != 0 or not os.access(self.DROP[0], os.X_OK):
            self.skipTest("needs root and setpriv to run mqttlb without capabilities")

    def test_auto_falls_back_to_the_pump_and_says_why(self):
        fb = FakeBroker()
        self.addCleanup(fb.close)
        p, port, mport, _ = start_mqttlb(
            self, [{"name": "fake", "address": f"127.0.0.1:{fb.port}"}], wrapper=self.DROP,
            workers=1, health={"enabled": False}, forwarding="auto")
        p.wait_for_line(r"forwarding auto: every session uses the userspace pump: .*not permitted")
        s = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(s.close)
        s.sendall(connect_packet("no-bpf", 4))
        s.settimeout(5)
        self.assertEqual(s.recv(4), CONNACK)
        s.sendall(b"\x30\x03\x00\x01t")
        wait_until(lambda: fb.data.endswith(b"\x30\x03\x00\x01t"), 5, what="bytes at the broker")
        self.assertEqual(metric(mport, 'mqttlb_kernel_fallbacks_total{reason="unavailable"}'), 1)
        self.assertEqual(metric(mport, "mqttlb_kernel_joins_total"), 0)
        self.assertEqual(metric(mport, 'mqttlb_sessions_forwarding{path="userspace"}'), 1)

    def test_kernel_refuses_to_start_and_says_why(self):
        d = self.tmpdir()
        path = os.path.join(d, "mqttlb.json")
        with open(path, "w") as f:
            f.write('{"listeners": [{"name": "mqtt", "bind": "127.0.0.1:%d"}], '
                    '"backends": [{"name": "b1", "address": "127.0.0.1:1"}], '
                    '"health": {"enabled": false}, "forwarding": "kernel"}' % harness.free_port())
        p = self.spawn(list(self.DROP) + [harness.binary("mqttlb"), "-c", path], name="mqttlb")
        p.wait_for_line(r'/forwarding: "kernel" but in-kernel forwarding is unavailable', 20)
        wait_until(lambda: not p.alive(), 10, what="mqttlb exits")
        self.assertEqual(p.p.returncode, 1)


if __name__ == "__main__":
    harness.main()
