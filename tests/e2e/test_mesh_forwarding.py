"""A full mesh of three dmsgd servers (issue 4), each listing the other two in its config file, a
client on each: every pair of clients exchanges data both ways through the peer links; 64 MiB
cross one peer link intact; a slow receiver on the far server holds the sender back and no
server buffers the stream."""

import subprocess
import time

import harness
import meshlib
from harness import Drain, E2ECase, Pump

BIG = 64 << 20
SLOW_TOTAL = 48 << 20
SLOW_RATE = 256 << 10
SLOW_SECONDS = 5
WARMUP = 4 << 20
# Between the sender's stdin and the receiver's stdout through two servers: two pipes, the
# sender's write queue (one window) and one yamux window per hop (three hops: client-A, A-B,
# B-client), since credit only returns once the next stage took the bytes: about 1.3 MiB.
MAX_IN_FLIGHT = 8 << 20
MAX_SERVER_GROWTH_KIB = 8 * 1024


class FullMesh(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        a = meshlib.keyed_daemon(cls, "A")
        b = meshlib.keyed_daemon(cls, "B")
        c = meshlib.keyed_daemon(cls, "C")
        meshlib.start_with_peers([(a, [b, c]), (b, [a, c]), (c, [a, b])])
        cls.servers = [a, b, c]
        for x in cls.servers:
            for y in cls.servers:
                if x is not y:
                    meshlib.link(x, y)
        cls.echo = {}
        for i, s in enumerate(cls.servers):
            cls.echo[s.name] = meshlib.echo_listener(cls.children, s, 7)[1]

    def test_1_every_pair_both_ways(self):
        for x in self.servers:
            for y in self.servers:
                if x is y:
                    continue
                # The client on x dials the echo client on y: data goes x -> y and comes back.
                code, res, err = meshlib.echo_run(x, self.echo[y.name], 7, streams=4,
                                                  nbytes=256 << 10)
                self.assertIsNotNone(res, err)
                self.assertEqual(res["ok"], 4, f"{x.name}->{y.name}: {res}\n{err[-3000:]}")
                self.assertEqual(code, 0)
        self.log("6 ordered pairs x 4 streams x 256 KiB echoed intact")

    def test_2_64mib_across_a_peer_link(self):
        a, b = self.servers[0], self.servers[1]
        listener, lpk = harness.start_listener(self.children, 5, server=b.server_ref,
                                               extra=["--no-stdin"])
        dialer = harness.start_dialer(self.children, f"{lpk}:5", server=a.server_ref,
                                      stdout=subprocess.DEVNULL)
        drain = Drain(listener.p.stdout)
        pump = Pump(dialer.p.stdin, BIG)
        t0 = time.monotonic()
        drain.start()
        pump.start()
        pump.join(90)
        drain.join(90)
        secs = time.monotonic() - t0
        self.assertFalse(pump.is_alive() or drain.is_alive(), "transfer did not finish in time")
        self.assertIsNone(pump.error)
        self.assertEqual(drain.read, BIG, f"listener got {drain.read} of {BIG} bytes")
        self.assertEqual(drain.sha.hexdigest(), pump.sha.hexdigest())
        self.assertEqual(dialer.wait(15), 0, dialer.stderr_text())
        self.assertEqual(listener.wait(15), 0, listener.stderr_text())
        self.log(f"64 MiB A->B through the peer link in {secs:.2f} s "
                 f"({BIG / secs / 1e6:.0f} MB/s); RSS A {a.rss()} KiB, B {b.rss()} KiB")

    def test_3_slow_receiver_on_the_far_server(self):
        a, c = self.servers[0], self.servers[2]
        listener, lpk = harness.start_listener(self.children, 6, server=c.server_ref,
                                               extra=["--no-stdin"])
        dialer = harness.start_dialer(self.children, f"{lpk}:6", server=a.server_ref,
                                      stdout=subprocess.DEVNULL)
        drain = Drain(listener.p.stdout)
        pump = Pump(dialer.p.stdin, SLOW_TOTAL)
        drain.start()
        pump.start()
        self.assertTrue(harness.wait_until(lambda: drain.read >= WARMUP, 30), "no data arrived")
        rss0 = {s.name: s.rss() for s in (a, c)}
        written0 = pump.written
        drain.slow_rate = SLOW_RATE
        in_flight, rss_max = 0, dict(rss0)
        t_end = time.monotonic() + SLOW_SECONDS
        while time.monotonic() < t_end:
            in_flight = max(in_flight, pump.written - drain.read)
            for s in (a, c):
                rss_max[s.name] = max(rss_max[s.name], s.rss())
            time.sleep(0.2)
        written_slow = pump.written - written0
        drain.slow_rate = None
        pump.join(90)
        drain.join(90)
        growth = {k: rss_max[k] - rss0[k] for k in rss0}
        self.log(f"slow phase: sender wrote {written_slow / 2**20:.1f} MiB more, at most "
                 f"{in_flight / 2**20:.1f} MiB in flight; RSS growth KiB {growth}")
        self.assertLess(in_flight, MAX_IN_FLIGHT, "the sender was not held back")
        self.assertLess(written_slow, MAX_IN_FLIGHT + SLOW_RATE * SLOW_SECONDS)
        for name, g in growth.items():
            self.assertLess(g, MAX_SERVER_GROWTH_KIB, f"server {name} buffered the stream")
        self.assertFalse(pump.is_alive() or drain.is_alive(), "transfer did not finish")
        self.assertEqual(drain.read, SLOW_TOTAL)
        self.assertEqual(drain.sha.hexdigest(), pump.sha.hexdigest())
        self.assertEqual(dialer.wait(15), 0, dialer.stderr_text())
        self.assertEqual(listener.wait(15), 0, listener.stderr_text())

    def test_4_clean_exit(self):
        self.children.kill_all()
        for s in self.servers:
            s.stop(self)


if __name__ == "__main__":
    harness.main(budget_s=120)
