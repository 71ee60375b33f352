"""dmsgd with its embedded discovery and two clients: 256 MiB through one stream, and 100
concurrent streams, every byte checked with SHA-256; afterwards the daemon holds no more file
descriptors than before and exits cleanly on SIGTERM."""

import signal
import subprocess
import time

import harness
from harness import Drain, E2ECase, Pump

BIG = 256 << 20
STREAMS = 100
STREAM_BYTES = 1 << 20


class RelayData(E2ECase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d = cls.start_daemon()
        time.sleep(0.3)
        cls.base_fds = cls.d.fds()

    def test_1_one_stream_256mib(self):
        d = self.d
        listener, lpk = harness.start_listener(self.children, 5, server=d.server_ref,
                                               extra=["--no-stdin"])
        dialer = harness.start_dialer(self.children, f"{lpk}:5", server=d.server_ref,
                                      stdout=subprocess.DEVNULL)
        drain = Drain(listener.p.stdout)
        pump = Pump(dialer.p.stdin, BIG)
        cpu0, t0 = d.cpu(), time.monotonic()
        drain.start()
        pump.start()
        pump.join(120)
        drain.join(120)
        secs = time.monotonic() - t0
        self.assertFalse(pump.is_alive() or drain.is_alive(), "transfer did not finish in time")
        self.assertIsNone(pump.error)
        self.assertEqual(pump.written, BIG)
        self.assertEqual(drain.read, BIG, f"listener got {drain.read} of {BIG} bytes")
        self.assertEqual(drain.sha.hexdigest(), pump.sha.hexdigest())
        self.assertEqual(dialer.wait(15), 0, dialer.stderr_text())
        self.assertEqual(listener.wait(15), 0, listener.stderr_text())
        self.log(f"256 MiB in {secs:.2f} s ({BIG / secs / 1e6:.0f} MB/s), "
                 f"server CPU {d.cpu() - cpu0:.2f} s, RSS {d.rss()} KiB")
        for p in (dialer, listener):
            p.assert_no_sanitizer_report(self)

    def test_2_hundred_concurrent_streams(self):
        d = self.d
        echo, epk = harness.start_listener(self.children, 7, server=d.server_ref,
                                           extra=["--echo", "--keep-open"],
                                           stdout=subprocess.DEVNULL)
        # At most 48 dials wait for their response at once (the relay's default cap on a
        # session's pending requests is 64); all 100 streams are then open together before
        # any data flows.
        code, res, err = harness.run_json(
            [harness.BIN["streamclient"], "--server", d.server_ref, "--dst", f"{epk}:7",
             "--streams", str(STREAMS), "--bytes", str(STREAM_BYTES), "--dial-window", "48",
             "--timeout", "90"], 100, "streamclient")
        self.assertIsNotNone(res, err)
        self.log(f"{res}")
        self.assertEqual(res["ok"], STREAMS, f"{res}\n{err[-3000:]}")
        self.assertEqual(res["max_open"], STREAMS)
        self.assertEqual(code, 0)
        echo.signal(signal.SIGTERM)
        self.assertIn(echo.wait(15), (0, 130))
        echo.assert_no_sanitizer_report(self)

    def test_3_nothing_left_behind(self):
        d = self.d
        # Every client is gone: sessions and streams must be released.
        ok = harness.wait_until(lambda: d.fds() <= self.base_fds, 10)
        self.assertTrue(ok, f"daemon holds {d.fds()} fds, {self.base_fds} before the clients")
        self.assertEqual(d.sessions(), 0)
        self.log(f"fds {d.fds()} (before: {self.base_fds}), RSS {d.rss()} KiB")
        d.stop(self)


if __name__ == "__main__":
    harness.main(budget_s=240)
