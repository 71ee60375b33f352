"""A receiver that reads slowly: the sender is held back (backpressure through the yamux windows
all the way from the receiver's stdout to the sender's stdin) and the server's RSS stays
bounded; once the receiver reads at full speed again every byte arrives intact.

A second case stops the receiving process altogether (SIGSTOP): nothing at all is read, and
the server must still not buffer the sender's data."""

import signal
import subprocess
import time

import harness
from harness import Drain, E2ECase, Pump

TOTAL = 96 << 20
SLOW_RATE = 256 << 10          # bytes/s read by the slow receiver
SLOW_SECONDS = 6
WARMUP = 4 << 20               # bytes through at full speed before the slow phase
# What may sit between the sender's stdin and the receiver's stdout: two pipes (64 KiB each),
# dmsgcat's write queue on the sending side (one window, 256 KiB) and the yamux windows of
# both hops (256 KiB each), since window credit only returns once the next stage took the
# bytes; about 1 MiB in all (0.5-0.8 MiB measured). 8 MiB leaves room for scheduling noise;
# a relay that buffers would let the whole 96 MiB through.
MAX_IN_FLIGHT = 8 << 20
# The server may keep about one window per direction of the stream, plus allocator slack.
MAX_SERVER_GROWTH_KIB = 8 * 1024


class SlowReceiver(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d = cls.start_daemon()
        time.sleep(0.3)

    def transfer_with_stalled_reader(self, stall):
        """stall(listener, drain) starts the slow phase; returns when data flows fully again."""
        d = self.d
        port = 20 + len(self.children.procs)
        listener, lpk = harness.start_listener(self.children, port, server=d.server_ref,
                                               extra=["--no-stdin"])
        dialer = harness.start_dialer(self.children, f"{lpk}:{port}", server=d.server_ref,
                                      stdout=subprocess.DEVNULL)
        drain = Drain(listener.p.stdout)
        pump = Pump(dialer.p.stdin, TOTAL)
        drain.start()
        pump.start()
        # The stream must be up and carrying data before the receiver slows down.
        flowing = harness.wait_until(lambda: drain.read >= WARMUP, 30)
        self.assertTrue(flowing, f"no data arrived: {listener.stderr_text()}")
        rss0 = d.rss()
        written0 = pump.written
        resume = stall(listener, drain)
        samples = []
        t_end = time.monotonic() + SLOW_SECONDS
        while time.monotonic() < t_end:
            samples.append((pump.written - drain.read, d.rss()))
            time.sleep(0.2)
        in_flight_max = max(s[0] for s in samples)
        rss_max = max(s[1] for s in samples)
        written_slow = pump.written - written0
        resume()
        pump.join(120)
        drain.join(120)
        self.log(f"slow phase: sender wrote {written_slow / 2**20:.1f} MiB more, at most "
                 f"{in_flight_max / 2**20:.1f} MiB in flight; server RSS {rss0} -> max "
                 f"{rss_max} KiB (+{rss_max - rss0})")
        self.assertLess(in_flight_max, MAX_IN_FLIGHT, "the sender was not held back")
        self.assertLess(written_slow, MAX_IN_FLIGHT + SLOW_RATE * SLOW_SECONDS,
                        "the sender was not held back")
        self.assertLess(rss_max - rss0, MAX_SERVER_GROWTH_KIB,
                        "the server buffered the slow stream")
        self.assertFalse(pump.is_alive() or drain.is_alive(), "transfer did not finish")
        self.assertIsNone(pump.error)
        self.assertEqual(drain.read, TOTAL)
        self.assertEqual(drain.sha.hexdigest(), pump.sha.hexdigest())
        self.assertEqual(dialer.wait(15), 0, dialer.stderr_text())
        self.assertEqual(listener.wait(15), 0, listener.stderr_text())

    def test_1_slow_reader(self):
        def stall(listener, drain):
            drain.slow_rate = SLOW_RATE

            def resume():
                drain.slow_rate = None
            return resume
        self.transfer_with_stalled_reader(stall)

    def test_2_stopped_reader(self):
        def stall(listener, drain):
            listener.signal(signal.SIGSTOP)

            def resume():
                listener.signal(signal.SIGCONT)
            return resume
        self.transfer_with_stalled_reader(stall)

    def test_3_clean_exit(self):
        harness.wait_until(lambda: self.d.sessions() == 0, 10)
        self.d.stop(self)


if __name__ == "__main__":
    harness.main(budget_s=150)
