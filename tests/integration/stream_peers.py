"""Peers for data-path property tests: a scripted fake broker and a client that
controls TCP segmentation and TLS record sizes exactly.

Both peers are single-threaded select loops over non-blocking sockets, so a TLS
client can hold one ssl.SSLObject (not thread-safe) and still send and receive
at the same time: neither side can deadlock the other on full buffers.

    broker = ScriptedBroker(tc)                  # listens on broker.port
    broker.expect("cid-1", b2c_segments)         # what it sends after CONNACK
    got = run_client(port, connect + c2b, segments, tls_ctx=None)
    conn = broker.result("cid-1")                # bytes it received, until EOF

Rules as in harness.py: loopback only, free ports, every wait bounded.
"""
import random
import select
import socket
import ssl
import struct
import threading
import time

import harness
from harness import free_port

_varint = harness.varint
_str = harness.lp_bytes

CONNACK_OK = b"\x20\x02\x00\x00"


# ----------------------------------------------------------------- packets
def packet(first, body):
    return bytes([first]) + _varint(len(body)) + body


def random_packets(rng, n, max_payload, to_broker=True):
    """n well-formed MQTT 3.1.1 packets (PUBLISH QoS 0/1, ping, SUBSCRIBE/SUBACK)."""
    out = []
    for i in range(n):
        k = rng.random()
        if k < 0.65:
            qos = rng.choice((0, 1))
            topic = f"t/{rng.randrange(1000)}"
            payload = rng.randbytes(rng.randrange(max_payload + 1))
            body = _str(topic) + (struct.pack("!H", i % 65535 + 1) if qos else b"") + payload
            out.append(packet(0x30 | (qos << 1), body))
        elif k < 0.85:
            out.append(b"\xc0\x00" if to_broker else b"\xd0\x00")
        elif to_broker:
            out.append(packet(0x82, struct.pack("!H", i % 65535 + 1) + _str("s/#") + b"\x01"))
        else:
            out.append(packet(0x90, struct.pack("!H", i % 65535 + 1) + b"\x01"))
    return out


def segments(rng, data, mode):
    """Splits data into write-sized pieces: 'one' (a single write), 'bytes' (one
    byte per write) or 'random' (1..8 KiB pieces, some tiny)."""
    if mode == "one" or not data:
        return [data]
    if mode == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    out, i = [], 0
    while i < len(data):
        n = rng.choice((1, 2, 3, rng.randrange(1, 64), rng.randrange(1, 8192)))
        out.append(data[i:i + n])
        i += n
    return out


def client_id_of(connect):
    """The client id of a CONNECT built by lb_helpers.connect_packet (3.1.1/3.1/5.0)."""
    i = 1
    while connect[i] & 0x80:
        i += 1
    i += 1
    name_len = struct.unpack("!H", connect[i:i + 2])[0]
    i += 2 + name_len
    level = connect[i]
    i += 4  # level, flags, keep-alive
    if level == 5:
        plen = 0  # properties length varint (connect_packet writes 0)
        i += 1 + plen
    n = struct.unpack("!H", connect[i:i + 2])[0]
    return connect[i + 2:i + 2 + n].decode()


def first_packet_len(buf):
    """Length of the complete packet at the start of buf, or None."""
    if len(buf) < 2:
        return None
    n, mult, i = 0, 1, 1
    while i < len(buf) and i <= 4:
        n += (buf[i] & 0x7F) * mult
        mult *= 128
        if not buf[i] & 0x80:
            return i + 1 + n if len(buf) >= i + 1 + n else None
        i += 1
    return None


# ------------------------------------------------------------ event pumping
def pump(sock, out_segments, on_bytes, deadline, half_close=True, want_eof=True):
    """Sends each segment with its own send() call while reading; returns when
    everything was sent (then SHUT_WR if half_close) and EOF was read (if
    want_eof). on_bytes(data or b"" for EOF) -> optional list of more segments.
    Raises TimeoutError at the deadline."""
    sock.setblocking(False)
    pending = list(out_segments)
    cur, sent_eof, got_eof = b"", False, not want_eof
    while True:
        if not cur and pending:
            cur = pending.pop(0)
        if not cur and not pending and half_close and not sent_eof:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            sent_eof = True
        if got_eof and not cur and not pending:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("peer did not finish in time")
        r, w, _ = select.select([sock] if not got_eof else [], [sock] if cur else [], [],
                                min(left, 0.2))
        if w and cur:
            try:
                n = sock.send(cur)
                cur = cur[n:]
            except (BlockingIOError, InterruptedError):
                pass
        if r:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                data = None
            if not data:
                got_eof = True
                more = on_bytes(b"")
            else:
                more = on_bytes(data)
            if more:
                pending.extend(more)


class MemTls:
    """A TLS client over memory BIOs: the test decides every record's size and
    how the ciphertext is cut into TCP writes."""

    def __init__(self, sock, ctx, server_hostname="localhost"):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.eof = False

    def handshake(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self.out.pending:
                    self.sock.sendall(self.out.read())
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("EOF during the TLS handshake")
                self.inc.write(data)
        if self.out.pending:
            self.sock.sendall(self.out.read())

    def records(self, data, sizes):
        """Encrypts data as records of the given sizes (cycled); returns the ciphertext."""
        i, k = 0, 0
        while i < len(data):
            n = sizes[k % len(sizes)]
            self.obj.write(data[i:i + n])
            i += n
            k += 1
        return self.out.read()

    def close_notify(self):
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        return self.out.read()

    def feed(self, data):
        """Ciphertext in (b"" = TCP EOF) -> plaintext out; sets eof on close_notify."""
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()
        out = b""
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            out += chunk
        return out


def tls_client_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = True
    return ctx


def run_client(port, stream, rng, seg_mode, tls_ctx=None, record_sizes=None, timeout=30.0,
               host="127.0.0.1", after_connack=None):
    """Connects, sends `stream` (the CONNECT and what follows) cut by seg_mode,
    half-closes (TLS: close_notify in the same TCP write as the last bytes, then
    FIN), reads until EOF. Returns every plaintext byte received.
    after_connack (plain only): send the CONNECT alone, read the CONNACK, call
    it, then send the rest (a session idle once placed: in-kernel forwarding)."""
    deadline = time.monotonic() + timeout
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = bytearray()
    try:
        if tls_ctx is None:
            if after_connack is not None:
                n = first_packet_len(stream)
                s.sendall(stream[:n])
                while len(got) < len(CONNACK_OK):
                    d = s.recv(65536)
                    if not d:
                        return bytes(got)
                    got.extend(d)
                after_connack()
                stream = stream[n:]
            pump(s, segments(rng, stream, seg_mode), lambda d: got.extend(d), deadline)
            return bytes(got)
        t = MemTls(s, tls_ctx)
        t.handshake(timeout)
        wire = t.records(stream, record_sizes or [16384]) + t.close_notify()

        def on_bytes(d):
            got.extend(t.feed(d))

        pump(s, segments(rng, wire, seg_mode), on_bytes, deadline)
        return bytes(got)
    finally:
        s.close()


# ------------------------------------------------------------ fake broker
class ScriptedBroker:
    """Accepts connections on a free loopback port. For each one: reads the
    CONNECT, answers `connack` followed by the segments registered for that
    client id (expect()), half-closes, and records every byte it received until
    EOF (result()). A client id with nothing registered gets CONNACK 0 and no
    more. connack=None: never answers (a hung broker that still accepts)."""

    def __init__(self, tc, connack=CONNACK_OK, backlog=128):
        self.port = free_port()
        self.connack = connack
        self._plans = {}
        self._results = {}
        self._cv = threading.Condition()
        self.connections = 0
        self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", self.port))
        self._ls.listen(backlog)
        self._stop = False
        self._threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        tc.addCleanup(self.close)

    def expect(self, client_id, b2c_segments, half_close=True, gate=None):
        """gate (a threading.Event): the segments wait, after the CONNACK, until it is set."""
        with self._cv:
            self._plans[client_id] = (list(b2c_segments), half_close, gate)

    def result(self, client_id, timeout=30.0):
        """Bytes received on the connection of client_id (CONNECT included), once it ended."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while client_id not in self._results:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"broker: no finished connection for {client_id!r}")
                self._cv.wait(min(left, 0.2))
            return self._results[client_id]

    def close(self):
        self._stop = True
        try:
            self._ls.close()
        except OSError:
            pass
        for t in self._threads:
            t.join(5)

    def _accept_loop(self):
        self._ls.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self._ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cv:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c):
        deadline = time.monotonic() + 60
        buf = bytearray()
        cid = None
        try:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.settimeout(0.2)
            while cid is None and time.monotonic() < deadline and not self._stop:
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    return
                buf.extend(d)
                n = first_packet_len(buf)
                if n is not None:
                    cid = client_id_of(bytes(buf[:n]))
            if cid is None:
                return
            if self.connack is None:  # hung: hold the connection, answer nothing
                while not self._stop and time.monotonic() < deadline:
                    try:
                        if not c.recv(65536):
                            return
                    except socket.timeout:
                        continue
                    except OSError:
                        return
                return
            with self._cv:
                plan, half, gate = self._plans.pop(cid, ([], True, None))
            if gate is not None:
                c.sendall(self.connack)
                c.setblocking(False)
                while not gate.wait(0.02):
                    if time.monotonic() > deadline:
                        raise TimeoutError("gate never opened")
                    try:
                        d = c.recv(65536)
                        if d:
                            buf.extend(d)
                    except (BlockingIOError, InterruptedError):
                        pass
            else:
                plan = [self.connack] + plan
            pump(c, plan, lambda d: buf.extend(d), deadline, half_close=half)
            with self._cv:
                self._results[cid] = bytes(buf)
                self._cv.notify_all()
        except (OSError, TimeoutError):
            with self._cv:
                self._results.setdefault(cid or "?", bytes(buf))
                self._cv.notify_all()
        finally:
            c.close()


def rng_for(seed):
    return random.Random(seed)
