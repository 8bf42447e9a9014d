"""Health checks and the fleet around them (issue 6): two mqttlb instances
checking the same brokers without disturbing each other, slowstart spreading
reconnecting devices, and on_down "shutdown-sessions" moving clients off a
broker that stopped answering. Real processes; state read from /metrics."""
import select
import signal
import time

import harness
from harness import free_port, wait_until
from lb_helpers import metric, metrics, mqtt_connect, start_mqttlb

HC = {"interval_ms": 200, "timeout_ms": 200, "rise": 2, "fall": 2}


def up(mport, name):
    return metric(mport, f'mqttlb_backend_up{{backend="{name}"}}')


def active(mport, name):
    return metric(mport, f'mqttlb_backend_sessions_active{{backend="{name}"}}')


def wait_up(mport, name, value=1, timeout=10.0):
    wait_until(lambda: up(mport, name) == value, timeout, interval=0.05,
               what=f"backend {name} up == {value}")


def closed_within(socks, timeout):
    """Waits up to `timeout` s; returns {index: seconds until EOF/reset} for the
    sockets the peer closed. Reads and discards anything else."""
    t0 = time.monotonic()
    open_ = {s.fileno(): i for i, s in enumerate(socks)}
    by_fd = {s.fileno(): s for s in socks}
    out = {}
    while open_ and time.monotonic() - t0 < timeout:
        ready, _, _ = select.select(list(open_), [], [], max(0.0, timeout - (time.monotonic() - t0)))
        for fd in ready:
            try:
                data = by_fd[fd].recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                out[open_.pop(fd)] = time.monotonic() - t0
    return out


class Cluster(harness.TestCase):
    def test_two_instances_checking_the_same_brokers_do_not_disturb_each_other(self):
        _, p1 = self.start_our_broker(name="b1")
        _, p2 = self.start_mosquitto()
        backends = [("b1", p1), ("b2", p2)]
        lbs = [start_mqttlb(self, backends, health=HC) for _ in range(2)]
        # Persistent check sessions on both brokers, from both instances, for at
        # least ten checks each. Shared client ids would make each broker close the
        # other instance's session (takeover) and show up as "closed" failures.
        for _, _, mport, _ in lbs:
            for name in ("b1", "b2"):
                wait_until(lambda: metric(mport, f'mqttlb_health_checks_total{{backend="{name}",'
                                                 f'result="pass"}}') >= 10, 20, interval=0.1,
                           what=f"ten passing checks of {name}")
        for lb, _, mport, _ in lbs:
            m = metrics(mport)
            for name in ("b1", "b2"):
                self.assertEqual(m.get(f'mqttlb_health_checks_total{{backend="{name}",'
                                       f'result="fail"}}', 0), 0, lb.output())
                self.assertEqual(m.get(f'mqttlb_health_transitions_total{{backend="{name}",'
                                       f'to="down"}}', 0), 0)
                self.assertEqual(m.get(f'mqttlb_backend_up{{backend="{name}"}}'), 1)

    def placed_on_new_backend(self, slowstart_ms):
        """20 sessions on b1 while b2 is down; b2 comes up; 20 new clients
        connect at once. Returns how many of those b2 got."""
        _, p1 = self.start_our_broker(name="b1")
        p2 = free_port()
        _, port, mport, _ = start_mqttlb(self, [("b1", p1), ("b2", p2)],
                                         health=dict(HC, slowstart_ms=slowstart_ms))
        self.assertEqual(up(mport, "b2"), 0)
        socks = [mqtt_connect(port, f"old-{slowstart_ms}-{i}")[0] for i in range(20)]
        self.assertEqual(active(mport, "b1"), 20)
        self.start_our_broker(port=p2, name="b2")
        wait_up(mport, "b2")
        socks += [mqtt_connect(port, f"new-{slowstart_ms}-{i}")[0] for i in range(20)]
        wait_until(lambda: active(mport, "b1") + active(mport, "b2") == 40, 5,
                   what="40 sessions placed")
        got = int(active(mport, "b2"))
        for s in socks:
            s.close()
        return got

    def test_slowstart_spreads_new_connections(self):
        # Without slowstart, leastconn sends every new client to the empty broker.
        without = self.placed_on_new_backend(0)
        self.assertGreaterEqual(without, 18)
        # With a 20 s ramp the returning broker starts near weight 0.01.
        with_ss = self.placed_on_new_backend(20_000)
        print(f"new clients on the returning broker: {without}/20 without slowstart, "
              f"{with_ss}/20 with")
        self.assertGreaterEqual(with_ss, 1)
        self.assertLessEqual(with_ss, 6)

    def frozen_backend_sessions(self, on_down):
        """10 sessions over b1/b2, then b2 freezes (SIGSTOP: TCP stays open, so
        its sessions do not end by themselves). Returns (socks, on_b2 count,
        mport, port)."""
        _, p1 = self.start_our_broker(name="b1")
        b2, p2 = self.start_our_broker(name="b2")
        self.addCleanup(b2.signal, signal.SIGCONT)
        hc = dict(HC, on_down=on_down, shutdown_spread_ms=1000)
        lb, port, mport, _ = start_mqttlb(self, [("b1", p1), ("b2", p2)], health=hc)
        socks = [mqtt_connect(port, f"dev-{on_down}-{i}")[0] for i in range(10)]
        on_b2 = int(active(mport, "b2"))
        self.assertGreaterEqual(on_b2, 3)  # leastconn spread them
        b2.signal(signal.SIGSTOP)
        wait_up(mport, "b2", 0)
        return socks, on_b2, mport, port

    def test_shutdown_sessions_moves_clients_off_a_dead_broker(self):
        socks, on_b2, mport, port = self.frozen_backend_sessions("shutdown-sessions")
        closed = closed_within(socks, 10)
        self.assertEqual(len(closed), on_b2, f"closed: {closed}")
        span = max(closed.values()) - min(closed.values())
        print(f"{on_b2} sessions closed over {span:.2f}s (spread 1 s)")
        self.assertGreaterEqual(span, 0.3)  # spread out, not a storm
        self.assertEqual(
            metric(mport, 'mqttlb_sessions_closed_total{reason="backend_shutdown"}'), on_b2)
        # The devices reconnect and all land on the healthy broker.
        for i in closed:
            socks[i].close()
            socks[i] = mqtt_connect(port, f"dev-shutdown-sessions-{i}")[0]
        wait_until(lambda: active(mport, "b1") == 10 and active(mport, "b2") == 0, 5,
                   what="all sessions on b1")
        for s in socks:
            s.close()

    def test_on_down_keep_leaves_sessions_alone(self):
        socks, on_b2, mport, _ = self.frozen_backend_sessions("keep")
        # Bounded negative check: longer than the 1 s spread shutdown would use.
        self.assertEqual(closed_within(socks, 2.0), {})
        self.assertEqual(active(mport, "b2"), on_b2)
        for s in socks:
            s.close()


if __name__ == "__main__":
    harness.main()
