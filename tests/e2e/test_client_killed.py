"""A client killed mid-stream (SIGKILL: no FIN, no goodbye, the kernel closes its socket): the
other side's stream closes promptly, and the daemon keeps no file descriptor and no memory for
what is gone, checked from /proc after every round and over repeated rounds."""

import signal
import subprocess
import time

import harness
from harness import Drain, E2ECase, Pump

CLOSE_WITHIN_S = 5
ROUNDS = 4
# RSS may grow by allocator slack between rounds, never by what a round left behind
# (each round moves hundreds of MiB and up to 100 streams' windows).
MAX_GROWTH_OVER_ROUNDS_KIB = 12 * 1024


class ClientKilled(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d = cls.start_daemon()
        time.sleep(0.3)
        cls.base_fds = cls.d.fds()
        cls.next_port = 100

    def pair(self):
        """A listener and a dialer with data flowing from the dialer to the listener."""
        port = type(self).next_port
        type(self).next_port += 1
        listener, lpk = harness.start_listener(self.children, port, server=self.d.server_ref,
                                               extra=["--no-stdin"])
        dialer = harness.start_dialer(self.children, f"{lpk}:{port}",
                                      server=self.d.server_ref, stdout=subprocess.DEVNULL)
        drain = Drain(listener.p.stdout)
        pump = Pump(dialer.p.stdin, 1 << 40)     # endless: it is cut by the kill
        drain.start()
        pump.start()
        flowing = harness.wait_until(lambda: drain.read >= 8 << 20, 30)
        self.assertTrue(flowing, f"no data flows:\n{dialer.stderr_text()}")
        return listener, dialer, drain, pump

    def assert_released(self, extra_sessions=0):
        d = self.d
        ok = harness.wait_until(lambda: d.sessions() == extra_sessions and
                                d.fds() <= self.base_fds + extra_sessions, 10)
        self.assertTrue(ok, f"daemon still holds {d.sessions()} sessions and {d.fds()} fds "
                        f"(expected {extra_sessions} and <= {self.base_fds + extra_sessions})")

    def kill_dialer_round(self):
        listener, dialer, drain, pump = self.pair()
        dialer.kill()
        t0 = time.monotonic()
        code = listener.wait(CLOSE_WITHIN_S)
        self.assertIn(code, (0, 6), listener.stderr_text())   # FIN or reset, nothing else
        listener.assert_no_sanitizer_report(self)
        drain.join(5)
        self.assertFalse(drain.is_alive())
        self.assert_released()
        return time.monotonic() - t0

    def kill_listener_round(self):
        listener, dialer, drain, pump = self.pair()
        listener.kill()
        t0 = time.monotonic()
        code = dialer.wait(CLOSE_WITHIN_S)
        self.assertIn(code, (0, 6), dialer.stderr_text())
        dialer.assert_no_sanitizer_report(self)
        pump.join(5)
        self.assertFalse(pump.is_alive(), "the sender is still writing into a dead stream")
        self.assert_released()
        return time.monotonic() - t0

    def test_1_dialer_killed(self):
        secs = self.kill_dialer_round()
        self.log(f"listener's stream closed {secs:.2f} s after the dialer was killed")

    def test_2_listener_killed(self):
        secs = self.kill_listener_round()
        self.log(f"dialer's stream closed {secs:.2f} s after the listener was killed")

    def test_3_many_streams_killed(self):
        d = self.d
        echo, epk = harness.start_listener(self.children, 7, server=d.server_ref,
                                           extra=["--echo", "--keep-open"],
                                           stdout=subprocess.DEVNULL, name="echo")
        sc = self.children.add(harness.Proc(
            [harness.BIN["streamclient"], "--server", d.server_ref, "--dst", f"{epk}:7",
             "--streams", "100", "--bytes", str(64 << 20), "--dial-window", "48"],
            "streamclient", stdout=subprocess.PIPE))
        # Kill it while its 100 streams carry data (64 MiB each takes far longer than this).
        self.assertTrue(harness.wait_until(lambda: d.sessions() >= 2, 10))
        time.sleep(2.5)
        self.assertTrue(sc.running(), sc.stderr_text())
        sc.kill()
        # The echo listener keeps its session; every relayed stream must be gone.
        self.assert_released(extra_sessions=1)
        self.assertTrue(echo.running())
        code, res, err = harness.run_json(
            [harness.BIN["streamclient"], "--server", d.server_ref, "--dst", f"{epk}:7",
             "--streams", "10", "--bytes", "65536", "--timeout", "30"], 40, "streamclient")
        self.assertEqual(code, 0, f"{res}\n{err}")
        echo.signal(signal.SIGTERM)
        self.assertIn(echo.wait(15), (0, 130))
        echo.assert_no_sanitizer_report(self)
        self.assert_released()

    def test_4_repeated_rounds_leave_nothing(self):
        d = self.d
        self.kill_dialer_round()
        self.kill_listener_round()
        rss_first = d.rss()
        for _ in range(ROUNDS):
            self.kill_dialer_round()
            self.kill_listener_round()
        rss_last = d.rss()
        self.log(f"RSS after the first round {rss_first} KiB, after {ROUNDS} more "
                 f"{rss_last} KiB; fds {d.fds()} (at start {self.base_fds})")
        self.assertLess(rss_last - rss_first, MAX_GROWTH_OVER_ROUNDS_KIB)

    def test_5_clean_exit(self):
        self.assert_released()
        self.d.stop(self)


if __name__ == "__main__":
    harness.main(budget_s=150)
